#include "services/rollout_status.h"

#include <string>
#include <utility>
#include <vector>

#include "common/status.h"
#include "google/protobuf/util/time_util.h"
#include "services/request_validation.h"

namespace modeldist::services {
namespace {

using google::protobuf::util::TimeUtil;

bool IsOpen(const v1::Rollout& rollout) {
  return rollout.state() == v1::Rollout::ACTIVE || rollout.state() == v1::Rollout::PAUSED;
}

}  // namespace

absl::Status GetRolloutStatus(storage::Catalog& catalog, const RolloutAutopilot* autopilot,
                              const v1::RolloutRequest& request, v1::RolloutStatus* response) {
  std::string channel;
  MD_RETURN_IF_ERROR(
      RequestCheck().TierChannel(request.tier(), request.channel(), &channel).status());
  MD_ASSIGN_OR_RETURN(storage::RolloutRecord record,
                      catalog.GetRolloutRecord(request.tier(), channel));
  const v1::Rollout& rollout = record.rollout;
  auto counts_now = [&](const std::string& version) {
    return autopilot == nullptr ? VersionCounts()
                                : autopilot->Counts(rollout.tier(), rollout.channel(), version);
  };

  // The share steps, and where the last one ended: the end row of a finished rollout, now for
  // an open one (or one that ended without counts, e.g. by a yank).
  std::vector<const storage::RolloutStepRecord*> shares;
  const storage::RolloutStepRecord* end = nullptr;
  for (const storage::RolloutStepRecord& step : record.steps) {
    if (step.kind == storage::RolloutStepRecord::kEnd) {
      end = &step;
    } else {
      shares.push_back(&step);
    }
  }
  const VersionCounts to_end = end != nullptr && !IsOpen(rollout)
                                   ? FromReportCounts(end->counts)
                                   : counts_now(rollout.to_version());
  const VersionCounts from_end = end != nullptr && !IsOpen(rollout)
                                     ? FromReportCounts(end->from_counts)
                                     : counts_now(rollout.from_version());
  // A rollout older than the steps table counts from its start with a zero snapshot.
  const VersionCounts to_start =
      shares.empty() ? VersionCounts() : FromReportCounts(shares.front()->counts);
  const VersionCounts from_start =
      shares.empty() ? VersionCounts() : FromReportCounts(shares.front()->from_counts);
  const VersionCounts since_start = CountsSince(to_end, to_start);

  *response->mutable_rollout() = rollout;
  *response->mutable_to_version() = HealthOf(since_start);
  *response->mutable_from_version() = HealthOf(CountsSince(from_end, from_start));
  for (size_t i = 0; i < shares.size(); ++i) {
    const VersionCounts until =
        i + 1 < shares.size() ? FromReportCounts(shares[i + 1]->counts) : to_end;
    v1::RolloutStep* step = response->add_steps();
    step->set_basis_points(shares[i]->basis_points);
    *step->mutable_start_time() =
        TimeUtil::MicrosecondsToTimestamp(absl::ToUnixMicros(shares[i]->time));
    step->set_actor(shares[i]->actor);
    *step->mutable_health() = HealthOf(CountsSince(until, FromReportCounts(shares[i]->counts)));
  }
  for (v1::GateState& gate : JudgeGates(rollout.policy(), since_start)) {
    *response->add_gates() = std::move(gate);
  }
  return absl::OkStatus();
}

storage::RolloutNote RolloutNoteNow(storage::Catalog& catalog, const RolloutAutopilot* autopilot,
                                    absl::string_view tier, absl::string_view channel) {
  if (autopilot == nullptr) return {};
  absl::StatusOr<storage::RolloutRecord> record = catalog.GetRolloutRecord(tier, channel);
  // No open rollout: the change itself reports that.
  if (!record.ok() || !IsOpen(record->rollout)) return {};
  return autopilot->NoteFor(tier, channel, record->rollout.to_version(),
                            record->rollout.from_version());
}

}  // namespace modeldist::services
