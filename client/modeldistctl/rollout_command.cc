#include <cstdint>
#include <initializer_list>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "client/modeldistctl/command_families.h"
#include "client/modeldistctl/command_util.h"
#include "client/modeldistctl/enums.h"
#include "client/modeldistctl/errors.h"
#include "client/modeldistctl/registry_client.h"
#include "common/names.h"
#include "common/status.h"

namespace modeldist::ctl {
namespace {

constexpr std::initializer_list<absl::string_view> kRolloutFlags = {"tier",
                                                                    "channel",
                                                                    "version",
                                                                    "model",
                                                                    "percent",
                                                                    "max-load-failure",
                                                                    "max-sync-failure",
                                                                    "min-reports",
                                                                    "on-trip",
                                                                    "schedule",
                                                                    "every"};

std::string RolloutLine(const v1::Rollout& r) {
  return absl::StrCat("rollout ", r.id(), " ", r.tier(), "/", r.channel(), ": ", r.from_version(),
                      " -> ", r.to_version(), " at ", FormatBasisPoints(r.basis_points()), " (",
                      RolloutStateName(r.state()), ")");
}

absl::Status PrintRollout(Invocation& inv, const Flags& flags, const v1::Rollout& rollout) {
  if (WantJson(inv, flags)) return PrintJson(inv, rollout);
  inv.out() << RolloutLine(rollout) << "\n";
  return absl::OkStatus();
}

// The policy `rollout start` asks for; the server checks the rules (INVALID_ROLLOUT_POLICY).
absl::StatusOr<v1::RolloutPolicy> PolicyFromFlags(const Flags& flags) {
  v1::RolloutPolicy policy;
  if (!flags.Get("max-load-failure").empty()) {
    MD_ASSIGN_OR_RETURN(int32_t bp,
                        ParsePercent("max-load-failure", flags.Get("max-load-failure")));
    policy.set_max_load_failure_bp(bp);
  }
  if (!flags.Get("max-sync-failure").empty()) {
    MD_ASSIGN_OR_RETURN(int32_t bp,
                        ParsePercent("max-sync-failure", flags.Get("max-sync-failure")));
    policy.set_max_sync_failure_bp(bp);
  }
  if (!flags.Get("min-reports").empty()) {
    int32_t n = 0;
    if (!absl::SimpleAtoi(flags.Get("min-reports"), &n) || n < 0) {
      return UsageError("--min-reports must be a whole number of reports, 0 or more");
    }
    policy.set_min_reports(n);
  }
  const std::string on_trip = flags.Get("on-trip");
  if (on_trip == "abort") {
    policy.set_on_trip(v1::RolloutPolicy::ABORT);
  } else if (on_trip == "pause") {
    policy.set_on_trip(v1::RolloutPolicy::PAUSE);
  } else if (!on_trip.empty()) {
    return UsageError(absl::StrCat("--on-trip must be pause or abort, not \"", on_trip, "\""));
  }
  if (!flags.Get("schedule").empty()) {
    for (absl::string_view step : absl::StrSplit(flags.Get("schedule"), ',')) {
      MD_ASSIGN_OR_RETURN(int32_t bp, ParsePercent("schedule", step));
      policy.add_schedule_bp(bp);
    }
    if (flags.Get("every").empty()) return UsageError("--schedule needs --every, e.g. 6h");
  }
  if (!flags.Get("every").empty()) {
    absl::Duration every;
    if (!absl::ParseDuration(flags.Get("every"), &every) || every <= absl::ZeroDuration()) {
      return UsageError("--every must be a duration, e.g. 6h or 90m");
    }
    if (policy.schedule_bp().empty()) return UsageError("--every needs --schedule");
    policy.mutable_step_interval()->set_seconds(absl::ToInt64Seconds(every));
  }
  return policy;
}

// One table row of counts and rates.
void AddHealth(const v1::RolloutHealth& h, std::vector<std::string>* row) {
  for (int64_t n :
       {h.activated(), h.load_confirmed(), h.load_failed(), h.rolled_back(), h.sync_failed()}) {
    row->push_back(absl::StrCat(n));
  }
  row->push_back(FormatBasisPoints(h.load_failure_bp()));
  row->push_back(FormatBasisPoints(h.sync_failure_bp()));
}

absl::Status RolloutStatus(Invocation& inv, const Flags& flags, const TierChannel& target) {
  MD_ASSIGN_OR_RETURN(RegistryClient * client, inv.Client());
  v1::RolloutRequest request;
  request.set_tier(target.tier);
  request.set_channel(target.channel);
  MD_ASSIGN_OR_RETURN(v1::RolloutStatus status, client->GetRolloutStatus(request));
  if (WantJson(inv, flags)) return PrintJson(inv, status);
  const v1::Rollout& r = status.rollout();
  inv.out() << RolloutLine(r) << "\n";
  if (!r.state_reason().empty()) inv.out() << "  why: " << r.state_reason() << "\n";
  if (r.has_next_step_time())
    inv.out() << "  next step: " << FormatTime(r.next_step_time()) << "\n";
  inv.out() << "\n";
  std::vector<std::vector<std::string>> rows = {{"SHARE", "SINCE", "BY", "ACTIVATED", "CONFIRMED",
                                                 "LOAD-FAILED", "ROLLED-BACK", "SYNC-FAILED",
                                                 "LOAD-FAIL", "SYNC-FAIL"}};
  for (const v1::RolloutStep& step : status.steps()) {
    std::vector<std::string> row = {FormatBasisPoints(step.basis_points()),
                                    FormatTime(step.start_time()), step.actor()};
    AddHealth(step.health(), &row);
    rows.push_back(std::move(row));
  }
  for (const auto& [name, health] :
       {std::pair<std::string, const v1::RolloutHealth*>{"to total", &status.to_version()},
        {"from total", &status.from_version()}}) {
    std::vector<std::string> row = {name, "", ""};
    AddHealth(*health, &row);
    rows.push_back(std::move(row));
  }
  PrintTable(inv.out(), rows);
  if (status.gates().empty()) return absl::OkStatus();
  inv.out() << "\n";
  std::vector<std::vector<std::string>> gates = {
      {"GATE", "LIMIT", "OBSERVED", "REPORTS", "MIN-REPORTS", "VERDICT"}};
  for (const v1::GateState& g : status.gates()) {
    gates.push_back({g.name(), FormatBasisPoints(g.max_bp()), FormatBasisPoints(g.observed_bp()),
                     absl::StrCat(g.reports()), absl::StrCat(g.min_reports()),
                     v1::GateState::Verdict_Name(g.verdict())});
  }
  PrintTable(inv.out(), gates);
  return absl::OkStatus();
}

absl::Status RolloutList(Invocation& inv, const Flags& flags) {
  v1::ListRolloutsRequest request;
  if (!flags.Get("tier").empty()) {
    MD_RETURN_IF_ERROR(AsUsage(ValidateId("--tier", flags.Get("tier"))));
    request.set_tier(flags.Get("tier"));
  }
  if (!flags.Get("channel").empty()) {
    if (request.tier().empty()) return UsageError("rollout list: --channel needs --tier");
    MD_RETURN_IF_ERROR(AsUsage(ValidateId("--channel", flags.Get("channel"))));
    request.set_channel(flags.Get("channel"));
  }
  MD_ASSIGN_OR_RETURN(RegistryClient * client, inv.Client());
  MD_ASSIGN_OR_RETURN(
      v1::ListRolloutsResponse all,
      ListAll(request, [&](const v1::ListRolloutsRequest& r) { return client->ListRollouts(r); }));
  if (WantJson(inv, flags)) return PrintJson(inv, all);
  std::vector<std::vector<std::string>> rows = {
      {"ID", "TIER", "CHANNEL", "FROM", "TO", "PERCENT", "STATE", "UPDATED"}};
  for (const v1::Rollout& r : all.rollouts()) {
    rows.push_back({r.id(), r.tier(), r.channel(),
                    r.from_version().empty() ? "-" : r.from_version(), r.to_version(),
                    FormatBasisPoints(r.basis_points()), RolloutStateName(r.state()),
                    FormatTime(r.update_time())});
  }
  PrintTable(inv.out(), rows);
  return absl::OkStatus();
}

}  // namespace

void RolloutFlags(Flags* f) {
  // No default channel here: `rollout list` without --channel lists every channel of the tier.
  // The other subcommands fill in kDefaultChannel themselves.
  f->Add("tier", "T", "", "the tier, e.g. llama8b (list: optional filter)");
  f->Add("channel", "C", "",
         absl::StrCat("the channel (default: ", kDefaultChannel, "; list: every channel)"));
  f->Add("version", "NAME", "", "start: models/M/versions/V (or the version id, with --model)");
  f->Add("model", "M", "", "start: the model id, when --version is a version id");
  f->Add("percent", "P", "",
         "start, advance: share of devices on the new version, 0 to 100 (e.g. 0.5, 10)");
  f->Add("max-load-failure", "P", "",
         "start: pause (or abort) once more than P % of the new version's load results fail");
  f->Add("max-sync-failure", "P", "",
         "start: likewise for the share of failed syncs towards the new version");
  f->Add("min-reports", "N", "", "start: reports a gate needs before it judges (default 100)");
  f->Add("on-trip", "pause|abort", "", "start: what a tripped gate does (default pause)");
  f->Add("schedule", "P,P,...", "",
         "start: shares to advance to while healthy, e.g. 1%,10%,50%,100% (needs --every)");
  f->Add("every", "DURATION", "", "start: time between scheduled steps, e.g. 6h");
  f->AddBool("json", "print the result as JSON");
}

absl::Status RunRollout(Invocation& inv, const Flags& flags) {
  const auto& args = flags.positional();
  constexpr absl::string_view kSubcommands =
      "start, advance, pause, resume, complete, abort, list, status";
  if (args.empty()) {
    return UsageError(absl::StrCat("rollout needs a subcommand: ", kSubcommands));
  }
  // `rollout status TIER` may name the tier as an argument.
  const size_t allowed = args[0] == "status" && !flags.IsSet("tier") ? 2 : 1;
  if (args.size() > allowed) {
    return UsageError(
        absl::StrCat("rollout ", args[0], ": unexpected argument \"", args[allowed], "\""));
  }
  const std::string& sub = args[0];
  const std::string command = absl::StrCat("rollout ", sub);
  if (sub == "status") {
    MD_RETURN_IF_ERROR(OnlyFlags(flags, command, {"tier", "channel"}, kRolloutFlags));
    TierChannel target{args.size() > 1 ? args[1] : flags.Get("tier"), flags.Get("channel")};
    if (target.tier.empty()) return UsageError("rollout status needs a tier: rollout status T");
    MD_RETURN_IF_ERROR(AsUsage(ValidateId("tier", target.tier)));
    if (target.channel.empty()) target.channel = std::string(kDefaultChannel);
    MD_RETURN_IF_ERROR(AsUsage(ValidateId("--channel", target.channel)));
    return RolloutStatus(inv, flags, target);
  }
  if (sub == "list") {
    MD_RETURN_IF_ERROR(OnlyFlags(flags, command, {"tier", "channel"}, kRolloutFlags));
    return RolloutList(inv, flags);
  }
  if (sub == "start") {
    MD_RETURN_IF_ERROR(
        OnlyFlags(flags, command,
                  {"tier", "channel", "version", "model", "percent", "max-load-failure",
                   "max-sync-failure", "min-reports", "on-trip", "schedule", "every"},
                  kRolloutFlags));
  } else if (sub == "advance") {
    MD_RETURN_IF_ERROR(OnlyFlags(flags, command, {"tier", "channel", "percent"}, kRolloutFlags));
  } else if (sub == "pause" || sub == "resume" || sub == "complete" || sub == "abort") {
    MD_RETURN_IF_ERROR(OnlyFlags(flags, command, {"tier", "channel"}, kRolloutFlags));
  } else {
    return UsageError(
        absl::StrCat("unknown rollout subcommand \"", sub, "\"; one of ", kSubcommands));
  }
  MD_ASSIGN_OR_RETURN(TierChannel target, TierChannelFromFlags(flags));
  if (target.channel.empty()) target.channel = std::string(kDefaultChannel);

  if (sub == "start" || sub == "advance") {
    if (flags.Get("percent").empty()) return UsageError("--percent is required");
    MD_ASSIGN_OR_RETURN(int32_t basis_points, ParsePercent("percent", flags.Get("percent")));
    if (sub == "start") {
      MD_ASSIGN_OR_RETURN(VersionName to, VersionFromFlags(flags));
      MD_ASSIGN_OR_RETURN(v1::RolloutPolicy policy, PolicyFromFlags(flags));
      MD_ASSIGN_OR_RETURN(RegistryClient * client, inv.Client());
      v1::StartRolloutRequest request;
      request.set_tier(target.tier);
      request.set_channel(target.channel);
      request.set_to_version(to.ToString());
      request.set_basis_points(basis_points);
      if (policy.ByteSizeLong() > 0) *request.mutable_policy() = std::move(policy);
      MD_ASSIGN_OR_RETURN(v1::Rollout rollout, client->StartRollout(request));
      return PrintRollout(inv, flags, rollout);
    }
    MD_ASSIGN_OR_RETURN(RegistryClient * client, inv.Client());
    v1::AdvanceRolloutRequest request;
    request.set_tier(target.tier);
    request.set_channel(target.channel);
    request.set_basis_points(basis_points);
    MD_ASSIGN_OR_RETURN(v1::Rollout rollout, client->AdvanceRollout(request));
    return PrintRollout(inv, flags, rollout);
  }

  MD_ASSIGN_OR_RETURN(RegistryClient * client, inv.Client());
  v1::RolloutRequest request;
  request.set_tier(target.tier);
  request.set_channel(target.channel);
  absl::StatusOr<v1::Rollout> rollout;
  if (sub == "pause") {
    rollout = client->PauseRollout(request);
  } else if (sub == "resume") {
    rollout = client->ResumeRollout(request);
  } else if (sub == "complete") {
    rollout = client->CompleteRollout(request);
  } else {
    rollout = client->AbortRollout(request);
  }
  if (!rollout.ok()) return rollout.status();
  return PrintRollout(inv, flags, *rollout);
}

}  // namespace modeldist::ctl
