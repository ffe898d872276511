// File: rollout_autopilot.h
//
// Health-gated rollouts (docs/fleet.md, "Health-gated rollouts"): a background loop that, for
// every ACTIVE rollout with a RolloutPolicy, judges its gates on what the fleet reported about
// its to_version since it started, and
//   * when a gate trips, pauses or aborts it (policy.on_trip) with actor `gate`, the verdict in
//     Rollout.state_reason and in the audit entry;
//   * when every gate judged HEALTHY (or it has none) and next_step_time has passed, takes the
//     next step of the schedule with actor `schedule`. A schedule that ends at 100 % completes
//     the rollout one more step_interval after it reached 100 %, while still healthy, so that
//     the gates watch the whole fleet for one interval before the tier is bound.
// Changes go through the catalog's rollout methods, like an admin's (the sequence is bumped,
// an audit entry written), and the manifests are re-signed after each.
//
// Report counts come from a ReportCounter (FleetStats::Totals in the server; fed counts in
// tests). Every rollout change records a step with a snapshot of the counts (NoteFor), so a
// step's reports are the difference of two snapshots.
//
// Thread-safe.
#ifndef MODELDIST_SERVICES_ROLLOUT_AUTOPILOT_H_
#define MODELDIST_SERVICES_ROLLOUT_AUTOPILOT_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "modeldist/v1/fleet.pb.h"
#include "modeldist/v1/resources.pb.h"
#include "services/fleet_stats.h"
#include "services/manifest_cache.h"
#include "services/wakeable_loop.h"
#include "storage/catalog.h"

namespace modeldist::services {

// Cumulative report counts about `version` on tier/channel (FleetStats::Totals).
using ReportCounter = std::function<VersionCounts(absl::string_view tier, absl::string_view channel,
                                                  absl::string_view version)>;

// INVALID_ARGUMENT (INVALID_ROLLOUT_POLICY, the message and `field` naming the field) unless
// `policy` keeps the rules of StartRolloutRequest.policy for a rollout starting at
// `basis_points`.
absl::Status CheckRolloutPolicy(const v1::RolloutPolicy& policy, int32_t basis_points);

// The catalog's form of report counts, and back.
storage::ReportCounts ToReportCounts(const VersionCounts& counts);
VersionCounts FromReportCounts(const storage::ReportCounts& counts);

// The reports counted between `snapshot` and `now`, each at least 0: after a crash the totals
// may read below a snapshot taken from reports that were never flushed (docs/fleet.md).
VersionCounts CountsSince(const VersionCounts& now, const VersionCounts& snapshot);

// Counts and the rates the gates judge.
v1::RolloutHealth HealthOf(const VersionCounts& counts);

// The gates of `policy` (load_failure, then sync_failure; only those with a limit) judged on
// `since_start`, the reports about to_version since the rollout started.
std::vector<v1::GateState> JudgeGates(const v1::RolloutPolicy& policy,
                                      const VersionCounts& since_start);

class RolloutAutopilot {
 public:
  struct Options {
    // Between two rounds when nothing wakes the loop.
    absl::Duration period = absl::Seconds(5);
    // A Wake sooner than this after a round began waits for the next round: under a report
    // storm the loop runs at most about once per `min_wake_gap`, not once per batch.
    absl::Duration min_wake_gap = absl::Seconds(1);
    // The clock that next_step_time is compared with (the catalog's own clock writes it).
    std::function<absl::Time()> now = absl::Now;
  };

  // `catalog`, `manifests` (nullptr: nothing to re-sign, in tests) outlive this.
  RolloutAutopilot(storage::Catalog* catalog, ManifestCache* manifests, ReportCounter counter,
                   Options options);
  ~RolloutAutopilot() { Stop(); }

  // Starts the loop; the first round runs at once.
  void Start() { loop_.Start(); }
  void Stop() { loop_.Stop(); }

  // Judges soon: FleetService calls this after counting a ReportStatus batch. Cheap (an atomic
  // read) when a round began less than min_wake_gap ago.
  void Wake();

  // One round: judges every gated ACTIVE rollout and acts. Returns how many rollouts it
  // changed; the first error is returned after the other rollouts were handled.
  absl::StatusOr<int> RunOnce();

  // The counts about tier/channel's to/from versions now, as a rollout change records them.
  storage::RolloutNote NoteFor(absl::string_view tier, absl::string_view channel,
                               absl::string_view to_version, absl::string_view from_version) const;
  VersionCounts Counts(absl::string_view tier, absl::string_view channel,
                       absl::string_view version) const {
    return counter_(tier, channel, version);
  }

 private:
  // Judges one rollout and acts; true when it changed it.
  absl::StatusOr<bool> Judge(const storage::RolloutRecord& record);
  void Resign();

  storage::Catalog* const catalog_;
  ManifestCache* const manifests_;
  const ReportCounter counter_;
  const Options options_;
  std::atomic<int64_t> round_start_nanos_{0};  // absl::Now() at the last round's start
  WakeableLoop loop_;
};

}  // namespace modeldist::services

#endif  // MODELDIST_SERVICES_ROLLOUT_AUTOPILOT_H_
