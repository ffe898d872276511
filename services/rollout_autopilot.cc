#include "services/rollout_autopilot.h"

#include <algorithm>
#include <iostream>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/limits.h"
#include "common/status.h"
#include "google/protobuf/util/time_util.h"

namespace modeldist::services {
namespace {

using google::protobuf::util::TimeUtil;

// The audit actors of the autopilot's changes.
constexpr absl::string_view kGateActor = "gate";
constexpr absl::string_view kScheduleActor = "schedule";
// RolloutPolicy.min_reports when 0.
constexpr int64_t kDefaultMinReports = 100;
// RolloutPolicy.schedule_bp's bounds.
constexpr int kMaxScheduleSteps = 16;
constexpr absl::Duration kMinStepInterval = absl::Minutes(1);
// And at most this: next_step_time is the change's time + step_interval in microseconds, which
// must neither overflow nor leave the Timestamp range (an overflow would read as long past,
// and the schedule would step at once).
constexpr int64_t kMaxStepIntervalSeconds = int64_t{366} * 24 * 3600;

absl::Status BadPolicy(absl::string_view field, absl::string_view message) {
  return InvalidArgument(absl::StrCat("policy.", field), "INVALID_ROLLOUT_POLICY",
                         absl::StrCat("policy.", field, ": ", message));
}

// numerator / denominator in basis points, rounded down; 0 when the denominator is 0.
int32_t RateBp(int64_t numerator, int64_t denominator) {
  if (denominator <= 0) return 0;
  return static_cast<int32_t>(numerator * kMaxBasisPoints / denominator);
}

v1::GateState Gate(absl::string_view name, int32_t max_bp, int64_t failures, int64_t reports,
                   int64_t min_reports) {
  v1::GateState gate;
  gate.set_name(std::string(name));
  gate.set_max_bp(max_bp);
  gate.set_observed_bp(RateBp(failures, reports));
  gate.set_reports(reports);
  gate.set_min_reports(min_reports);
  if (reports < min_reports) {
    gate.set_verdict(v1::GateState::WAITING);
  } else if (failures * kMaxBasisPoints > int64_t{max_bp} * reports) {
    // Exact: a rate a fraction of a basis point above the limit trips, though observed_bp
    // (rounded down) may equal max_bp.
    gate.set_verdict(v1::GateState::TRIPPED);
  } else {
    gate.set_verdict(v1::GateState::HEALTHY);
  }
  return gate;
}

// The first share of the schedule above `basis_points`; kMaxBasisPoints + 1 when the rollout
// is at 100 % and the schedule ends there (the completing step); 0 when none is left.
int32_t NextScheduledShare(const v1::RolloutPolicy& policy, int32_t basis_points) {
  for (int32_t bp : policy.schedule_bp()) {
    if (bp > basis_points) return bp;
  }
  const int steps = policy.schedule_bp_size();
  if (steps > 0 && policy.schedule_bp(steps - 1) == kMaxBasisPoints &&
      basis_points == kMaxBasisPoints) {
    return kMaxBasisPoints + 1;
  }
  return 0;
}

}  // namespace

absl::Status CheckRolloutPolicy(const v1::RolloutPolicy& policy, int32_t basis_points) {
  if (policy.max_load_failure_bp() < 0 || policy.max_load_failure_bp() > kMaxBasisPoints) {
    return BadPolicy("max_load_failure_bp", absl::StrCat("must be 0..", kMaxBasisPoints, ", got ",
                                                         policy.max_load_failure_bp()));
  }
  if (policy.max_sync_failure_bp() < 0 || policy.max_sync_failure_bp() > kMaxBasisPoints) {
    return BadPolicy("max_sync_failure_bp", absl::StrCat("must be 0..", kMaxBasisPoints, ", got ",
                                                         policy.max_sync_failure_bp()));
  }
  if (policy.min_reports() < 0) {
    return BadPolicy("min_reports",
                     absl::StrCat("must not be negative, got ", policy.min_reports()));
  }
  if (!v1::RolloutPolicy::GateAction_IsValid(policy.on_trip())) {
    return BadPolicy("on_trip", absl::StrCat("unknown action ", policy.on_trip()));
  }
  if (policy.schedule_bp_size() > kMaxScheduleSteps) {
    return BadPolicy("schedule_bp", absl::StrCat("at most ", kMaxScheduleSteps, " steps, got ",
                                                 policy.schedule_bp_size()));
  }
  int32_t previous = basis_points;
  for (int i = 0; i < policy.schedule_bp_size(); ++i) {
    const int32_t bp = policy.schedule_bp(i);
    if (bp <= previous || bp > kMaxBasisPoints) {
      return BadPolicy(absl::StrCat("schedule_bp[", i, "]"),
                       absl::StrCat(bp, " must be above ", previous, " (the step before, or ",
                                    "the starting basis_points) and at most ", kMaxBasisPoints));
    }
    previous = bp;
  }
  if (policy.step_interval().seconds() > kMaxStepIntervalSeconds ||
      policy.step_interval().seconds() < -kMaxStepIntervalSeconds) {
    return BadPolicy("step_interval",
                     absl::StrCat("must be at most ", kMaxStepIntervalSeconds / (24 * 3600),
                                  " days, got ", policy.step_interval().seconds(), "s"));
  }
  const absl::Duration interval =
      absl::Microseconds(TimeUtil::DurationToMicroseconds(policy.step_interval()));
  if (interval < absl::ZeroDuration() ||
      (policy.schedule_bp_size() > 0 && interval < kMinStepInterval)) {
    return BadPolicy("step_interval",
                     absl::StrCat("must be at least ", absl::FormatDuration(kMinStepInterval),
                                  " with a schedule, got ", absl::FormatDuration(interval)));
  }
  return absl::OkStatus();
}

// VersionCounts is storage::ReportCounts (services/fleet_stats.h): nothing to convert.
storage::ReportCounts ToReportCounts(const VersionCounts& counts) { return counts; }

VersionCounts FromReportCounts(const storage::ReportCounts& counts) { return counts; }

VersionCounts CountsSince(const VersionCounts& now, const VersionCounts& snapshot) {
  VersionCounts since = Minus(now, snapshot);
  for (int64_t* n : {&since.activated, &since.load_confirmed, &since.load_failed,
                     &since.rolled_back, &since.sync_failed}) {
    *n = std::max<int64_t>(*n, 0);
  }
  return since;
}

v1::RolloutHealth HealthOf(const VersionCounts& counts) {
  v1::RolloutHealth health;
  health.set_activated(counts.activated);
  health.set_load_confirmed(counts.load_confirmed);
  health.set_load_failed(counts.load_failed);
  health.set_rolled_back(counts.rolled_back);
  health.set_sync_failed(counts.sync_failed);
  health.set_load_failure_bp(
      RateBp(counts.load_failed, counts.load_confirmed + counts.load_failed));
  health.set_sync_failure_bp(RateBp(counts.sync_failed, counts.sync_failed + counts.activated));
  return health;
}

std::vector<v1::GateState> JudgeGates(const v1::RolloutPolicy& policy,
                                      const VersionCounts& since_start) {
  const int64_t min_reports = policy.min_reports() > 0 ? policy.min_reports() : kDefaultMinReports;
  std::vector<v1::GateState> gates;
  if (policy.max_load_failure_bp() > 0) {
    gates.push_back(Gate("load_failure", policy.max_load_failure_bp(), since_start.load_failed,
                         since_start.load_confirmed + since_start.load_failed, min_reports));
  }
  if (policy.max_sync_failure_bp() > 0) {
    gates.push_back(Gate("sync_failure", policy.max_sync_failure_bp(), since_start.sync_failed,
                         since_start.sync_failed + since_start.activated, min_reports));
  }
  return gates;
}

RolloutAutopilot::RolloutAutopilot(storage::Catalog* catalog, ManifestCache* manifests,
                                   ReportCounter counter, Options options)
    : catalog_(catalog),
      manifests_(manifests),
      counter_(std::move(counter)),
      options_(std::move(options)),
      loop_([this] {
        round_start_nanos_ = absl::ToUnixNanos(absl::Now());
        if (absl::StatusOr<int> changed = RunOnce(); !changed.ok()) {
          std::cerr << "modeldist-server: rollout autopilot: " << changed.status() << "\n";
        }
        return options_.period;
      }) {}

void RolloutAutopilot::Wake() {
  const int64_t now = absl::ToUnixNanos(absl::Now());
  if (now - round_start_nanos_.load() < absl::ToInt64Nanoseconds(options_.min_wake_gap)) return;
  loop_.Wake();
}

storage::RolloutNote RolloutAutopilot::NoteFor(absl::string_view tier, absl::string_view channel,
                                               absl::string_view to_version,
                                               absl::string_view from_version) const {
  storage::RolloutNote note;
  note.counts_version = std::string(to_version);
  note.counts = ToReportCounts(counter_(tier, channel, to_version));
  if (!from_version.empty()) {
    note.from_counts_version = std::string(from_version);
    note.from_counts = ToReportCounts(counter_(tier, channel, from_version));
  }
  return note;
}

void RolloutAutopilot::Resign() {
  if (manifests_ == nullptr) return;
  if (absl::Status s = manifests_->Rebuild(); !s.ok()) {
    std::cerr << "modeldist-server: re-signing manifests failed (will retry): " << s << "\n";
  }
}

absl::StatusOr<int> RolloutAutopilot::RunOnce() {
  MD_ASSIGN_OR_RETURN(std::vector<storage::RolloutRecord> gated, catalog_->ListGatedRollouts());
  int changed = 0;
  absl::Status first_error;
  for (const storage::RolloutRecord& record : gated) {
    absl::StatusOr<bool> acted = Judge(record);
    if (!acted.ok()) {
      // Another change won the race (an admin paused or ended it): nothing to do any more.
      const std::string reason = ErrorReason(acted.status());
      if (reason == "ROLLOUT_NOT_FOUND" || reason == "ROLLOUT_NOT_ACTIVE" ||
          reason == "ROLLOUT_PAUSED" || reason == "BASIS_POINTS_DECREASE") {
        continue;
      }
      if (first_error.ok()) first_error = acted.status();
      continue;
    }
    if (*acted) ++changed;
  }
  if (!first_error.ok()) return first_error;
  return changed;
}

absl::StatusOr<bool> RolloutAutopilot::Judge(const storage::RolloutRecord& record) {
  const v1::Rollout& rollout = record.rollout;
  const v1::RolloutPolicy& policy = rollout.policy();
  storage::RolloutNote note =
      NoteFor(rollout.tier(), rollout.channel(), rollout.to_version(), rollout.from_version());
  note.rollout_id = rollout.id();
  note.judged_update_micros = TimeUtil::TimestampToMicroseconds(rollout.update_time());
  const VersionCounts start =
      record.steps.empty() ? VersionCounts() : FromReportCounts(record.steps.front().counts);
  const std::vector<v1::GateState> gates =
      JudgeGates(policy, CountsSince(FromReportCounts(note.counts), start));

  bool all_healthy = true;
  for (const v1::GateState& gate : gates) {
    if (gate.verdict() == v1::GateState::TRIPPED) {
      note.state_reason = absl::StrCat(gate.name(), " ", gate.observed_bp(), " bp > ",
                                       gate.max_bp(), " bp over ", gate.reports(), " reports");
      if (policy.on_trip() == v1::RolloutPolicy::ABORT) {
        MD_RETURN_IF_ERROR(
            catalog_->AbortRollout(rollout.tier(), rollout.channel(), kGateActor, note).status());
      } else {
        MD_RETURN_IF_ERROR(
            catalog_->PauseRollout(rollout.tier(), rollout.channel(), kGateActor, note).status());
      }
      Resign();
      return true;
    }
    if (gate.verdict() != v1::GateState::HEALTHY) all_healthy = false;
  }
  // Not before every gate has judged (RolloutPolicy.step_interval).
  if (!all_healthy || !rollout.has_next_step_time()) return false;
  const absl::Time due =
      absl::FromUnixMicros(TimeUtil::TimestampToMicroseconds(rollout.next_step_time()));
  if (options_.now() < due) return false;
  const int32_t next = NextScheduledShare(policy, rollout.basis_points());
  if (next == 0) return false;
  if (next > kMaxBasisPoints) {
    MD_RETURN_IF_ERROR(
        catalog_->CompleteRollout(rollout.tier(), rollout.channel(), kScheduleActor, note)
            .status());
  } else {
    MD_RETURN_IF_ERROR(
        catalog_->AdvanceRollout(rollout.tier(), rollout.channel(), next, kScheduleActor, note)
            .status());
  }
  Resign();
  return true;
}

}  // namespace modeldist::services
