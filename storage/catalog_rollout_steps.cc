// The policy side of rollouts (migrations/0011_rollout_policy.sql): when the schedule's next
// step is due, and the steps: each share a rollout took, and its end, with the fleet's
// cumulative report counts at that moment, so that the reports of one step are the difference
// of two rows.
#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "common/limits.h"
#include "common/status.h"
#include "google/protobuf/util/time_util.h"
#include "storage/catalog.h"
#include "storage/catalog_internal.h"

namespace modeldist::storage {
namespace {

#define MD_STEP_COLUMNS                                                                    \
  "kind, basis_points, time, actor, activated, load_confirmed, load_failed, rolled_back,"  \
  " sync_failed, from_activated, from_load_confirmed, from_load_failed, from_rolled_back," \
  " from_sync_failed"
constexpr char kSelectSteps[] =
    "SELECT " MD_STEP_COLUMNS " FROM rollout_steps WHERE rollout_id = ? ORDER BY step";
constexpr char kSelectLastStep[] = "SELECT step, " MD_STEP_COLUMNS
                                   " FROM rollout_steps WHERE rollout_id = ?"
                                   " ORDER BY step DESC LIMIT 1";
constexpr char kInsertStep[] =
    "INSERT INTO rollout_steps (rollout_id, step, kind, basis_points, time, actor, activated,"
    " load_confirmed, load_failed, rolled_back, sync_failed, from_activated,"
    " from_load_confirmed, from_load_failed, from_rolled_back, from_sync_failed)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)";
#undef MD_STEP_COLUMNS

// Five count columns from `first` on.
ReportCounts ReadCounts(const Statement& s, int first) {
  ReportCounts counts;
  counts.activated = s.ColumnInt64(first);
  counts.load_confirmed = s.ColumnInt64(first + 1);
  counts.load_failed = s.ColumnInt64(first + 2);
  counts.rolled_back = s.ColumnInt64(first + 3);
  counts.sync_failed = s.ColumnInt64(first + 4);
  return counts;
}

void BindCounts(Statement& s, int first, const ReportCounts& counts) {
  s.BindInt64(first, counts.activated);
  s.BindInt64(first + 1, counts.load_confirmed);
  s.BindInt64(first + 2, counts.load_failed);
  s.BindInt64(first + 3, counts.rolled_back);
  s.BindInt64(first + 4, counts.sync_failed);
}

// MD_STEP_COLUMNS from column `first` on.
RolloutStepRecord ReadStep(const Statement& s, int first) {
  RolloutStepRecord step;
  step.kind = s.ColumnInt(first) == RolloutStepRecord::kEnd ? RolloutStepRecord::kEnd
                                                            : RolloutStepRecord::kShare;
  step.basis_points = s.ColumnInt(first + 1);
  step.time = absl::FromUnixMicros(s.ColumnInt64(first + 2));
  step.actor = s.ColumnText(first + 3);
  step.counts = ReadCounts(s, first + 4);
  step.from_counts = ReadCounts(s, first + 9);
  return step;
}

}  // namespace

// When the schedule takes its next step after a change at `now`: while ACTIVE with a schedule
// step above the share, `now` + step_interval (every change restarts the wait); else none. A
// schedule that ends at 10000 has one more step at 10000: completing the rollout, one healthy
// interval after it reached everyone (services/rollout_autopilot.h).
std::optional<int64_t> NextStepTime(const v1::Rollout& rollout, int64_t now) {
  if (rollout.state() != v1::Rollout::ACTIVE || !rollout.has_policy()) return std::nullopt;
  const v1::RolloutPolicy& policy = rollout.policy();
  const int64_t interval =
      policy.step_interval().seconds() * 1000000 + policy.step_interval().nanos() / 1000;
  for (int32_t bp : policy.schedule_bp()) {
    if (bp > rollout.basis_points()) return now + interval;
  }
  const int steps = policy.schedule_bp_size();
  if (steps > 0 && policy.schedule_bp(steps - 1) == kMaxBasisPoints &&
      rollout.basis_points() == kMaxBasisPoints) {
    return now + interval;
  }
  return std::nullopt;
}

absl::Status CheckNoteRollout(const StoredRollout& stored, const RolloutNote& note) {
  if (note.rollout_id.empty()) return absl::OkStatus();
  if (note.rollout_id != stored.rollout.id()) {
    return MakeError(absl::StatusCode::kNotFound, "ROLLOUT_NOT_FOUND",
                     absl::StrCat("rollout ", note.rollout_id, " is no longer open (",
                                  stored.rollout.id(), " is)"),
                     {{"rollout", note.rollout_id}});
  }
  if (note.judged_update_micros != 0 &&
      google::protobuf::util::TimeUtil::TimestampToMicroseconds(stored.rollout.update_time()) !=
          note.judged_update_micros) {
    return MakeError(absl::StatusCode::kNotFound, "ROLLOUT_NOT_FOUND",
                     absl::StrCat("rollout ", note.rollout_id,
                                  " changed since it was judged; judged again next round"),
                     {{"rollout", note.rollout_id}});
  }
  return absl::OkStatus();
}

// The audit details' tail for a change a gate made.
std::string ReasonSuffix(const RolloutNote& note) {
  return note.state_reason.empty() ? "" : absl::StrCat(": ", note.state_reason);
}

absl::Status Catalog::Impl::InsertRolloutStep(const StoredRollout& stored,
                                              RolloutStepRecord::Kind kind, int64_t now,
                                              absl::string_view actor, const RolloutNote& note) {
  const bool counted = note.counts_version == stored.rollout.to_version();
  int64_t number = 0;
  ReportCounts counts;
  ReportCounts from_counts;
  {
    MD_ASSIGN_OR_RETURN(Statement s, Prepare(kSelectLastStep));
    s.BindInt64(0, stored.id);
    MD_ASSIGN_OR_RETURN(bool found, s.Step());
    if (found) {
      number = s.ColumnInt64(0) + 1;
      const RolloutStepRecord last = ReadStep(s, 1);
      counts = last.counts;
      from_counts = last.from_counts;
    }
  }
  // An end without its own counts would freeze the last step's reports at zero; without the
  // row the last step counts on until now, which is closer to the truth.
  if (kind == RolloutStepRecord::kEnd && !counted) return absl::OkStatus();
  if (counted) counts = note.counts;
  if (note.from_counts_version == stored.rollout.from_version()) from_counts = note.from_counts;
  MD_ASSIGN_OR_RETURN(Statement s, Prepare(kInsertStep));
  s.BindInt64(0, stored.id);
  s.BindInt64(1, number);
  s.BindInt64(2, kind);
  s.BindInt64(3, stored.rollout.basis_points());
  s.BindInt64(4, now);
  s.BindText(5, actor);
  BindCounts(s, 6, counts);
  BindCounts(s, 11, from_counts);
  return s.Run();
}

absl::StatusOr<std::vector<RolloutStepRecord>> Catalog::Impl::LoadRolloutSteps(int64_t rollout_id) {
  std::vector<RolloutStepRecord> steps;
  MD_ASSIGN_OR_RETURN(Statement s, Prepare(kSelectSteps));
  s.BindInt64(0, rollout_id);
  while (true) {
    MD_ASSIGN_OR_RETURN(bool row, s.Step());
    if (!row) break;
    steps.push_back(ReadStep(s, 0));
  }
  return steps;
}

absl::StatusOr<RolloutRecord> Catalog::GetRolloutRecord(absl::string_view tier,
                                                        absl::string_view channel) {
  absl::MutexLock lock(&impl_->mu);
  Transaction txn(&impl_->statements);
  MD_RETURN_IF_ERROR(txn.BeginRead());
  MD_ASSIGN_OR_RETURN(std::optional<StoredRollout> stored, impl_->LoadNewestRollout(tier, channel));
  if (!stored) {
    return MakeError(
        absl::StatusCode::kNotFound, "ROLLOUT_NOT_FOUND",
        absl::StrCat("tier \"", tier, "\" on channel \"", channel, "\" never had a rollout"),
        {{"tier", std::string(tier)}, {"channel", std::string(channel)}});
  }
  RolloutRecord record;
  MD_ASSIGN_OR_RETURN(record.steps, impl_->LoadRolloutSteps(stored->id));
  record.rollout = std::move(stored->rollout);
  MD_RETURN_IF_ERROR(txn.Commit());
  return record;
}

absl::StatusOr<std::vector<RolloutRecord>> Catalog::ListGatedRollouts() {
  absl::MutexLock lock(&impl_->mu);
  Transaction txn(&impl_->statements);
  MD_RETURN_IF_ERROR(txn.BeginRead());
  MD_ASSIGN_OR_RETURN(std::vector<StoredRollout> gated, impl_->LoadGatedRollouts());
  std::vector<RolloutRecord> records;
  for (StoredRollout& stored : gated) {
    RolloutRecord& record = records.emplace_back();
    MD_ASSIGN_OR_RETURN(record.steps, impl_->LoadRolloutSteps(stored.id));
    record.rollout = std::move(stored.rollout);
  }
  MD_RETURN_IF_ERROR(txn.Commit());
  return records;
}

}  // namespace modeldist::storage
