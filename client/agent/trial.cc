#include "client/agent/trial.h"

#include <memory>
#include <optional>
#include <string>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "client/agent/agent.h"  // SyncOptions
#include "client/agent/report_queue.h"
#include "client/agent/reporting.h"
#include "common/limits.h"
#include "common/status.h"

namespace modeldist::agent {
namespace {

constexpr char kReasonLoadFailed[] = "LOAD_FAILED";
constexpr char kReasonExpired[] = "TRIAL_EXPIRED";
constexpr char kReasonLaunchLimit[] = "TRIAL_LAUNCH_LIMIT";

// One trial transition: the store and the lock for the whole of it.
struct Session {
  const TrialOptions& options;
  ModelStore store;
  TrialLock lock;
  TrialState state;

  void Report(v1::StatusEvent event, const TrialRecord& about, const std::string& reason) {
    absl::Status s = AppendTrialEvent(options, event, about.tier, about.channel, about.version,
                                      about.digest, reason);
    if (!s.ok()) state.report_error = std::string(s.message());
  }
};

absl::StatusOr<Session> Begin(const TrialOptions& options) {
  MD_ASSIGN_OR_RETURN(ModelStore store, ModelStore::Open(options.dir));
  MD_ASSIGN_OR_RETURN(TrialLock lock, TrialLock::Acquire(store.dir()));
  return Session{options, std::move(store), std::move(lock), {}};
}

// Steps (1)-(3) of a rollback (model_store.h, Trials): the rejection first, so that a crash
// after it is finished by the next RecoverLocked.
absl::Status RollBackLocked(Session& s, const TrialRecord& trial, const std::string& reason) {
  const std::string& dir = s.store.dir();
  MD_RETURN_IF_ERROR(SetRejected(dir, trial.tier, trial.channel, trial.digest, reason));
  std::string target = trial.confirmed;
  if (!target.empty() && !s.store.Installed(target)) {
    // Only a hand edit removes the confirmed version while a trial is open; `previous` is
    // confirmed too (model_store.h), so it is the next best.
    std::optional<InstalledVersion> previous = s.store.Previous();
    target = previous && previous->key != trial.key ? previous->key : "";
  }
  MD_RETURN_IF_ERROR(s.store.SetCurrent(target));
  MD_RETURN_IF_ERROR(RemoveTrial(dir));
  s.state.current = s.store.Current();
  s.state.on_trial = false;
  s.state.rolled_back = trial;
  s.state.rollback_reason = reason;
  s.Report(v1::STATUS_EVENT_ROLLED_BACK, trial, reason);
  return absl::OkStatus();
}

// Brings the record in line with the links (the crash cases of model_store.h) and finishes a
// rollback a crash interrupted. Leaves state.current/on_trial/record set.
absl::Status RecoverLocked(Session& s) {
  const std::string& dir = s.store.dir();
  s.state.current = s.store.Current();
  std::optional<TrialRecord> record = ReadTrial(dir);
  if (!record) return absl::OkStatus();
  const std::string current_key = s.state.current ? s.state.current->key : "";
  if (current_key == record->confirmed || !s.state.current) {
    // Activation never moved `current`, or a rollback did and was interrupted before the
    // record went (or `current` is gone, which no transition leaves): nothing is on trial.
    return RemoveTrial(dir);
  }
  if (current_key != record->key) {
    // A later activation wrote its record and died before moving `current`, which is still
    // the version on trial before it: that trial goes on, its count and clock from now.
    record->key = current_key;
    record->version = s.state.current->version;
    record->digest = s.state.current->digest;
    record->activated = s.options.now();
    record->launches = 0;
    MD_RETURN_IF_ERROR(WriteTrial(dir, *record));
  }
  if (std::optional<Rejected> rejected = FindRejected(dir, record->tier, record->channel);
      rejected && rejected->digest == record->digest) {
    // Step (1) of a rollback is durable, (2) did not happen: redo it.
    return RollBackLocked(s, *record, rejected->reason);
  }
  s.state.on_trial = true;
  s.state.record = *std::move(record);
  return absl::OkStatus();
}

absl::Status RollBackIfExpired(Session& s) {
  if (!s.state.on_trial) return absl::OkStatus();
  const absl::Duration timeout = s.state.record.limits.timeout;
  if (timeout > absl::ZeroDuration() && s.options.now() - s.state.record.activated >= timeout) {
    return RollBackLocked(s, s.state.record, kReasonExpired);
  }
  return absl::OkStatus();
}

// CURRENT_CHANGED when the app loaded another path than what is current now.
absl::Status CheckLoaded(const Session& s, const std::string& loaded_path) {
  if (loaded_path.empty() || (s.state.current && s.state.current->path == loaded_path)) {
    return absl::OkStatus();
  }
  return MakeError(absl::StatusCode::kFailedPrecondition, "CURRENT_CHANGED",
                   absl::StrCat("the app loaded ", loaded_path, ", but the current model is now ",
                                s.state.current ? s.state.current->path : "none",
                                "; ask for the current path again"));
}

}  // namespace

absl::Status ValidateLoadFailureReason(absl::string_view reason) {
  if (IsStatusReason(reason)) return absl::OkStatus();
  return InvalidArgument("reason", "INVALID_LOAD_FAILURE_REASON",
                         absl::StrCat("a load failure reason is UPPER_SNAKE_CASE of at most ",
                                      kMaxStatusReasonBytes, " bytes, e.g. OUT_OF_MEMORY"));
}

absl::Status AppendTrialEvent(const TrialOptions& options, v1::StatusEvent event,
                              const std::string& tier, const std::string& channel,
                              const std::string& version, const std::string& digest,
                              const std::string& reason) {
  if (!options.queue_reports) return absl::OkStatus();
  SyncOptions target;  // what NewReport stamps a report with (reporting.h)
  target.tier = tier.empty() ? options.tier : tier;
  target.channel = tier.empty() ? options.channel : channel;
  target.platform = options.platform;
  target.arch = options.arch;
  target.now = options.now;
  v1::StatusReport report = NewReport(target, event);
  report.set_version(version);
  report.set_digest(digest);
  report.set_reason(reason);
  MD_ASSIGN_OR_RETURN(std::unique_ptr<ReportQueue> queue, ReportQueue::Open(options.dir));
  return queue->Append(report);
}

absl::StatusOr<TrialState> SettleTrial(const TrialOptions& options) {
  MD_ASSIGN_OR_RETURN(Session s, Begin(options));
  MD_RETURN_IF_ERROR(RecoverLocked(s));
  MD_RETURN_IF_ERROR(RollBackIfExpired(s));
  return std::move(s.state);
}

absl::StatusOr<TrialState> LaunchCurrent(const TrialOptions& options) {
  MD_ASSIGN_OR_RETURN(Session s, Begin(options));
  MD_RETURN_IF_ERROR(RecoverLocked(s));
  MD_RETURN_IF_ERROR(RollBackIfExpired(s));
  if (s.state.on_trial) {
    TrialRecord& r = s.state.record;
    if (r.limits.max_launches > 0 && r.launches >= r.limits.max_launches) {
      // The app had its launches on this version and none confirmed it.
      MD_RETURN_IF_ERROR(RollBackLocked(s, r, kReasonLaunchLimit));
    } else {
      ++r.launches;
      MD_RETURN_IF_ERROR(WriteTrial(s.store.dir(), r));
    }
  }
  if (!s.state.current) {
    return MakeError(absl::StatusCode::kNotFound, "NO_MODEL",
                     s.state.rolled_back ? "no model: the first version failed on trial and was "
                                           "rolled back; the next manifest brings another"
                                         : "no model is installed yet; run a sync");
  }
  return std::move(s.state);
}

absl::StatusOr<TrialState> ConfirmLoaded(const TrialOptions& options,
                                         const std::string& loaded_path) {
  MD_ASSIGN_OR_RETURN(Session s, Begin(options));
  MD_RETURN_IF_ERROR(RecoverLocked(s));
  MD_RETURN_IF_ERROR(CheckLoaded(s, loaded_path));
  if (!s.state.on_trial) return std::move(s.state);
  MD_RETURN_IF_ERROR(RemoveTrial(s.store.dir()));
  s.state.on_trial = false;
  s.state.confirmed = true;
  s.Report(v1::STATUS_EVENT_LOAD_CONFIRMED, s.state.record, "");
  return std::move(s.state);
}

absl::StatusOr<TrialState> ReportLoadFailed(const TrialOptions& options, const std::string& reason,
                                            const std::string& loaded_path) {
  MD_RETURN_IF_ERROR(ValidateLoadFailureReason(reason));
  MD_ASSIGN_OR_RETURN(Session s, Begin(options));
  MD_RETURN_IF_ERROR(RecoverLocked(s));
  MD_RETURN_IF_ERROR(CheckLoaded(s, loaded_path));
  if (!s.state.current) return std::move(s.state);
  if (!s.state.on_trial) {
    TrialRecord about;
    about.version = s.state.current->version;
    about.digest = s.state.current->digest;
    s.Report(v1::STATUS_EVENT_LOAD_FAILED, about, reason);
    return std::move(s.state);
  }
  s.Report(v1::STATUS_EVENT_LOAD_FAILED, s.state.record, reason);
  const std::string report_error = s.state.report_error;
  MD_RETURN_IF_ERROR(RollBackLocked(s, s.state.record, kReasonLoadFailed));
  if (s.state.report_error.empty()) s.state.report_error = report_error;
  return std::move(s.state);
}

}  // namespace modeldist::agent
