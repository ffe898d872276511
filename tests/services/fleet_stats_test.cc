// FleetStats on a real catalog: totals, the summary's window and filters, the bounds on what
// devices can make it keep (only names the catalog knows are counted), a flush and load round
// trip, the rollup of old hours into days, and retention.
#include "services/fleet_stats.h"

#include <unistd.h>

#include <fstream>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "common/digest.h"
#include "common/limits.h"
#include "common/names.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "services/metrics/metrics.h"
#include "storage/catalog.h"
#include "tests/testing/fault_fs.h"
#include "tests/testing/fault_vfs.h"
#include "tests/testing/test_util.h"

namespace modeldist::services {
namespace {

using ::modeldist::testing::ScratchDir;

constexpr char kV1[] = "models/m/versions/1";
constexpr char kV2[] = "models/m/versions/2";
// Versions the catalog knows besides: 3..kMoreVersions+2.
constexpr int kMoreVersions = 20;

const absl::Time kStart = absl::FromUnixSeconds(1'800'000'000);  // on the hour

v1::ReportStatusRequest Batch(const std::string& device, v1::StatusEvent event,
                              const std::string& version, const std::string& reason = "",
                              const std::string& channel = "", const std::string& tier = "t") {
  v1::ReportStatusRequest request;
  request.set_device_id(device);
  v1::StatusReport* r = request.add_reports();
  r->set_tier(tier);
  r->set_channel(channel);
  r->set_version(version);
  r->set_event(event);
  r->set_reason(reason);
  r->set_platform(v1::PLATFORM_MACOS);
  r->set_arch(v1::ARCH_ARM64);
  return request;
}

class FleetStatsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    Open();
    // Names the catalog knows: reports about others are not counted. Bound tier t on stable
    // (v1) and beta (v2); tier `other` unbound.
    MD_ASSERT_OK(catalog_->CreateModel("m", "").status());
    for (int i = 1; i <= kMoreVersions + 2; ++i) {
      const VersionName name{"m", absl::StrCat(i)};
      v1::Artifact a;
      a.set_platform(v1::PLATFORM_MACOS);
      a.set_arch(v1::ARCH_ARM64);
      a.set_format(v1::FORMAT_GGUF);
      a.set_digest(FormatDigest(Sha256::HexOf(absl::StrCat("blob ", i))));
      a.set_size_bytes(10);
      MD_ASSERT_OK(catalog_->CreateVersion(name, {a}).status());
      MD_ASSERT_OK(
          catalog_->PublishVersion(name, [](const std::string&) { return true; }).status());
    }
    MD_ASSERT_OK(catalog_->SetTier("t", "stable", VersionName{"m", "1"}).status());
    MD_ASSERT_OK(catalog_->SetTier("t", "beta", VersionName{"m", "2"}).status());
    Open();  // loads the names
  }

  void TearDown() override { testing::UseFaultVfs(nullptr); }

  // With `faults`, the catalog writes through the fault-injecting VFS (tests/testing/fault_vfs.h).
  void Open(FleetLimits limits = FleetLimits(), testing::FaultInjectingFs* faults = nullptr) {
    stats_.reset();
    catalog_.reset();
    storage::CatalogOptions options;
    if (faults != nullptr) options.sqlite_vfs = testing::UseFaultVfs(faults);
    auto catalog = storage::Catalog::Open(dir_.Join("catalog.db"), options);
    ASSERT_TRUE(catalog.ok()) << catalog.status();
    catalog_ = *std::move(catalog);
    auto stats = FleetStats::Load(catalog_.get(), limits);
    ASSERT_TRUE(stats.ok()) << stats.status();
    stats_ = *std::move(stats);
  }

  int64_t Reports(const v1::FleetSummary& summary) {
    int64_t n = 0;
    for (const v1::EventCount& e : summary.events()) n += e.count();
    return n;
  }

  // Record as FleetService calls it.
  void Record(const v1::ReportStatusRequest& request, absl::Time now) {
    stats_->Record(request, FleetStats::DeviceKeyOf(request.device_id()), now);
  }

