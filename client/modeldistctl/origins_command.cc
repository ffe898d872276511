#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "client/modeldistctl/command_families.h"
#include "client/modeldistctl/command_util.h"
#include "client/modeldistctl/errors.h"
#include "client/modeldistctl/registry_client.h"
#include "common/status.h"

namespace modeldist::ctl {
namespace {

// "replicate, devices via CDN (signed)": what the server does with an origin.
std::string Uses(const v1::OriginSummary& o) {
  std::vector<std::string> uses;
  if (o.replicate()) uses.push_back("replicate");
  if (!o.hide_from_devices()) {
    uses.push_back(o.cdn_base_url().empty() ? "devices"
                                            : absl::StrCat("devices via ", o.cdn_base_url(),
                                                           o.cdn_signed() ? " (signed)" : ""));
  }
  return uses.empty() ? "-" : absl::StrJoin(uses, ", ");
}

absl::Status List(Invocation& inv, const Flags& flags) {
  MD_ASSIGN_OR_RETURN(RegistryClient * client, inv.Client());
  MD_ASSIGN_OR_RETURN(v1::ListOriginsResponse response,
                      client->ListOrigins(v1::ListOriginsRequest()));
  if (WantJson(inv, flags)) return PrintJson(inv, response);
  if (response.origins().empty()) {
    inv.out() << "no origins (start modeldist-server with --origins FILE; docs/origins.md)\n";
    return absl::OkStatus();
  }
  std::vector<std::vector<std::string>> rows = {{"NAME", "KIND", "LOCATION", "PREFIX", "USE"}};
  for (const v1::OriginSummary& o : response.origins()) {
    rows.push_back(
        {o.name(), o.kind(), o.location(), o.key_prefix().empty() ? "-" : o.key_prefix(), Uses(o)});
  }
  PrintTable(inv.out(), rows);
  return absl::OkStatus();
}

absl::Status Check(Invocation& inv, const Flags& flags, const std::string& name) {
  MD_ASSIGN_OR_RETURN(RegistryClient * client, inv.Client());
  v1::CheckOriginRequest request;
  request.set_name(name);
  MD_ASSIGN_OR_RETURN(v1::CheckOriginResponse response, client->CheckOrigin(request));
  if (WantJson(inv, flags)) {
    MD_RETURN_IF_ERROR(PrintJson(inv, response));
  } else {
    for (const v1::OriginCheckStep& step : response.steps()) {
      inv.out() << absl::StrFormat("%-6s %-6s %8.1f ms  %s", step.step(),
                                   step.error_code().empty() ? "ok" : "FAILED",
                                   step.duration_micros() / 1000.0, step.object_key());
      if (!step.error_code().empty()) {
        inv.out() << "\n       " << step.error_code() << ": " << OneLine(step.error_message());
        if (!step.error_reason().empty()) inv.out() << " [" << step.error_reason() << "]";
      }
      inv.out() << "\n";
    }
  }
  if (!response.ok()) {
    return DamageFound(absl::StrCat("origin ", name, " failed its check; see the steps above"));
  }
  if (!WantJson(inv, flags)) inv.out() << "origin " << name << ": ok\n";
  return absl::OkStatus();
}

}  // namespace

void OriginsFlags(Flags* f) { f->AddBool("json", "print the origins or the check as JSON"); }

absl::Status RunOrigins(Invocation& inv, const Flags& flags) {
  const auto& args = flags.positional();
  if (args.empty()) return UsageError("origins needs a subcommand: list, check NAME");
  if (args[0] == "list") {
    if (args.size() > 1) {
      return UsageError(absl::StrCat("origins list: unexpected argument \"", args[1], "\""));
    }
    return List(inv, flags);
  }
  if (args[0] == "check") {
    if (args.size() != 2) return UsageError("origins check takes one origin name");
    return Check(inv, flags, args[1]);
  }
  return UsageError(
      absl::StrCat("unknown origins subcommand \"", args[0], "\"; one of list, check NAME"));
}

}  // namespace modeldist::ctl
