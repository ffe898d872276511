// File: fleet_stats.h
//
// What the fleet reported (FleetService.ReportStatus), counted in memory and kept in the
// catalog: cumulative counts per (tier, channel, version, event) that rollout gates diff
// between two moments, counts per hour for GetFleetSummary's window, each device's newest
// version (by the SHA-256 of its id, never the id), and a bounded sample of recent failures.
// Reports are statistics only: nothing here decides what a device is offered.
//
// Thread-safe. Record is on the ReportStatus path (tens of thousands of calls a second), so it
// only updates maps under a mutex; Flush writes what changed since the last flush to the
// catalog in one transaction, from a background loop (services/server.cc) and at shutdown. A
// crash loses at most the reports since the last flush (docs/fleet.md).
//
// Devices send what they like, unauthenticated. Only reports about a tier/channel and version
// the catalog knows are counted (the names are read again when the catalog's change), so
// made-up names can neither fill the maps nor push real versions out of them; every map is
// bounded besides (FleetLimits). Made-up device ids can still skew the figures (docs/fleet.md).
#ifndef MODELDIST_SERVICES_FLEET_STATS_H_
#define MODELDIST_SERVICES_FLEET_STATS_H_

#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "modeldist/v1/fleet.pb.h"
#include "services/metrics/metrics.h"
#include "storage/catalog.h"
#include "storage/fleet_rows.h"

namespace modeldist::services {

// How long daily counts are kept, and devices not heard from are remembered. Also the longest
// GetFleetSummary window (INVALID_WINDOW beyond it). docs/fleet.md states the same.
inline constexpr absl::Duration kFleetRetention = absl::Hours(30 * 24);
// How long counts are kept per hour; older hours are rolled up into days.
inline constexpr absl::Duration kFleetHourlyRetention = absl::Hours(48);

// The bounds of what FleetStats keeps (docs/fleet.md).
struct FleetLimits {
  // Distinct rows of one hour's counts; past it a report's reason is counted as OTHER, and
  // past twice it a report is left out of the hour (it still counts in the totals).
  int64_t max_rows_per_hour = 2000;
  // Likewise for one day's counts, rolled up from its hours.
  int64_t max_rows_per_day = 5000;
  // Distinct (tier, channel, version, event) totals; reports about new ones past it are left
  // out of the totals. Only known names are counted, so a catalog would need more than
  // 14 000 bound versions per tier/channel for this to bite.
  int64_t max_totals = 100000;
  // Devices remembered; new devices past it are not (their reports are still counted).
  int64_t max_devices = 2000000;
  // Distinct (tier, channel, version) that devices are on.
  int64_t max_places = 100000;
  // Failures kept in the recent sample.
  int64_t recent_failures = 200;
  // Reports about names the catalog did not know yet, kept until the next flush reads the
  // catalog's names again (a version bound a moment before its first report); past it such
  // reports are dropped at once.
  int64_t max_pending = 10000;
};

// Report counts about one version on one tier/channel: the same figures rollout steps store.
using VersionCounts = storage::ReportCounts;

// Field by field `now - earlier` (counts since a snapshot).
VersionCounts Minus(const VersionCounts& now, const VersionCounts& earlier);

class FleetStats {
 public:
  // Loads the totals, per-hour counts and devices kept in `catalog` (which outlives this).
  static absl::StatusOr<std::unique_ptr<FleetStats>> Load(storage::Catalog* catalog,
                                                          FleetLimits limits = FleetLimits());

  // The key of a device: the SHA-256 of its id (32 raw bytes; the id is never kept).
  static std::string DeviceKeyOf(absl::string_view device_id);

  // Counts one validated batch (services/fleet_service.h validates) from the device whose
  // DeviceKeyOf is `device_key`, received at `now`. Reports about a tier/channel or version
  // that the catalog does not know are not counted (the next flush counts those whose names
  // the catalog has by then), only in `dropped` (CountDropsIn).
  void Record(const v1::ReportStatusRequest& request, absl::string_view device_key, absl::Time now)
      ABSL_LOCKS_EXCLUDED(mu_);

  // Where dropped reports are counted, by why ("unknown_tier", "unknown_version"); the
  // family (label `why`) outlives this. Call before reports arrive.
  void CountDropsIn(metrics::CounterFamily* dropped);

  // Every report ever counted about `version` on tier/channel (persisted across restarts).
  // Gates diff two of these: now, and when the rollout (or its step) started. An empty
  // channel means the default one.
  VersionCounts Totals(absl::string_view tier, absl::string_view channel,
                       absl::string_view version) const ABSL_LOCKS_EXCLUDED(mu_);

  // Figures for GetFleetSummary: reports received since `since` (rounded down to the hour, or
  // to the day when older than the hourly retention), filtered by `tier` (and `channel`) when
  // non-empty. Devices are all those remembered (heard from within the retention, not only
  // the window), at their newest state.
  v1::FleetSummary Summary(absl::string_view tier, absl::string_view channel,
                           absl::Time since) const ABSL_LOCKS_EXCLUDED(mu_);

  // Devices remembered per version (all tiers, the retention's), the `max` most common
  // versions, most devices first (the /metrics gauge).
  std::vector<std::pair<std::string, int64_t>> DevicesPerVersion(size_t max) const
      ABSL_LOCKS_EXCLUDED(mu_);

