// Tests of command_util.h: percents typed by people and the basis points the server takes.
#include "client/modeldistctl/command_util.h"

#include <cstdint>

#include "client/modeldistctl/errors.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/client/modeldistctl/ctl_fixture.h"
#include "tests/testing/test_util.h"

namespace modeldist::ctl {
namespace {

using ::modeldist::testing::StatusIs;
using ::testing::AllOf;
using ::testing::HasSubstr;

TEST(OneLineTest, KeepsTextOnOneLineAndNoControlReachesTheTerminal) {
  EXPECT_EQ(OneLine("a\nb\rc\td"), "a b c d");
  // An app version a device sent without a token: clear screen, then a title change.
  EXPECT_EQ(OneLine("1.0\x1b[2J\x1b]0;owned\x07\x7f"), "1.0?[2J?]0;owned??");
  EXPECT_EQ(OneLine("caf\xc3\xa9 2.1"), "caf\xc3\xa9 2.1");  // UTF-8 passes
}

TEST(ParsePercentTest, DecimalsBecomeBasisPoints) {
  EXPECT_EQ(*ParsePercent("percent", "0.5"), 50);
  EXPECT_EQ(*ParsePercent("percent", "1"), 100);
  EXPECT_EQ(*ParsePercent("percent", "10"), 1000);
  EXPECT_EQ(*ParsePercent("percent", "50"), 5000);
  EXPECT_EQ(*ParsePercent("percent", "100"), 10000);
  EXPECT_EQ(*ParsePercent("percent", "100.000"), 10000);
  EXPECT_EQ(*ParsePercent("percent", "0"), 0);
  EXPECT_EQ(*ParsePercent("percent", "0.01"), 1);
  EXPECT_EQ(*ParsePercent("percent", "12.34"), 1234);
  EXPECT_EQ(*ParsePercent("percent", ".5"), 50);
  EXPECT_EQ(*ParsePercent("percent", "007"), 700);
  EXPECT_EQ(*ParsePercent("percent", "25%"), 2500);
  // Rounded half up at the third decimal, exactly (0.285 * 100 is 28.499... as a double).
  EXPECT_EQ(*ParsePercent("percent", "0.285"), 29);
  EXPECT_EQ(*ParsePercent("percent", "0.125"), 13);
  EXPECT_EQ(*ParsePercent("percent", "0.004"), 0);
  EXPECT_EQ(*ParsePercent("percent", "99.999"), 10000);
}

TEST(ParsePercentTest, RejectsOutOfRangeAndNonNumbersAsUsageErrors) {
  for (const char* text : {"101", "100.01", "1000", "99999999999999999999"}) {
    absl::StatusOr<int32_t> bp = ParsePercent("percent", text);
    EXPECT_THAT(bp, StatusIs(absl::StatusCode::kInvalidArgument,
                             AllOf(HasSubstr("--percent"), HasSubstr("out of range"))))
        << text;
    EXPECT_EQ(ExitCodeFor(bp.status()), kExitUsage);
  }
  for (const char* text : {"", ".", "-1", "+5", "abc", "1e2", "0x10", "5 %", "1.2.3", "nan"}) {
    EXPECT_THAT(ParsePercent("percent", text),
                StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("is not a percent")))
        << text;
  }
}

TEST(ParsePercentTest, FormatsBasisPointsAsTheyWouldBeTyped) {
  EXPECT_EQ(FormatBasisPoints(50), "0.5%");
  EXPECT_EQ(FormatBasisPoints(1000), "10%");
  EXPECT_EQ(FormatBasisPoints(1234), "12.34%");
  EXPECT_EQ(FormatBasisPoints(5), "0.05%");
  EXPECT_EQ(FormatBasisPoints(0), "0%");
  EXPECT_EQ(FormatBasisPoints(10000), "100%");
  for (int32_t bp : {1, 50, 99, 1234, 10000}) {
    EXPECT_EQ(*ParsePercent("percent", FormatBasisPoints(bp)), bp);
  }
}

}  // namespace
}  // namespace modeldist::ctl
