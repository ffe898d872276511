#include <cstdint>
#include <initializer_list>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "client/modeldistctl/command_families.h"
#include "client/modeldistctl/command_util.h"
#include "client/modeldistctl/enums.h"
#include "client/modeldistctl/errors.h"
#include "client/modeldistctl/registry_client.h"
#include "common/names.h"
#include "common/status.h"

namespace modeldist::ctl {
namespace {

constexpr std::initializer_list<absl::string_view> kRolloutFlags = {"tier", "channel", "version",
                                                                    "model", "percent"};

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
  f->AddBool("json", "print the result as JSON");
}

absl::Status RunRollout(Invocation& inv, const Flags& flags) {
  const auto& args = flags.positional();
  constexpr absl::string_view kSubcommands = "start, advance, pause, resume, complete, abort, list";
  if (args.empty()) {
    return UsageError(absl::StrCat("rollout needs a subcommand: ", kSubcommands));
  }
  if (args.size() > 1) {
    return UsageError(absl::StrCat("rollout ", args[0], ": unexpected argument \"", args[1], "\""));
  }
  const std::string& sub = args[0];
  const std::string command = absl::StrCat("rollout ", sub);
  if (sub == "list") {
    MD_RETURN_IF_ERROR(OnlyFlags(flags, command, {"tier", "channel"}, kRolloutFlags));
    return RolloutList(inv, flags);
  }
  if (sub == "start") {
    MD_RETURN_IF_ERROR(OnlyFlags(flags, command, {"tier", "channel", "version", "model", "percent"},
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
      MD_ASSIGN_OR_RETURN(RegistryClient * client, inv.Client());
      v1::StartRolloutRequest request;
      request.set_tier(target.tier);
      request.set_channel(target.channel);
      request.set_to_version(to.ToString());
      request.set_basis_points(basis_points);
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
