// Tests of progress.h: byte amounts, ETAs and the progress line redrawn in place.
#include "client/modeldistctl/progress.h"

#include <sstream>
#include <string>

#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/client/modeldistctl/ctl_fixture.h"
#include "tests/testing/test_util.h"

namespace modeldist::ctl {
namespace {

using ::testing::HasSubstr;

TEST(ProgressTest, FormatsBytesAndEta) {
  EXPECT_EQ(FormatBytes(0), "0 B");
  EXPECT_EQ(FormatBytes(999), "999 B");
  EXPECT_EQ(FormatBytes(1500), "1.50 kB");
  EXPECT_EQ(FormatBytes(52'400'000), "52.4 MB");
  EXPECT_EQ(FormatBytes(4'812'345'678), "4.81 GB");
  EXPECT_EQ(FormatEta(absl::Seconds(7)), "0:07");
  EXPECT_EQ(FormatEta(absl::Seconds(754)), "12:34");
  EXPECT_EQ(FormatEta(absl::Seconds(3723)), "1:02:03");
  EXPECT_EQ(FormatEta(absl::InfiniteDuration()), "--:--");
}

TEST(ProgressTest, LineShowsPercentRateAndEtaOfThisRunOnly) {
  // Resumed at 20 MB, now at 30 MB of 50 MB after 2 s: 5 MB/s, 4 s left.
  EXPECT_EQ(FormatProgressLine("uploading", 20'000'000, 30'000'000, 50'000'000, absl::Seconds(2)),
            "uploading  60.0%  30.0 MB / 50.0 MB  5.00 MB/s  ETA 0:04");
  EXPECT_EQ(FormatProgressLine("hashing", 0, 0, 10, absl::ZeroDuration()),
            "hashing   0.0%  0 B / 10 B  -- MB/s  ETA --:--");
  EXPECT_THAT(FormatProgressLine("x", 0, 10, 10, absl::Seconds(1)), HasSubstr("100.0%"));
}

TEST(ProgressTest, APipeOfUnknownSizeShowsAmountAndRateOnly) {
  EXPECT_EQ(FormatProgressLine("uploading", 0, 21'000'000, -1, absl::Seconds(2)),
            "uploading 21.0 MB  10.5 MB/s");
  EXPECT_EQ(FormatProgressLine("uploading", 0, 0, -1, absl::ZeroDuration()),
            "uploading 0 B  -- MB/s");
}

TEST(ProgressTest, MeterRedrawsInPlaceAtMostEveryIntervalAndClearsAtTheEnd) {
  absl::Time now = absl::FromUnixSeconds(1000);
  std::ostringstream out;
  {
    ProgressMeter meter(&out, true, "up", 0, 100, [&] { return now; });
    meter.Update(10);
    std::string first = out.str();
    EXPECT_EQ(first.front(), '\r');
    meter.Update(20);  // Same instant: no redraw.
    EXPECT_EQ(out.str(), first);
    now += absl::Seconds(1);
    meter.Update(30);
    EXPECT_THAT(out.str(), HasSubstr("30 B / 100 B"));
  }
  EXPECT_EQ(out.str().back(), '\r');

  std::ostringstream quiet;
  {
    ProgressMeter meter(&quiet, false, "up", 0, 100, [&] { return now; });
    meter.Update(50);
  }
  EXPECT_EQ(quiet.str(), "");
}

}  // namespace
}  // namespace modeldist::ctl
