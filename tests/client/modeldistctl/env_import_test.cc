// The parts of `modeldistctl import-env` that read the seed's variables (env_import.h): the
// .env file syntax and the rule that each object's three variables come together. Fetching and
// publishing are tested end to end against nginx and the real server (ctl_e2e_import_env_test).
#include "client/modeldistctl/env_import.h"

#include <map>
#include <optional>
#include <string>

#include "client/modeldistctl/errors.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace modeldist::ctl {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Pair;

const std::string kHex(64, 'a');

VariableLookup From(const std::map<std::string, std::string>& values) {
  return [values](const std::string& name) -> std::optional<std::string> {
    auto it = values.find(name);
    if (it == values.end()) return std::nullopt;
    return it->second;
  };
}

TEST(ParseEnvFileTest, ReadsQuotesCommentsAndExport) {
  const std::string text =
      "# the seed's secrets\n"
      "\n"
      "export A=plain # trailing comment\n"
      "B=\"double # not a comment\" # a comment\n"
      "  C = 'single \\n kept'  \n"
      "D=\"esc \\\"q\\\" \\\\ \\n\"\n"
      "E=url#fragment\n"
      "F=\n"
      "A=later wins\n";
  absl::StatusOr<std::map<std::string, std::string>> values = ParseEnvFile(text, "seed.env");
  ASSERT_TRUE(values.ok()) << values.status();
  EXPECT_THAT(*values, ElementsAre(Pair("A", "later wins"), Pair("B", "double # not a comment"),
                                   Pair("C", "single \\n kept"), Pair("D", "esc \"q\" \\ \n"),
                                   Pair("E", "url#fragment"), Pair("F", "")));
}

TEST(ParseEnvFileTest, AMalformedLineIsAUsageErrorWithItsLineNumber) {
  struct Case {
    std::string text;
    std::string says;
  };
  for (const Case& c : {Case{"A=1\nno equals sign\n", "seed.env:2: no '='"},
                        Case{"A=\"open\n", "seed.env:1: A: the double quote is not closed"},
                        Case{"A='open\n", "seed.env:1: A: the single quote is not closed"},
                        Case{"A=\"x\" y\n", "seed.env:1: A: text after the closing quote"},
                        Case{"1A=x\n", "seed.env:1: \"1A\" is not a variable name"},
                        Case{"export\n", "seed.env:1: no variable after export"}}) {
    absl::StatusOr<std::map<std::string, std::string>> values = ParseEnvFile(c.text, "seed.env");
    ASSERT_FALSE(values.ok()) << c.text;
    EXPECT_EQ(ExitCodeFor(values.status()), kExitUsage);
    EXPECT_THAT(values.status().message(), HasSubstr(c.says));
  }
}

TEST(SeedObjectsFromTest, EachCompleteTripleIsAnObject) {
  absl::StatusOr<std::vector<SeedObject>> objects =
      SeedObjectsFrom(From({{"LOCAL_LLM_MACOS_COREML_ZIP_URL", "https://x.test/a.zip?token=s"},
                            {"LOCAL_LLM_MACOS_COREML_ZIP_SHA256", "sha256:" + kHex},
                            {"LOCAL_LLM_MACOS_COREML_ZIP_SIZE_BYTES", " 12345 "},
                            {"LOCAL_LLM_MACOS_INTEL_GGUF_URL", "http://x.test/b.gguf"},
                            {"LOCAL_LLM_MACOS_INTEL_GGUF_SHA256", std::string(64, 'B')},
                            {"LOCAL_LLM_MACOS_INTEL_GGUF_SIZE_BYTES", "7"}}),
                      "the environment");
  ASSERT_TRUE(objects.ok()) << objects.status();
  ASSERT_EQ(objects->size(), 2u);
  EXPECT_EQ(SeedTargetName((*objects)[0]), "macos/arm64/coreml-zip");
  EXPECT_EQ((*objects)[0].url, "https://x.test/a.zip?token=s");
  EXPECT_EQ((*objects)[0].expected.hex, kHex);
  EXPECT_EQ((*objects)[0].expected.size, 12345);
  EXPECT_EQ(SeedTargetName((*objects)[1]), "macos/x86_64/gguf");
  EXPECT_EQ((*objects)[1].expected.hex, std::string(64, 'b'));  // lower-cased
  EXPECT_EQ((*objects)[1].expected.size, 7);
}

