#include <ostream>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "client/modeldistctl/command_families.h"
#include "client/modeldistctl/command_util.h"
#include "client/modeldistctl/enums.h"
#include "client/modeldistctl/errors.h"
#include "client/modeldistctl/progress.h"
#include "client/modeldistctl/publish.h"
#include "client/modeldistctl/registry_client.h"
#include "common/limits.h"
#include "common/model_check/model_check.h"
#include "common/names.h"
#include "common/status.h"

namespace modeldist::ctl {
namespace {

absl::Status ListModels(Invocation& inv, const Flags& flags, RegistryClient& client) {
  MD_ASSIGN_OR_RETURN(v1::ListModelsResponse all,
                      ListAll(v1::ListModelsRequest(), [&](const v1::ListModelsRequest& r) {
                        return client.ListModels(r);
                      }));
  if (WantJson(inv, flags)) return PrintJson(inv, all);
  std::vector<std::vector<std::string>> rows = {{"MODEL", "CREATED", "DESCRIPTION"}};
  for (const v1::Model& m : all.models()) {
    rows.push_back({m.name(), FormatTime(m.create_time()), m.description()});
  }
  PrintTable(inv.out(), rows);
  return absl::OkStatus();
}

absl::Status ListVersions(Invocation& inv, const Flags& flags, RegistryClient& client,
                          const std::string& model_id) {
  v1::ListVersionsRequest request;
  request.set_parent(ModelName(model_id));
  MD_ASSIGN_OR_RETURN(
      v1::ListVersionsResponse all,
      ListAll(request, [&](const v1::ListVersionsRequest& r) { return client.ListVersions(r); }));
  if (WantJson(inv, flags)) return PrintJson(inv, all);
  // One row per artifact, so that every row stands alone for grep and awk.
  std::vector<std::vector<std::string>> rows = {
      {"VERSION", "STATE", "CREATED", "PLATFORM", "FORMAT", "SIZE", "UPLOADED", "DIGEST"}};
  for (const v1::Version& v : all.versions()) {
    std::vector<std::string> head = {v.name(), StateName(v.state()), FormatTime(v.create_time())};
    if (v.artifacts().empty()) {
      head.insert(head.end(), {"-", "-", "-", "-", "-"});
      rows.push_back(head);
    }
    for (const v1::Artifact& a : v.artifacts()) {
      std::vector<std::string> row = head;
      row.insert(row.end(), {PlatformArch(a), FormatName(a.format()), FormatBytes(a.size_bytes()),
                             a.uploaded() ? "yes" : "no", a.digest()});
      rows.push_back(std::move(row));
    }
  }
  PrintTable(inv.out(), rows);
  return absl::OkStatus();
}

absl::Status ListTiers(Invocation& inv, const Flags& flags, RegistryClient& client) {
  MD_ASSIGN_OR_RETURN(v1::ListTiersResponse all,
                      ListAll(v1::ListTiersRequest(),
                              [&](const v1::ListTiersRequest& r) { return client.ListTiers(r); }));
  if (WantJson(inv, flags)) return PrintJson(inv, all);
  std::vector<std::vector<std::string>> rows = {
      {"TIER", "CHANNEL", "SEQUENCE", "UPDATED", "VERSION"}};
  for (const v1::TierBinding& t : all.tiers()) {
    rows.push_back({t.tier(), t.channel(), absl::StrCat(t.sequence()), FormatTime(t.update_time()),
                    t.version().empty() ? "(none: every bound version was yanked)" : t.version()});
  }
  PrintTable(inv.out(), rows);
  return absl::OkStatus();
}

// "CONFIRMED", "COPYING 1.2 GiB of 4.0 GiB", "FAILING (2 attempts, next at ...): why".
std::string DescribeReplica(const v1::Replica& r, int64_t size) {
  std::string text = v1::Replica::State_Name(r.state());
  if (r.state() == v1::Replica::COPYING) {
    absl::StrAppend(&text, " ", FormatBytes(r.bytes_done()), " of ", FormatBytes(size));
  }
  if (r.state() == v1::Replica::FAILING) {
    absl::StrAppend(&text, " (", r.attempts(), r.attempts() == 1 ? " attempt" : " attempts",
                    ", next at ", FormatTime(r.next_attempt_time()), "): ", r.last_error());
  }
  return text;
}

void PrintVersion(std::ostream& out, const v1::Version& v) {
  out << "name:       " << v.name() << "\n"
      << "state:      " << StateName(v.state()) << "\n"
      << "created:    " << FormatTime(v.create_time()) << "\n"
      << "published:  " << FormatTime(v.publish_time()) << "\n";
  if (v.state() == v1::Version::YANKED) {
    out << "yanked:     " << FormatTime(v.yank_time()) << "\n"
        << "reason:     " << (v.yank_reason().empty() ? "-" : v.yank_reason()) << "\n";
  }
  if (!v.replicate_to().empty()) {
    out << "replicate:  " << absl::StrJoin(v.replicate_to(), ", ") << "\n";
  }
  out << "artifacts:  " << v.artifacts_size() << "\n";
  for (const v1::Artifact& a : v.artifacts()) {
    out << "  - " << PlatformArch(a) << " " << FormatName(a.format()) << "\n"
        << "    digest:   " << a.digest() << "\n"
        << "    size:     " << a.size_bytes() << " bytes (" << FormatBytes(a.size_bytes()) << ")\n"
        << "    uploaded: " << (a.uploaded() ? "yes" : "no") << "\n";
    if (a.constraints().ByteSizeLong() > 0 || a.unpacked_size_bytes() > 0) {
      out << "    needs:    " << DescribeRequirements(a) << "\n";
    }
    if (a.has_model_info()) {
      out << "    model:\n";
      for (absl::string_view line : absl::StrSplit(model_check::DescribeModelInfo(a.model_info()),
                                                   '\n', absl::SkipEmpty())) {
        out << "      " << absl::StripLeadingAsciiWhitespace(line) << "\n";
      }
    }
    if (!a.replicas().empty()) out << "    replicas:\n";
    for (const v1::Replica& r : a.replicas()) {
      out << "      " << r.origin() << ": " << DescribeReplica(r, a.size_bytes()) << "\n";
    }
  }
}

}  // namespace

// --- list ------------------------------------------------------------------------------------

void ListFlags(Flags* f) {
  f->AddBool("tiers", "list tier bindings instead of models");
  f->AddBool("json", "print the result as JSON");
}

absl::Status RunList(Invocation& inv, const Flags& flags) {
  const auto& args = flags.positional();
  if (args.size() > 1) return UsageError("list takes at most one model");
  if (flags.GetBool("tiers") && !args.empty()) {
    return UsageError("list --tiers takes no model");
  }
  std::string model_id;
  if (!args.empty()) {
    MD_ASSIGN_OR_RETURN(model_id, ModelFromArg(args[0]));
  }
  MD_ASSIGN_OR_RETURN(RegistryClient * client, inv.Client());
  if (flags.GetBool("tiers")) return ListTiers(inv, flags, *client);
  if (!model_id.empty()) return ListVersions(inv, flags, *client, model_id);
  return ListModels(inv, flags, *client);
}

// --- show ------------------------------------------------------------------------------------

void ShowFlags(Flags* f) { f->AddBool("json", "print the version as JSON"); }

absl::Status RunShow(Invocation& inv, const Flags& flags) {
  MD_ASSIGN_OR_RETURN(VersionName name, VersionFromArgs(flags.positional(), "version"));
  MD_ASSIGN_OR_RETURN(RegistryClient * client, inv.Client());
  v1::GetVersionRequest request;
  request.set_name(name.ToString());
  MD_ASSIGN_OR_RETURN(v1::Version version, client->GetVersion(request));
  if (WantJson(inv, flags)) return PrintJson(inv, version);
  PrintVersion(inv.out(), version);
  return absl::OkStatus();
}

// --- set-tier --------------------------------------------------------------------------------

void SetTierFlags(Flags* f) {
  f->Add("tier", "T", "", "the tier, e.g. llama8b");
  f->Add("channel", "C", std::string(kDefaultChannel), "the channel");
  f->Add("version", "NAME", "", "models/M/versions/V (or the version id, with --model)");
  f->Add("model", "M", "", "the model id, when --version is a version id");
  f->AddBool("json", "print the binding as JSON");
}

absl::Status RunSetTier(Invocation& inv, const Flags& flags) {
  MD_RETURN_IF_ERROR(NoPositional(flags, "set-tier"));
  if (flags.Get("tier").empty()) return UsageError("--tier is required");
  if (flags.Get("version").empty()) return UsageError("--version is required");
  MD_RETURN_IF_ERROR(AsUsage(ValidateId("--tier", flags.Get("tier"))));
  MD_RETURN_IF_ERROR(AsUsage(ValidateId("--channel", flags.Get("channel"))));
  std::vector<std::string> version_args = {flags.Get("version")};
  if (flags.IsSet("model")) version_args.insert(version_args.begin(), flags.Get("model"));
  MD_ASSIGN_OR_RETURN(VersionName name, VersionFromArgs(version_args, "--version"));
  MD_ASSIGN_OR_RETURN(RegistryClient * client, inv.Client());
  v1::SetTierRequest request;
  request.set_tier(flags.Get("tier"));
  request.set_channel(flags.Get("channel"));
  request.set_version(name.ToString());
  MD_ASSIGN_OR_RETURN(v1::TierBinding binding, client->SetTier(request));
  if (WantJson(inv, flags)) return PrintJson(inv, binding);
  inv.out() << "tier " << binding.tier() << "/" << binding.channel() << " -> " << binding.version()
            << " sequence " << binding.sequence() << "\n";
  return absl::OkStatus();
}

// --- yank ------------------------------------------------------------------------------------

void YankFlags(Flags* f) {
  f->Add("reason", "TEXT", "", absl::StrCat("why, for people (at most ", kMaxTextBytes, " bytes)"));
  f->AddBool("json", "print the version as JSON");
}

absl::Status RunYank(Invocation& inv, const Flags& flags) {
  MD_ASSIGN_OR_RETURN(VersionName name, VersionFromArgs(flags.positional(), "version"));
  if (flags.Get("reason").size() > kMaxTextBytes) {
    return UsageError(absl::StrCat("--reason is longer than ", kMaxTextBytes, " bytes"));
  }
  MD_ASSIGN_OR_RETURN(RegistryClient * client, inv.Client());
  v1::YankVersionRequest request;
  request.set_name(name.ToString());
  request.set_reason(flags.Get("reason"));
  MD_ASSIGN_OR_RETURN(v1::Version version, client->YankVersion(request));
  if (WantJson(inv, flags)) return PrintJson(inv, version);
  inv.out() << "yanked " << version.name() << "\n";
  return absl::OkStatus();
}

}  // namespace modeldist::ctl
