// DisplayText, what the model checks keep of the text a hostile file says about itself: UTF-8
// without control characters as it is, anything else C-escaped, all of it capped.
#include <string>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "common/model_check/model_check.h"
#include "gtest/gtest.h"

namespace modeldist::model_check {
namespace {

TEST(DisplayTextTest, PrintableUtf8IsKeptAsItIs) {
  EXPECT_EQ(DisplayText(""), "");
  EXPECT_EQ(DisplayText("Llama 3.2 1B Instruct"), "Llama 3.2 1B Instruct");
  EXPECT_EQ(DisplayText("Qwen2.5 \xe9\x80\x9a\xe4\xb9\x89 caf\xc3\xa9 \xf0\x9f\xa6\x99"),
            "Qwen2.5 \xe9\x80\x9a\xe4\xb9\x89 caf\xc3\xa9 \xf0\x9f\xa6\x99");
  EXPECT_EQ(DisplayText("a\\b \"c\""), "a\\b \"c\"");
}

TEST(DisplayTextTest, AnythingElseIsEscapedWhole) {
  // Latin-1, not UTF-8.
  EXPECT_EQ(DisplayText("Caf\xe9"), "Caf\\xe9");
  // Terminal escape sequences: C0 ESC, C1 CSI as UTF-8 and as a lone byte, BEL, DEL.
  EXPECT_EQ(DisplayText("llama\x1b[2J"), "llama\\x1b[2J");
  EXPECT_EQ(DisplayText("llama\xc2\x9b[2J"), "llama\\xc2\\x9b[2J");
  EXPECT_EQ(DisplayText("a\x9b"), "a\\x9b");
  EXPECT_EQ(DisplayText("a\x07\x7f"), "a\\x07\\x7f");
  EXPECT_EQ(DisplayText("line\nbreak"), "line\\nbreak");
  // Overlong `/`, a surrogate, past U+10FFFF, a cut sequence.
  EXPECT_EQ(DisplayText("\xc0\xaf"), "\\xc0\\xaf");
  EXPECT_EQ(DisplayText("\xed\xa0\x80"), "\\xed\\xa0\\x80");
  EXPECT_EQ(DisplayText("\xf4\x90\x80\x80"), "\\xf4\\x90\\x80\\x80");
  EXPECT_EQ(DisplayText("ok\xe4\xb9"), "ok\\xe4\\xb9");
  // Once escaping, valid UTF-8 and quotes are escaped too, exactly as absl::CHexEscape does,
  // including a hex digit after an escape.
  const std::string mixed =
      "caf\xc3\xa9 \"\xff"
      "ab\\";
  EXPECT_EQ(DisplayText(mixed), absl::CHexEscape(mixed));
  EXPECT_EQ(DisplayText("\xff"
                        "a"),
            "\\xff\\x61");
}

TEST(DisplayTextTest, LongTextIsCutAtACharacter) {
  EXPECT_EQ(DisplayText(std::string(256, 'a')), std::string(256, 'a'));
  EXPECT_EQ(DisplayText(std::string(257, 'a')), std::string(253, 'a') + "...");
  EXPECT_EQ(DisplayText(std::string(4096, 'a'), 10), "aaaaaaa...");

  // 100 three-byte characters: 84 of them (252 bytes) fit before the "...".
  std::string wide;
  for (int i = 0; i < 100; ++i) wide += "\xe9\x80\x9a";
  const std::string cut = DisplayText(wide);
  EXPECT_EQ(cut.size(), 255u);
  EXPECT_TRUE(absl::StartsWith(wide, cut.substr(0, 252)));
  EXPECT_TRUE(absl::EndsWith(cut, "..."));

  // Escapes are not split either: 63 of "\xff" (4 bytes each) fit.
  const std::string escaped = DisplayText(std::string(200, '\xff'));
  EXPECT_EQ(escaped.size(), 255u);
  EXPECT_TRUE(absl::EndsWith(escaped, "\\xff..."));
}

}  // namespace
}  // namespace modeldist::model_check