  ScratchDir dir_;
  std::unique_ptr<storage::Catalog> catalog_;
  std::unique_ptr<FleetStats> stats_;
};

TEST_F(FleetStatsTest, TotalsCountEveryEventOfAVersionOnItsChannel) {
  Record(Batch("a", v1::STATUS_EVENT_ACTIVATED, kV2), kStart);
  Record(Batch("a", v1::STATUS_EVENT_LOAD_CONFIRMED, kV2), kStart);
  Record(Batch("b", v1::STATUS_EVENT_LOAD_FAILED, kV2, "BAD_FILE", "stable"), kStart);
  Record(Batch("c", v1::STATUS_EVENT_SYNC_FAILED, kV2, "X_Y", "beta"), kStart);
  const VersionCounts before = stats_->Totals("t", "", kV2);
  EXPECT_EQ(before.activated, 1);
  EXPECT_EQ(before.load_confirmed, 1);
  EXPECT_EQ(before.load_failed, 1);  // "" is stable
  EXPECT_EQ(before.sync_failed, 0);  // that one was on beta
  EXPECT_EQ(stats_->Totals("t", "beta", kV2).sync_failed, 1);
  Record(Batch("d", v1::STATUS_EVENT_ACTIVATED, kV2), kStart + absl::Hours(50));
  const VersionCounts since = Minus(stats_->Totals("t", "stable", kV2), before);
  EXPECT_EQ(since.activated, 1);
  EXPECT_EQ(since.load_failed, 0);
}

TEST_F(FleetStatsTest, SummaryCountsDevicesAtTheirNewestStateAndReportsWithinTheWindow) {
  Record(Batch("a", v1::STATUS_EVENT_ACTIVATED, kV1), kStart);
  Record(Batch("a", v1::STATUS_EVENT_ACTIVATED, kV2), kStart + absl::Hours(2));
  Record(Batch("b", v1::STATUS_EVENT_ROLLED_BACK, kV2, "LOAD_FAILED"), kStart + absl::Hours(2));
  Record(Batch("old", v1::STATUS_EVENT_LOAD_CONFIRMED, kV1), kStart);
  const v1::FleetSummary summary = stats_->Summary("", "", kStart + absl::Minutes(90));
  EXPECT_EQ(summary.since().seconds(), absl::ToUnixSeconds(kStart + absl::Hours(1)));
  // Devices are every one remembered, "old" too (heard from before the window), counted
  // without walking the devices; "a" moved from kV1 to kV2 and is counted once.
  ASSERT_EQ(summary.versions_size(), 3);
  EXPECT_EQ(summary.versions(0).version(), kV1);
  EXPECT_EQ(summary.versions(0).devices(), 1);
  EXPECT_EQ(summary.versions(1).version(), kV2);
  EXPECT_FALSE(summary.versions(1).rolled_back());
  EXPECT_EQ(summary.versions(1).devices(), 1);
  EXPECT_TRUE(summary.versions(2).rolled_back());
  EXPECT_EQ(Reports(summary), 2);
  ASSERT_EQ(summary.reasons_size(), 1);
  EXPECT_EQ(summary.reasons(0).reason(), "LOAD_FAILED");
  EXPECT_EQ(Reports(stats_->Summary("", "", kStart)), 4);
  EXPECT_EQ(Reports(stats_->Summary("other", "", kStart)), 0);
  EXPECT_EQ(stats_->DevicesPerVersion(10),
            (std::vector<std::pair<std::string, int64_t>>{{kV2, 2}, {kV1, 1}}));
  EXPECT_EQ(stats_->DevicesPerVersion(1).size(), 1u);
}

TEST_F(FleetStatsTest, ReasonsAreMostFrequentFirstAndFailuresNewestFirst) {
  for (int i = 0; i < 3; ++i) {
    Record(Batch("a", v1::STATUS_EVENT_LOAD_FAILED, kV2, "OFTEN_SEEN"), kStart);
  }
  Record(Batch("a", v1::STATUS_EVENT_LOAD_FAILED, kV2, "ONCE_SEEN"), kStart);
  const v1::FleetSummary summary = stats_->Summary("", "", kStart);
  ASSERT_EQ(summary.reasons_size(), 2);
  EXPECT_EQ(summary.reasons(0).reason(), "OFTEN_SEEN");
  EXPECT_EQ(summary.reasons(0).count(), 3);
  ASSERT_EQ(summary.recent_failures_size(), 4);
  EXPECT_EQ(summary.recent_failures(0).reason(), "ONCE_SEEN");
}

TEST_F(FleetStatsTest, BoundsWhatDevicesCanMakeItKeep) {
  FleetLimits limits;
  limits.max_rows_per_hour = 4;
  limits.max_totals = 3;
  limits.max_devices = 2;
  limits.recent_failures = 5;
  Open(limits);
  for (int i = 0; i < 20; ++i) {
    Record(
        Batch(absl::StrCat("d", i), v1::STATUS_EVENT_LOAD_FAILED, kV2, absl::StrCat("REASON_", i)),
        kStart);
    Record(Batch(absl::StrCat("d", i), v1::STATUS_EVENT_ACTIVATED,
                 absl::StrCat("models/m/versions/", i)),
           kStart);
  }
  const v1::FleetSummary summary = stats_->Summary("", "", kStart);
  int64_t other = 0;
  for (const v1::ReasonCount& r : summary.reasons()) {
    if (r.reason() == "OTHER") other = r.count();
  }
  EXPECT_GT(other, 0);
  // REASON_0, 1, 2 and OTHER (versions/0 is unknown, so it took no row).
  EXPECT_EQ(summary.reasons_size(), 4);
  EXPECT_LE(summary.events_size(), 2 * limits.max_rows_per_hour);
  EXPECT_LE(summary.versions_size(), 2);
  EXPECT_EQ(summary.recent_failures_size(), 5);
  EXPECT_EQ(stats_->Totals("t", "", kV2).load_failed, 20);                  // the first total
  EXPECT_EQ(stats_->Totals("t", "", "models/m/versions/19").activated, 0);  // past the cap
}

TEST_F(FleetStatsTest, FlushAndLoadKeepEverything) {
  Record(Batch("a", v1::STATUS_EVENT_ACTIVATED, kV2), kStart);
  Record(Batch("b", v1::STATUS_EVENT_ROLLED_BACK, kV2, "TRIAL_EXPIRED"), kStart);
  MD_ASSERT_OK(stats_->Flush(kStart));
  // A second flush writes what changed since: the counts go on.
  Record(Batch("a", v1::STATUS_EVENT_LOAD_CONFIRMED, kV2), kStart + absl::Minutes(1));
  MD_ASSERT_OK(stats_->Flush(kStart + absl::Minutes(1)));
  const v1::FleetSummary before = stats_->Summary("", "", kStart);
  Open();
  const v1::FleetSummary after = stats_->Summary("", "", kStart);
  EXPECT_EQ(after.DebugString(), before.DebugString());
  EXPECT_EQ(stats_->Totals("t", "", kV2).load_confirmed, 1);
  EXPECT_EQ(stats_->Totals("t", "", kV2).rolled_back, 1);
  // Counting goes on from the loaded figures.
  Record(Batch("c", v1::STATUS_EVENT_ACTIVATED, kV2), kStart + absl::Minutes(2));
  MD_ASSERT_OK(stats_->Flush(kStart + absl::Minutes(2)));
  Open();
  EXPECT_EQ(stats_->Totals("t", "", kV2).activated, 2);
}

TEST_F(FleetStatsTest, WhatAFailedFlushDidNotWriteTheNextOneWrites) {
  testing::FaultInjectingFs faults;
  Open(FleetLimits(), &faults);
  Record(Batch("a", v1::STATUS_EVENT_ACTIVATED, kV2), kStart);
  Record(Batch("b", v1::STATUS_EVENT_LOAD_FAILED, kV2, "BAD_FILE"), kStart);
  faults.Inject(testing::FaultRule{.op = testing::FsOp::kWrite,
                                   .fault = testing::Fault::kIoError,
                                   .path_prefix = dir_.Join("catalog.db")});
  EXPECT_FALSE(stats_->Flush(kStart).ok());
  EXPECT_GT(faults.injected(), 0);
  faults.Clear();
  Record(Batch("c", v1::STATUS_EVENT_ACTIVATED, kV2), kStart);
  MD_ASSERT_OK(stats_->Flush(kStart + absl::Seconds(1)));
  const v1::FleetSummary before = stats_->Summary("", "", kStart);
  testing::UseFaultVfs(nullptr);
  Open();
  EXPECT_EQ(stats_->Summary("", "", kStart).DebugString(), before.DebugString());
  EXPECT_EQ(stats_->Totals("t", "", kV2).activated, 2);
  EXPECT_EQ(stats_->Summary("", "", kStart).recent_failures_size(), 1);
}

TEST_F(FleetStatsTest, DropsDaysAndDevicesPastTheRetention) {
  Record(Batch("gone", v1::STATUS_EVENT_ACTIVATED, kV1), kStart);
  // Days go whole: the day of kStart is past the retention a day later.
  const absl::Time later = kStart + kFleetRetention + absl::Hours(26);
  Record(Batch("here", v1::STATUS_EVENT_ACTIVATED, kV2), later);
  MD_ASSERT_OK(stats_->Flush(later));
  const v1::FleetSummary summary = stats_->Summary("", "", kStart);
  ASSERT_EQ(summary.versions_size(), 1);
  EXPECT_EQ(summary.versions(0).version(), kV2);
  EXPECT_EQ(Reports(summary), 1);
  // The totals stay (gates diff them), and what was dropped stays dropped after a load.
  EXPECT_EQ(stats_->Totals("t", "", kV1).activated, 1);
  Open();
  EXPECT_EQ(stats_->Summary("", "", kStart).versions_size(), 1);
  EXPECT_EQ(Reports(stats_->Summary("", "", kStart)), 1);
}

TEST_F(FleetStatsTest, JunkNamesNeverFillTheTotals) {
  metrics::Registry registry;
  metrics::CounterFamily& dropped = registry.AddCounter("dropped_total", "Dropped.", {"why"});
  stats_->CountDropsIn(&dropped);
  // 200 000 reports about made-up versions and tiers, 100 a batch from 2 000 device ids: far
  // past max_totals (100 000) and max_places had they been counted.
  for (int b = 0; b < 2000; ++b) {
    v1::ReportStatusRequest batch;
    batch.set_device_id(absl::StrCat("junk-", b));
    for (int i = 0; i < 100; ++i) {
      const bool junk_tier = i % 10 == 0;
      *batch.add_reports() =
          Batch("x", v1::STATUS_EVENT_ACTIVATED, absl::StrCat("models/junk/versions/", b, "-", i),
                "", "", junk_tier ? absl::StrCat("tier-", b) : "t")
              .reports(0);
    }
    Record(batch, kStart);
  }
  MD_ASSERT_OK(stats_->Flush(kStart));  // the pending ones are still unknown: dropped
  const std::string text = registry.Render();
  EXPECT_THAT(text, ::testing::HasSubstr("dropped_total{why=\"unknown_tier\"} 20000\n"));
  EXPECT_THAT(text, ::testing::HasSubstr("dropped_total{why=\"unknown_version\"} 180000\n"));
  // A version the catalog knows, that no one reported before, still counts.
  Record(Batch("real", v1::STATUS_EVENT_ACTIVATED, "models/m/versions/7"), kStart);
  EXPECT_EQ(stats_->Totals("t", "", "models/m/versions/7").activated, 1);
  const v1::FleetSummary summary = stats_->Summary("", "", kStart);
  EXPECT_EQ(Reports(summary), 1);
  ASSERT_EQ(summary.versions_size(), 1);
  EXPECT_EQ(summary.versions(0).version(), "models/m/versions/7");
  EXPECT_EQ(stats_->DevicesPerVersion(10).size(), 1u);
  // Nothing of the junk reached the catalog.
  absl::StatusOr<storage::FleetRows> rows = catalog_->LoadFleet();
  MD_ASSERT_OK(rows.status());
  EXPECT_TRUE(rows->totals.empty());
  // A sync failure before a manifest (no version) counts on a known tier/channel only.
  Record(Batch("s", v1::STATUS_EVENT_SYNC_FAILED, "", "UNREACHABLE"), kStart);
  Record(Batch("s", v1::STATUS_EVENT_SYNC_FAILED, "", "UNREACHABLE", "", "nowhere"), kStart);
  EXPECT_EQ(stats_->Totals("t", "", "").sync_failed, 1);
  EXPECT_EQ(stats_->Totals("nowhere", "", "").sync_failed, 0);
}

TEST_F(FleetStatsTest, AReportAboutANameTheCatalogGetsBeforeTheFlushCounts) {
  constexpr char kNew[] = "models/m/versions/new";
  Record(Batch("early", v1::STATUS_EVENT_ACTIVATED, kNew, "", "fresh"), kStart);
  Record(Batch("never", v1::STATUS_EVENT_ACTIVATED, "models/m/versions/never"), kStart);
  EXPECT_EQ(stats_->Totals("t", "fresh", kNew).activated, 0);  // waits for the flush
  MD_ASSERT_OK(catalog_->CreateVersion(VersionName{"m", "new"}, {}).status());
  MD_ASSERT_OK(catalog_->SetTier("t", "fresh", VersionName{"m", "1"}).status());
  MD_ASSERT_OK(stats_->Flush(kStart + absl::Seconds(1)));
  EXPECT_EQ(stats_->Totals("t", "fresh", kNew).activated, 1);
  EXPECT_EQ(stats_->Totals("t", "", "models/m/versions/never").activated, 0);
  EXPECT_EQ(Reports(stats_->Summary("", "", kStart)), 1);
  // Reports about it count at once from now on.
  Record(Batch("late", v1::STATUS_EVENT_ACTIVATED, kNew, "", "fresh"), kStart);
  EXPECT_EQ(stats_->Totals("t", "fresh", kNew).activated, 2);
}

TEST_F(FleetStatsTest, RollsHoursOlderThanTwoDaysUpIntoDays) {
  const absl::Time day = absl::FromUnixSeconds(absl::ToUnixSeconds(kStart) / 86400 * 86400);
  Record(Batch("a", v1::STATUS_EVENT_ACTIVATED, kV1), kStart);
  Record(Batch("b", v1::STATUS_EVENT_ACTIVATED, kV1), kStart + absl::Hours(1));
  Record(Batch("c", v1::STATUS_EVENT_LOAD_FAILED, kV1, "BAD_FILE"), kStart + absl::Hours(1));
  MD_ASSERT_OK(stats_->Flush(kStart + absl::Hours(1)));
  absl::StatusOr<storage::FleetRows> rows = catalog_->LoadFleet();
  MD_ASSERT_OK(rows.status());
  EXPECT_EQ(rows->hours.size(), 3u);
  EXPECT_TRUE(rows->days.empty());
  const absl::Time later = kStart + absl::Hours(50);
  Record(Batch("d", v1::STATUS_EVENT_ACTIVATED, kV1), later);
  MD_ASSERT_OK(stats_->Flush(later));
  // The two old hours are one day now (the two ACTIVATED rows merged), in memory and stored.
  rows = catalog_->LoadFleet();
  MD_ASSERT_OK(rows.status());
  EXPECT_EQ(rows->hours.size(), 1u);
  ASSERT_EQ(rows->days.size(), 2u);
  for (const storage::FleetHourRow& r : rows->days) {
    EXPECT_EQ(r.hour, absl::ToUnixMicros(day));
    EXPECT_EQ(r.count, r.event == v1::STATUS_EVENT_ACTIVATED ? 2 : 1);
  }
  for (int reopen = 0; reopen < 2; ++reopen) {
    // A window reaching past the hourly counts starts at its day's start.
    v1::FleetSummary summary = stats_->Summary("", "", kStart + absl::Minutes(90));
    EXPECT_EQ(summary.since().seconds(), absl::ToUnixSeconds(day));
    EXPECT_EQ(Reports(summary), 4);
    ASSERT_EQ(summary.reasons_size(), 1);
    EXPECT_EQ(summary.reasons(0).count(), 1);
    // Within the hourly counts it starts at the hour.
    summary = stats_->Summary("", "", later - absl::Minutes(30));
    EXPECT_EQ(summary.since().seconds(), absl::ToUnixSeconds(later - absl::Hours(1)));
    EXPECT_EQ(Reports(summary), 1);
    EXPECT_EQ(stats_->Totals("t", "", kV1).activated, 3);
    Open();
  }
}

#ifndef __SANITIZE_ADDRESS__
int64_t ResidentBytes() {
  std::ifstream statm("/proc/self/statm");
  int64_t pages = 0, resident = 0;
  statm >> pages >> resident;
  return resident * sysconf(_SC_PAGESIZE);
}

// The memory of one counted row, at its largest (a 64-byte reason, marked dirty as right after
// a burst): the figure docs/fleet.md multiplies by the rows FleetLimits allows.
TEST_F(FleetStatsTest, MeasuresTheMemoryOfACountedRow) {
  FleetLimits limits;
  limits.max_rows_per_hour = 1'000'000;
  Open(limits);
  constexpr int kRows = 100'000;
  std::vector<v1::ReportStatusRequest> batches;
  for (int i = 0; i < kRows; ++i) {
    std::string reason = absl::StrCat("R", i, "_");
    reason.resize(kMaxStatusReasonBytes, 'X');
    batches.push_back(Batch("d", v1::STATUS_EVENT_LOAD_FAILED, kV2, reason));
  }
  const int64_t before = ResidentBytes();
  for (const v1::ReportStatusRequest& batch : batches) Record(batch, kStart);
  const int64_t per_row = (ResidentBytes() - before) / kRows;
  std::cout << "FleetStats: " << per_row << " bytes per hourly row\n";
  EXPECT_EQ(Reports(stats_->Summary("", "", kStart)), kRows);
  EXPECT_LT(per_row, 1000);
}
#endif

// Record is on ReportStatus's path: many devices, one report each, as a fleet sends them. The
// rate goes to the test's output (a figure for docs/fleet.md, not a pass/fail bound).
TEST_F(FleetStatsTest, RecordsAFleetOfReports) {
  constexpr int kDevices = 20000;
  constexpr int kRounds = 5;
  std::vector<v1::ReportStatusRequest> batches;
  for (int i = 0; i < kDevices; ++i) {
    batches.push_back(
        Batch(absl::StrCat("device-", i), v1::STATUS_EVENT_ACTIVATED, i % 2 == 0 ? kV1 : kV2));
  }
  const absl::Time start = absl::Now();
  for (int round = 0; round < kRounds; ++round) {
    for (const v1::ReportStatusRequest& batch : batches) Record(batch, kStart);
  }
  const absl::Duration took = absl::Now() - start;
  std::cout << "FleetStats::Record: " << kDevices * kRounds / absl::ToDoubleSeconds(took)
            << " reports/s\n";
  EXPECT_EQ(stats_->Totals("t", "", kV1).activated, kDevices / 2 * kRounds);
  EXPECT_EQ(stats_->DevicesPerVersion(10), (std::vector<std::pair<std::string, int64_t>>{
                                               {kV1, kDevices / 2}, {kV2, kDevices / 2}}));
  MD_EXPECT_OK(stats_->Flush(kStart));
}

}  // namespace
}  // namespace modeldist::services