  // Writes what changed since the last flush to the catalog, rolls hours older than
  // kFleetHourlyRetention up into days, drops days and devices older than the retention
  // (docs/fleet.md) at `now`, reads the catalog's names again when they changed, and counts
  // or drops the reports that waited for them. On failure, what it did not write is written
  // by the next flush.
  absl::Status Flush(absl::Time now) ABSL_LOCKS_EXCLUDED(flush_mu_, mu_);

 private:
  // (tier, channel, version, event).
  using TotalKey = std::tuple<std::string, std::string, std::string, int>;
  // (tier, channel, version, platform, arch, event, reason).
  using HourKey = std::tuple<std::string, std::string, std::string, int, int, int, std::string>;
  // (tier, channel, version): where a device is.
  using Place = std::tuple<std::string, std::string, std::string>;
  // (place index, platform, arch, rolled back): a row of FleetSummary.versions.
  using FieldKey = std::tuple<uint32_t, int, int, bool>;
  using DeviceKey = std::string;  // 32 raw bytes of SHA-256

  // The counts of one hour or one day.
  struct Hour {
    absl::flat_hash_map<HourKey, int64_t> counts;
    absl::flat_hash_set<HourKey> dirty;
  };
  struct Pending {
    v1::StatusReport report;
    std::string app_version;
    DeviceKey device;
    int64_t time = 0;  // micros
  };
  enum class Known { kYes, kNoTier, kNoVersion };
  struct Device {
    uint32_t place = 0;  // index into places_
    int32_t platform = 0;
    int32_t arch = 0;
    bool rolled_back = false;
    int64_t last_heard = 0;    // micros
    int64_t stored_heard = 0;  // last_heard as last written (kept to the hour)
  };
  struct Failure {
    int64_t seq = 0;
    int64_t time = 0;  // micros
    std::string tier, channel, version;
    int event = 0;
    std::string reason;
    int platform = 0;
    int arch = 0;
    std::string app_version;
  };

  FleetStats(storage::Catalog* catalog, FleetLimits limits) : catalog_(catalog), limits_(limits) {}

  Known Check(const v1::StatusReport& report, absl::string_view channel) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Counts one report about known names.
  void Count(const v1::StatusReport& report, const std::string& channel,
             absl::string_view app_version, const DeviceKey& device, int64_t micros)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Drop(Known why, int64_t n) const;
  // Adds `n` to `key` in `bucket`, bounded by `max_rows` as FleetLimits says.
  static void CountIn(Hour& bucket, HourKey key, int64_t n, int64_t max_rows);
  void SetNames(storage::FleetNames names) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Counts the reports that waited for the names, or drops them.
  void TakePending() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Hours before `before` into days.
  void RollUp(int64_t before, storage::FleetChanges* changes) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The index of `place`, interned; -1 when places are full.
  int64_t PlaceIndex(const Place& place) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void SetDevice(const DeviceKey& key, const v1::StatusReport& report, absl::string_view channel,
                 int64_t now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void ForgetDevice(const Device& device) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The changes a flush writes; clears the dirty marks. Retention drops at `now` too.
  storage::FleetChanges TakeChanges(int64_t now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Marks the rows of failed `changes` dirty again.
  void Restore(const storage::FleetChanges& changes) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  storage::Catalog* const catalog_;
  const FleetLimits limits_;
  absl::Mutex flush_mu_;  // one flush at a time
  mutable absl::Mutex mu_;
  absl::flat_hash_map<TotalKey, int64_t> totals_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_set<TotalKey> dirty_totals_ ABSL_GUARDED_BY(mu_);
  std::map<int64_t, Hour> hours_ ABSL_GUARDED_BY(mu_);  // by the hour's start, micros
  std::map<int64_t, Hour> days_ ABSL_GUARDED_BY(mu_);   // by the day's start, micros
  // Hours before this are in days_ (rounded up to a day after a load).
  int64_t rolled_before_ ABSL_GUARDED_BY(mu_) = 0;
  std::vector<Place> places_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<Place, uint32_t> place_index_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<DeviceKey, Device> devices_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_set<DeviceKey> dirty_devices_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::string, int64_t> devices_per_version_ ABSL_GUARDED_BY(mu_);
  // Devices remembered per row of FleetSummary.versions, so that Summary never walks devices_.
  absl::flat_hash_map<FieldKey, int64_t> field_ ABSL_GUARDED_BY(mu_);
  // The names the catalog knows (channels as stored, never empty).
  absl::flat_hash_set<std::string> known_versions_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_set<std::pair<std::string, std::string>> known_tiers_ ABSL_GUARDED_BY(mu_);
  storage::FleetNames names_read_ ABSL_GUARDED_BY(flush_mu_);  // its stamp: the last read
  std::vector<Pending> pending_ ABSL_GUARDED_BY(mu_);
  metrics::Counter* dropped_tier_ = nullptr;
  metrics::Counter* dropped_version_ = nullptr;
  std::deque<Failure> failures_ ABSL_GUARDED_BY(mu_);  // oldest first
  int64_t next_failure_seq_ ABSL_GUARDED_BY(mu_) = 1;
  int64_t stored_failure_seq_ ABSL_GUARDED_BY(mu_) = 0;  // newest seq written
  int64_t last_sweep_ ABSL_GUARDED_BY(mu_) = 0;          // micros; 0: never
};

}  // namespace modeldist::services

#endif  // MODELDIST_SERVICES_FLEET_STATS_H_
