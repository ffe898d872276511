// `fleet`: what the fleet reported (RegistryService.GetFleetSummary; docs/fleet.md).
#include <cstdint>
#include <string>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "absl/time/time.h"
#include "client/modeldistctl/command_families.h"
#include "client/modeldistctl/command_util.h"
#include "client/modeldistctl/enums.h"
#include "client/modeldistctl/errors.h"
#include "client/modeldistctl/registry_client.h"
#include "common/names.h"
#include "common/status.h"
#include "modeldist/v1/fleet.pb.h"

namespace modeldist::ctl {
namespace {

// "24h", "90m", "7d" (whole days, which absl::ParseDuration does not take).
absl::StatusOr<absl::Duration> ParseWindow(absl::string_view text) {
  absl::Duration window;
  int64_t days = 0;
  absl::string_view number = text;
  if (absl::ConsumeSuffix(&number, "d") && absl::SimpleAtoi(number, &days) && days > 0) {
    return absl::Hours(24 * days);
  }
  if (absl::ParseDuration(text, &window) && window > absl::ZeroDuration()) return window;
  return UsageError(
      absl::StrCat("fleet: --window ", text, " is not a duration such as 24h, 90m or 7d"));
}

// "load_failed" for STATUS_EVENT_LOAD_FAILED.
std::string EventName(v1::StatusEvent event) {
  const std::string name = v1::StatusEvent_Name(event);
  if (name.empty()) return absl::StrCat(static_cast<int>(event));
  return absl::AsciiStrToLower(absl::StripPrefix(name, "STATUS_EVENT_"));
}

std::string OrDash(const std::string& text) { return text.empty() ? "-" : text; }

std::string PlatformArchOf(v1::Platform platform, v1::Arch arch) {
  return absl::StrCat(PlatformName(platform), "/", ArchName(arch));
}

void PrintSection(Invocation& inv, absl::string_view title,
                  const std::vector<std::vector<std::string>>& rows) {
  inv.out() << "\n" << title << "\n";
  if (rows.size() == 1) {
    inv.out() << "(none)\n";
    return;
  }
  PrintTable(inv.out(), rows);
}

}  // namespace

void FleetFlags(Flags* f) {
  f->Add("tier", "T", "", "only this tier");
  f->Add("channel", "C", "", "only this channel (needs --tier)");
  f->Add("window", "D", "24h", "count reports received within D (e.g. 24h, 90m, 7d)");
  f->AddBool("json", "print the summary as JSON");
}

absl::Status RunFleet(Invocation& inv, const Flags& flags) {
  MD_RETURN_IF_ERROR(NoPositional(flags, "fleet"));
  v1::GetFleetSummaryRequest request;
  if (!flags.Get("tier").empty()) {
    MD_RETURN_IF_ERROR(AsUsage(ValidateId("--tier", flags.Get("tier"))));
    request.set_tier(flags.Get("tier"));
  }
  if (!flags.Get("channel").empty()) {
    if (request.tier().empty()) return UsageError("fleet: --channel needs --tier");
    MD_RETURN_IF_ERROR(AsUsage(ValidateId("--channel", flags.Get("channel"))));
    request.set_channel(flags.Get("channel"));
  }
  MD_ASSIGN_OR_RETURN(const absl::Duration window, ParseWindow(flags.Get("window")));
  request.mutable_window()->set_seconds(absl::ToInt64Seconds(window));
  MD_ASSIGN_OR_RETURN(RegistryClient * client, inv.Client());
  MD_ASSIGN_OR_RETURN(v1::FleetSummary summary, client->GetFleetSummary(request));
  if (WantJson(inv, flags)) return PrintJson(inv, summary);

  inv.out() << "Reports since " << FormatTime(summary.since()) << " ("
            << absl::FormatDuration(window) << ")\n";
  std::vector<std::vector<std::string>> versions = {
      {"TIER", "CHANNEL", "VERSION", "PLATFORM", "DEVICES", "STATE"}};
  for (const v1::FieldVersion& v : summary.versions()) {
    versions.push_back({v.tier(), v.channel(), v.version(), PlatformArchOf(v.platform(), v.arch()),
                        absl::StrCat(v.devices()), v.rolled_back() ? "rolled back" : "running"});
  }
  PrintSection(inv, "Versions in the field:", versions);
  std::vector<std::vector<std::string>> events = {
      {"TIER", "CHANNEL", "VERSION", "EVENT", "REPORTS"}};
  for (const v1::EventCount& e : summary.events()) {
    events.push_back({e.tier(), e.channel(), OrDash(e.version()), EventName(e.event()),
                      absl::StrCat(e.count())});
  }
  PrintSection(inv, "Events:", events);
  std::vector<std::vector<std::string>> reasons = {
      {"VERSION", "EVENT", "REASON", "PLATFORM", "REPORTS"}};
  for (const v1::ReasonCount& r : summary.reasons()) {
    reasons.push_back({OrDash(r.version()), EventName(r.event()), r.reason(),
                       PlatformArchOf(r.platform(), r.arch()), absl::StrCat(r.count())});
  }
  PrintSection(inv, "Failure reasons, most frequent first:", reasons);
  std::vector<std::vector<std::string>> recent = {
      {"TIME", "TIER", "VERSION", "EVENT", "REASON", "PLATFORM", "APP"}};
  for (const v1::RecentFailure& f : summary.recent_failures()) {
    recent.push_back({FormatTime(f.time()), f.tier(), OrDash(f.version()), EventName(f.event()),
                      OrDash(f.reason()), PlatformArchOf(f.platform(), f.arch()),
                      OneLine(OrDash(f.app_version()))});
  }
  PrintSection(inv, "Recent failures, newest first:", recent);
  return absl::OkStatus();
}

}  // namespace modeldist::ctl
