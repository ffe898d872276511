#include "client/agent/trial_cli.h"

#include <iostream>
#include <optional>
#include <string>

#include "absl/strings/str_format.h"
#include "client/agent/cli_flags.h"
#include "client/agent/trial.h"
#include "common/flags.h"

namespace modeldist::agent {

int RunTrialCommand(const std::string& command, int argc, char** argv,
                    int (*fail)(const absl::Status& status, bool json)) {
  Flags flags;
  flags.Add("tier", "TIER", "", "the tier, for reports (default: the trial's)");
  flags.Add("channel", "CHANNEL", "", "the channel, for reports (default: the trial's)");
  flags.Add("platform", "P", "",
            "macos|ios|linux|windows|android, for reports (default: detected)");
  flags.Add("arch", "A", "", "arm64|x86_64, for reports (default: detected)");
  if (command == "confirm") {
    flags.Add("failed", "REASON", "",
              "the app could NOT load the model: UPPER_SNAKE reason (<= 64 bytes), e.g. "
              "OUT_OF_MEMORY; a version on trial is rolled back");
    flags.Add("path", "PATH", "",
              "the path the app loaded (as `current` printed it): refused when current has "
              "moved on since");
  }
  flags.AddBool("no-reports", "queue no status report for this");
  AddCommonFlags(flags);
  const std::string usage =
      command == "current"
          ? "usage: modeldist-agent current --dir DIR [--json]\n\nPrints the model to load; "
            "call once per app launch: it counts a launch of a version on trial, and first "
            "rolls back one past its trial limits (sync --trial-launches/--trial-timeout).\n\n"
          : "usage: modeldist-agent confirm --dir DIR [--failed REASON] [--path PATH] "
            "[--json]\n\nTells the agent whether the app loaded the current model: without "
            "--failed its trial ends; with it a version on trial is rolled back.\n\n";
  if (std::optional<int> code = ParseCommandFlags(command, usage, flags, argc, argv)) {
    return *code;
  }
  const bool json = flags.GetBool("json");
  TrialOptions o;
  o.dir = flags.Get("dir");
  o.tier = flags.Get("tier");
  o.channel = flags.Get("channel");
  o.queue_reports = !flags.GetBool("no-reports");
  if (o.dir.empty() || !flags.positional().empty()) {
    std::cerr << "modeldist-agent " << command << ": " << usage;
    return 2;
  }
  if (!ParseTargetFlags(command, flags, &o.platform, &o.arch)) return 2;
  absl::StatusOr<TrialState> state;
  if (command == "current") {
    state = LaunchCurrent(o);
  } else if (!flags.Get("failed").empty()) {
    state = ReportLoadFailed(o, flags.Get("failed"), flags.Get("path"));
  } else {
    state = ConfirmLoaded(o, flags.Get("path"));
  }
  if (!state.ok()) return fail(state.status(), json);
  if (!state->report_error.empty()) {
    std::cerr << "modeldist-agent: status report not queued: " << state->report_error << "\n";
  }
  const std::string path = state->current ? state->current->path : "";
  const std::string version = state->current ? state->current->version : "";
  const std::string rolled_back = state->rolled_back ? state->rolled_back->version : "";
  if (json) {
    std::cout << absl::StrFormat(
        "{\"ok\":true,\"path\":\"%s\",\"version\":\"%s\",\"onTrial\":%s,\"launches\":%d,"
        "\"confirmed\":%s,\"rolledBack\":\"%s\",\"rollbackReason\":\"%s\"}\n",
        path, version, state->on_trial ? "true" : "false",
        state->on_trial ? state->record.launches : 0, state->confirmed ? "true" : "false",
        rolled_back, state->rollback_reason);
    return 0;
  }
  if (!rolled_back.empty()) {
    std::cerr << "modeldist-agent: rolled back " << rolled_back << " (" << state->rollback_reason
              << ")\n";
  }
  if (command == "current") {
    std::cout << path << "\n";
  } else if (flags.Get("failed").empty()) {
    std::cout << (state->confirmed ? "confirmed " : "not on trial: ") << version << "\n";
  } else {
    std::cout << "current: " << (version.empty() ? "none" : version) << "\n";
  }
  return 0;
}

}  // namespace modeldist::agent
