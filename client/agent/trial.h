// File: trial.h
//
// Trial activation: a version a sync activates is `current` on trial until the app says that
// it loads (ConfirmLoaded) or that it does not (ReportLoadFailed). A failure, or silence past
// the trial's limits (launches counted by LaunchCurrent, time since activation), rolls the
// device back to the last confirmed version by itself, and the rolled-back digest is not
// installed again while the manifest keeps naming it (agent.h's Sync). With no limits (the
// default) a trial ends only by confirmation or reported failure, so an app that never
// confirms is never rolled back.
//
// The files are trial_state.h's; how activation writes them, and what a kill -9 at any point
// of a transition leaves, is in model_store.h (Trials). Every function here first brings the
// record in line with the links after a crash (and finishes an interrupted rollback), under
// <dir>/trial.lock. Each transition appends an event to the report queue (report_queue.h):
// ACTIVATED (Sync), LOAD_CONFIRMED, LOAD_FAILED, ROLLED_BACK; a report that cannot be
// appended never fails the transition (TrialState::report_error says why).
#ifndef MODELDIST_CLIENT_AGENT_TRIAL_H_
#define MODELDIST_CLIENT_AGENT_TRIAL_H_

#include <functional>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "client/agent/model_store.h"
#include "client/agent/trial_state.h"
#include "modeldist/v1/fleet.pb.h"

namespace modeldist::agent {

struct TrialOptions {
  std::string dir;
  // For the reports: the target, used when the trial record has none, and the device's
  // platform and arch (unspecified = detected).
  std::string tier;
  std::string channel;
  v1::Platform platform = v1::PLATFORM_UNSPECIFIED;
  v1::Arch arch = v1::ARCH_UNSPECIFIED;
  // Off: transitions queue no reports (reporting off, or no device id to send them with).
  bool queue_reports = true;
  // The clock the time limit is judged by, for tests.
  std::function<absl::Time()> now = [] { return absl::Now(); };
};

struct TrialState {
  std::optional<InstalledVersion> current;  // after whatever the call did
  bool on_trial = false;                    // `current` is on trial
  TrialRecord record;                       // the open trial, when on_trial
  // Set when this call rolled back: the version left, and why (LOAD_FAILED, TRIAL_EXPIRED,
  // TRIAL_LAUNCH_LIMIT, or the reason of a rollback a crash interrupted).
  std::optional<TrialRecord> rolled_back;
  std::string rollback_reason;
  bool confirmed = false;    // ConfirmLoaded ended a trial
  std::string report_error;  // a report that could not be queued (the transition stands)
};

// Recovers the trial state after a crash, then rolls back a trial whose time limit passed.
// Sync calls it first. Launch limits are judged by LaunchCurrent only: a sync that runs while
// the app is still loading must not take its last launch away.
absl::StatusOr<TrialState> SettleTrial(const TrialOptions& options);

// What an app calls when it starts, to learn which model to load: SettleTrial, then a version
// on trial whose launches reached its limit is rolled back (TRIAL_LAUNCH_LIMIT) and one still
// on trial has this launch counted. NOT_FOUND (NO_MODEL) when there is no current version.
absl::StatusOr<TrialState> LaunchCurrent(const TrialOptions& options);

// The app loaded the current version: the trial ends (the record is removed; LOAD_CONFIRMED).
// OK without a trial (nothing to do). `loaded_path`, when not empty, is the path the app
// loaded: FAILED_PRECONDITION (CURRENT_CHANGED) when `current` has moved on since (another
// version is on trial now: confirming it would vouch for what was not loaded). The time and
// launch limits are not applied: a confirmation that comes late but before a rollback counts.
absl::StatusOr<TrialState> ConfirmLoaded(const TrialOptions& options,
                                         const std::string& loaded_path = "");

// The app could not load the current version (`reason`: UPPER_SNAKE, at most 64 bytes;
// INVALID_ARGUMENT INVALID_LOAD_FAILURE_REASON otherwise). Reports LOAD_FAILED; when the
// version is on trial, rolls back (ROLLED_BACK, reason LOAD_FAILED). A confirmed version is
// not rolled back (it loaded before: the failure is reported and `current` stays).
// `loaded_path` as for ConfirmLoaded.
absl::StatusOr<TrialState> ReportLoadFailed(const TrialOptions& options, const std::string& reason,
                                            const std::string& loaded_path = "");

// INVALID_ARGUMENT (INVALID_LOAD_FAILURE_REASON) unless `reason` is UPPER_SNAKE
// ([A-Z][A-Z0-9_]*), at most 64 bytes.
absl::Status ValidateLoadFailureReason(absl::string_view reason);

// Appends one event about `version`/`digest` to the dir's report queue (reporting.h's
// NewReport: the options' clock, platform and arch; tier/channel those given, else the
// options'), unless options.queue_reports is off. Returns what went wrong (the caller goes on).
absl::Status AppendTrialEvent(const TrialOptions& options, v1::StatusEvent event,
                              const std::string& tier, const std::string& channel,
                              const std::string& version, const std::string& digest,
                              const std::string& reason);

}  // namespace modeldist::agent

#endif  // MODELDIST_CLIENT_AGENT_TRIAL_H_