TEST(SeedObjectsFromTest, OneTripleIsEnoughAndEmptyValuesCountAsUnset) {
  absl::StatusOr<std::vector<SeedObject>> objects =
      SeedObjectsFrom(From({{"LOCAL_LLM_MACOS_INTEL_GGUF_URL", "http://x.test/b.gguf"},
                            {"LOCAL_LLM_MACOS_INTEL_GGUF_SHA256", kHex},
                            {"LOCAL_LLM_MACOS_INTEL_GGUF_SIZE_BYTES", "7"},
                            {"LOCAL_LLM_MACOS_COREML_ZIP_URL", ""}}),
                      "the environment");
  ASSERT_TRUE(objects.ok()) << objects.status();
  ASSERT_EQ(objects->size(), 1u);
  EXPECT_EQ((*objects)[0].format, v1::FORMAT_GGUF);
}

TEST(SeedObjectsFromTest, APartialTripleNamesTheMissingVariable) {
  absl::StatusOr<std::vector<SeedObject>> objects =
      SeedObjectsFrom(From({{"LOCAL_LLM_MACOS_COREML_ZIP_URL", "https://x.test/a.zip"},
                            {"LOCAL_LLM_MACOS_COREML_ZIP_SIZE_BYTES", "5"}}),
                      "seed.env");
  ASSERT_FALSE(objects.ok());
  EXPECT_EQ(ExitCodeFor(objects.status()), kExitUsage);
  EXPECT_THAT(objects.status().message(),
              HasSubstr("LOCAL_LLM_MACOS_COREML_ZIP_SHA256 is not set in seed.env"));
}

TEST(SeedObjectsFromTest, NoTripleAndBadValuesAreUsageErrors) {
  struct Case {
    std::map<std::string, std::string> values;
    std::string says;
  };
  const std::map<std::string, std::string> good = {
      {"LOCAL_LLM_MACOS_INTEL_GGUF_URL", "http://x.test/b.gguf"},
      {"LOCAL_LLM_MACOS_INTEL_GGUF_SHA256", kHex},
      {"LOCAL_LLM_MACOS_INTEL_GGUF_SIZE_BYTES", "7"}};
  auto with = [&good](const std::string& name, const std::string& value) {
    std::map<std::string, std::string> values = good;
    values[name] = value;
    return values;
  };
  for (const Case& c :
       {Case{{}, "no seed object in the environment"},
        Case{with("LOCAL_LLM_MACOS_INTEL_GGUF_URL", "ftp://x.test/b"),
             "LOCAL_LLM_MACOS_INTEL_GGUF_URL must be an http:// or https:// URL"},
        Case{with("LOCAL_LLM_MACOS_INTEL_GGUF_SHA256", "abc"),
             "LOCAL_LLM_MACOS_INTEL_GGUF_SHA256 must be the object's SHA-256"},
        Case{with("LOCAL_LLM_MACOS_INTEL_GGUF_SIZE_BYTES", "4GB"),
             "LOCAL_LLM_MACOS_INTEL_GGUF_SIZE_BYTES must be the object's size in bytes"},
        Case{with("LOCAL_LLM_MACOS_INTEL_GGUF_SIZE_BYTES", "0"),
             "LOCAL_LLM_MACOS_INTEL_GGUF_SIZE_BYTES must be the object's size in bytes"}}) {
    absl::StatusOr<std::vector<SeedObject>> objects =
        SeedObjectsFrom(From(c.values), "the environment");
    ASSERT_FALSE(objects.ok()) << c.says;
    EXPECT_EQ(ExitCodeFor(objects.status()), kExitUsage);
    EXPECT_THAT(objects.status().message(), HasSubstr(c.says));
  }
}

}  // namespace
}  // namespace modeldist::ctl
