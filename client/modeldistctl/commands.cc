#include "client/modeldistctl/commands.h"

#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <initializer_list>
#include <iostream>
#include <limits>
#include <memory>
#include <set>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/cord.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "client/modeldistctl/enums.h"
#include "client/modeldistctl/errors.h"
#include "client/modeldistctl/progress.h"
#include "client/modeldistctl/publish.h"
#include "client/modeldistctl/registry_client.h"
#include "common/ed25519.h"
#include "common/file_util.h"
#include "common/flags.h"
#include "common/names.h"
#include "common/status.h"
#include "common/trust.h"
#include "google/protobuf/timestamp.pb.h"
#include "google/protobuf/util/json_util.h"
#include "modeldist/v1/manifest.pb.h"

namespace modeldist::ctl {
namespace {

using GetEnv = std::function<std::optional<std::string>(const std::string&)>;

// Asked of the server per List* call; the loop follows next_page_token to the end anyway.
constexpr int kPageSize = 500;

// What a command needs while it runs.
class Invocation {
 public:
  Invocation(GlobalOptions global, const Console& console)
      : global_(std::move(global)), console_(console) {}

  const GlobalOptions& global() const { return global_; }
  std::ostream& out() const { return *console_.out; }
  std::ostream& err() const { return *console_.err; }
  bool err_is_tty() const { return console_.err_is_tty; }

  // The channel to the server, created on first use. Commands that need no token (keys root)
  // use it directly.
  absl::StatusOr<std::shared_ptr<grpc::Channel>> Channel() {
    if (!channel_) {
      MD_ASSIGN_OR_RETURN(channel_, CreateRegistryChannel(global_.server, global_.tls_ca));
    }
    return channel_;
  }

  // The registry client, created on first use: reading the token and building the channel
  // are the first things that can fail for a reason outside the command's own arguments.
  absl::StatusOr<RegistryClient*> Client() {
    if (!client_) {
      MD_ASSIGN_OR_RETURN(std::string token, LoadAdminToken(global_.token_file, console_.getenv));
      MD_ASSIGN_OR_RETURN(std::shared_ptr<grpc::Channel> channel, Channel());
      std::string actor = global_.actor.empty() ? DefaultActor(console_.getenv) : global_.actor;
      client_ =
          std::make_unique<RegistryClient>(std::move(channel), std::move(token), std::move(actor));
    }
    return client_.get();
  }

 private:
  GlobalOptions global_;
  const Console& console_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<RegistryClient> client_;
};

struct Command {
  const char* name;
  const char* usage;    // After "modeldistctl [global flags] ".
  const char* summary;  // One line, for the command list.
  const char* example;
  void (*add_flags)(Flags* flags);
  absl::Status (*run)(Invocation& inv, const Flags& flags);
};

// --- Output helpers ---------------------------------------------------------------------------

std::string FormatTime(const google::protobuf::Timestamp& t) {
  if (t.seconds() == 0 && t.nanos() == 0) return "-";
  return absl::FormatTime("%Y-%m-%dT%H:%M:%SZ", absl::FromUnixSeconds(t.seconds()),
                          absl::UTCTimeZone());
}

absl::StatusOr<std::string> ToJson(const google::protobuf::Message& message) {
  google::protobuf::util::JsonPrintOptions options;
  // Scripts should see `uploaded: false` and `state`, not infer them from absence.
  options.always_print_primitive_fields = true;
  std::string json;
  auto status = google::protobuf::util::MessageToJsonString(message, &json, options);
  if (!status.ok()) {
    return absl::InternalError(absl::StrCat("JSON encoding failed: ", status.ToString()));
  }
  return json;
}

absl::Status PrintJson(Invocation& inv, const google::protobuf::Message& message) {
  MD_ASSIGN_OR_RETURN(std::string json, ToJson(message));
  inv.out() << json << "\n";
  return absl::OkStatus();
}

bool WantJson(const Invocation& inv, const Flags& flags) {
  return inv.global().json || flags.GetBool("json");
}

// Left-aligned columns; the last column is not padded.
void PrintTable(std::ostream& out, const std::vector<std::vector<std::string>>& rows) {
  std::vector<size_t> widths;
  for (const auto& row : rows) {
    if (widths.size() < row.size()) widths.resize(row.size(), 0);
    for (size_t i = 0; i < row.size(); ++i) widths[i] = std::max(widths[i], row[i].size());
  }
  for (const auto& row : rows) {
    std::string line;
    for (size_t i = 0; i < row.size(); ++i) {
      if (i + 1 == row.size()) {
        absl::StrAppend(&line, row[i]);
      } else {
        absl::StrAppend(&line, absl::StrFormat("%-*s  ", static_cast<int>(widths[i]), row[i]));
      }
    }
    out << line << "\n";
  }
}

std::string PlatformArch(const v1::Artifact& a) {
  return absl::StrCat(PlatformName(a.platform()), "/", ArchName(a.arch()));
}

// --- Argument helpers ------------------------------------------------------------------------

absl::Status AsUsage(const absl::Status& status) {
  return status.ok() ? status : UsageError(status.message());
}

// `models/M/versions/V`, or the two arguments `M V`.
absl::StatusOr<VersionName> VersionFromArgs(const std::vector<std::string>& args,
                                            absl::string_view what) {
  if (args.size() == 1) {
    absl::StatusOr<VersionName> name = ParseVersionName(what, args[0]);
    if (!name.ok()) return AsUsage(name.status());
    return name;
  }
  if (args.size() == 2) {
    MD_RETURN_IF_ERROR(AsUsage(ValidateId("model", args[0])));
    MD_RETURN_IF_ERROR(AsUsage(ValidateId("version", args[1])));
    return VersionName{args[0], args[1]};
  }
  return UsageError(absl::StrCat("expected ", what, " as models/M/versions/V or as M V"));
}

// `models/M` or `M`.
absl::StatusOr<std::string> ModelFromArg(const std::string& arg) {
  absl::StatusOr<std::string> id = absl::StartsWith(arg, "models/")
                                       ? ParseModelName("model", arg)
                                       : absl::StatusOr<std::string>(arg);
  if (!id.ok()) return AsUsage(id.status());
  MD_RETURN_IF_ERROR(AsUsage(ValidateId("model", *id)));
  return id;
}

absl::Status NoPositional(const Flags& flags, absl::string_view command) {
  if (flags.positional().empty()) return absl::OkStatus();
  return UsageError(absl::StrCat(command, ": unexpected argument \"", flags.positional()[0], "\""));
}

// Commands with subcommands declare the union of their flags; a flag the chosen subcommand
// does not read is refused rather than ignored, since the user meant something by it.
absl::Status OnlyFlags(const Flags& flags, absl::string_view command,
                       std::initializer_list<absl::string_view> allowed,
                       std::initializer_list<absl::string_view> all) {
  for (absl::string_view name : all) {
    if (!flags.IsSet(std::string(name))) continue;
    if (std::find(allowed.begin(), allowed.end(), name) != allowed.end()) continue;
    return UsageError(absl::StrCat(command, " does not take --", name));
  }
  return absl::OkStatus();
}

// A whole-number flag from `min` to `max`, or `fallback` when the flag was not given.
absl::StatusOr<int64_t> IntFlag(const Flags& flags, const std::string& name, int64_t min,
                                int64_t max, int64_t fallback) {
  if (!flags.IsSet(name)) return fallback;
  int64_t value = 0;
  if (!absl::SimpleAtoi(flags.Get(name), &value) || value < min || value > max) {
    return UsageError(absl::StrCat("--", name, ": \"", flags.Get(name),
                                   "\" is not a whole number from ", min, " to ", max));
  }
  return value;
}

// The tier and channel a rollout or pin command acts on.
struct TierChannel {
  std::string tier;
  std::string channel;

  std::string ToString() const { return absl::StrCat(tier, "/", channel); }
};

void AddTierFlags(Flags* f, const std::string& default_channel = std::string(kDefaultChannel)) {
  f->Add("tier", "T", "", "the tier, e.g. llama8b");
  f->Add("channel", "C", default_channel, "the channel");
}

// --tier is required; --channel as given (its default is the command's).
absl::StatusOr<TierChannel> TierChannelFromFlags(const Flags& flags) {
  if (flags.Get("tier").empty()) return UsageError("--tier is required");
  MD_RETURN_IF_ERROR(AsUsage(ValidateId("--tier", flags.Get("tier"))));
  if (!flags.Get("channel").empty()) {
    MD_RETURN_IF_ERROR(AsUsage(ValidateId("--channel", flags.Get("channel"))));
  }
  return TierChannel{flags.Get("tier"), flags.Get("channel")};
}

// --version as models/M/versions/V, or as the version id with --model M.
absl::StatusOr<VersionName> VersionFromFlags(const Flags& flags) {
  if (flags.Get("version").empty()) return UsageError("--version is required");
  std::vector<std::string> version_args = {flags.Get("version")};
  if (flags.IsSet("model")) version_args.insert(version_args.begin(), flags.Get("model"));
  return VersionFromArgs(version_args, "--version");
}

// --- publish ---------------------------------------------------------------------------------

void PublishFlags(Flags* f) {
  f->Add("model", "M", "", "model id, e.g. llama-3.1-8b-instruct (created if missing)");
  f->Add("version", "V", "", "version id, e.g. 2026.11.0");
  f->Add("platform", "P", "", "macos|ios|linux|windows|android, for the single-FILE form");
  f->Add("arch", "A", "", "arm64|x86_64|any, with --platform");
  f->Add("format", "F", "", "coreml-zip|gguf|safetensors|onnx|tflite, with --platform");
  f->Add("tier", "T", "", "the tier to bind, e.g. llama8b");
  f->Add("channel", "C", std::string(kDefaultChannel), "the channel to bind");
  f->Add("description", "TEXT", "", "model description, used when the model is created");
  // One set of constraints per command: every artifact gets the same (see publish.h).
  f->Add("min-os", "VERSION", "",
         "devices need at least this OS version, e.g. 14.0 (every artifact)");
  f->Add("min-ram", "BYTES", "", "devices need at least this much RAM, e.g. 8GiB (every artifact)");
  f->Add("requires", "LIST", "",
         "devices need all of these, from ane,metal,cuda,vulkan (every artifact)");
  f->Add("unpacked-size", "BYTES", "",
         "bytes on disk after activation, e.g. 2GiB (every artifact)");
  f->AddBool("json", "print the result as JSON");
}

// A JSON string literal. File names are the only free text publish prints in JSON.
std::string JsonQuote(absl::string_view text) {
  std::string out = "\"";
  for (char c : text) {
    if (c == '"' || c == '\\') {
      absl::StrAppend(&out, "\\", std::string(1, c));
    } else if (static_cast<unsigned char>(c) < 0x20) {
      absl::StrAppend(&out, absl::StrFormat("\\u%04x", static_cast<unsigned char>(c)));
    } else {
      out.push_back(c);
    }
  }
  out.push_back('"');
  return out;
}

std::string UploadJson(const UploadStats& upload) {
  return absl::StrFormat(
      "{\"resumedFrom\":%d,\"bytesSent\":%d,\"alreadyComplete\":%s,\"bytesRead\":%d}",
      upload.resumed_from, upload.bytes_sent, upload.already_complete ? "true" : "false",
      upload.bytes_read);
}

// How the bytes of one artifact got to the server, for the summary.
std::string HowUploaded(const PublishResult& result, const PublishedArtifact& a) {
  if (a.restored) return absl::StrCat("restored bytes of ", a.digest);
  if (result.was_published) return "already published";
  if (a.upload.already_complete) return "bytes already on the server";
  if (a.upload.resumed_from > 0) {
    return absl::StrCat("sent ", a.upload.bytes_sent, " bytes, resumed at ", a.upload.resumed_from);
  }
  return absl::StrCat("sent ", a.upload.bytes_sent, " bytes");
}

absl::Status PrintPublishJson(Invocation& inv, const PublishResult& result) {
  MD_ASSIGN_OR_RETURN(std::string version, ToJson(result.version));
  MD_ASSIGN_OR_RETURN(std::string binding, ToJson(result.binding));
  std::vector<std::string> artifacts;
  for (const PublishedArtifact& a : result.artifacts) {
    artifacts.push_back(absl::StrFormat(
        "{\"platform\":\"%s\",\"arch\":\"%s\",\"format\":\"%s\",\"file\":%s,\"digest\":\"%s\","
        "\"sizeBytes\":%d,\"upload\":%s,\"restored\":%s}",
        PlatformName(a.spec.platform), ArchName(a.spec.arch), FormatName(a.spec.format),
        JsonQuote(a.spec.file), a.digest, a.file.size, UploadJson(a.upload),
        a.restored ? "true" : "false"));
  }
  std::string legacy;
  if (result.artifacts.size() == 1) {
    // The fields of the single-file output from before `artifacts`, kept for its scripts.
    const PublishedArtifact& a = result.artifacts[0];
    const UploadStats& u = a.upload;
    legacy = absl::StrFormat(
        ",\"digest\":\"%s\",\"sizeBytes\":%d,\"upload\":{\"resumedFrom\":%d,\"bytesSent\":%d,"
        "\"alreadyComplete\":%s,\"alreadyPublished\":%s}",
        a.digest, a.file.size, u.resumed_from, u.bytes_sent, u.already_complete ? "true" : "false",
        result.was_published ? "true" : "false");
  }
  inv.out() << absl::StrFormat(
      "{\"version\":%s,\"tierBinding\":%s,\"artifacts\":[%s],\"tierAlreadyBound\":%s,"
      "\"alreadyPublished\":%s%s}\n",
      version, binding, absl::StrJoin(artifacts, ","), result.tier_already_bound ? "true" : "false",
      result.was_published ? "true" : "false", legacy);
  return absl::OkStatus();
}

absl::Status RunPublish(Invocation& inv, const Flags& flags) {
  PublishSpec spec;
  for (const char* required : {"model", "version", "tier"}) {
    if (flags.Get(required).empty())
      return UsageError(absl::StrCat("--", required, " is required"));
  }
  spec.model_id = flags.Get("model");
  spec.version_id = flags.Get("version");
  spec.tier = flags.Get("tier");
  spec.channel = flags.Get("channel");
  spec.description = flags.Get("description");
  MD_ASSIGN_OR_RETURN(spec.artifacts,
                      ParsePublishArtifacts(flags.Get("platform"), flags.Get("arch"),
                                            flags.Get("format"), flags.positional()));
  MD_RETURN_IF_ERROR(ParsePublishConstraints(flags.Get("min-os"), flags.Get("min-ram"),
                                             flags.Get("requires"), flags.Get("unpacked-size"),
                                             &spec));
  MD_RETURN_IF_ERROR(ValidatePublishSpec(spec));
  MD_ASSIGN_OR_RETURN(RegistryClient * client, inv.Client());

  PublishOptions options;
  options.log = &inv.err();
  options.show_progress = inv.err_is_tty();
  PublishResult result;
  absl::Status status = Publish(*client, spec, options, &result);
  if (!status.ok()) {
    if (result.BytesSent() > 0 || result.version_created) {
      inv.err() << "the bytes sent (and the draft, if one was created) are kept: run the same "
                   "command again to resume\n";
    }
    return status;
  }

  if (WantJson(inv, flags)) return PrintPublishJson(inv, result);
  const v1::TierBinding& b = result.binding;
  // A rerun of a published version says so first, and whether it bound the tier or found it
  // bound (then nothing changed: no new sequence, no audit entry).
  const std::string rerun_tier =
      result.tier_already_bound ? absl::StrCat("; tier ", b.tier(), "/", b.channel(),
                                               " already bound to it (sequence ", b.sequence(), ")")
                                : absl::StrCat("; bound tier ", b.tier(), "/", b.channel(),
                                               " to it (sequence ", b.sequence(), ")");
  if (result.artifacts.size() == 1) {
    // One line, as before several files could be published at once.
    const PublishedArtifact& a = result.artifacts[0];
    const std::string content = absl::StrCat(" digest ", a.digest, " size ", a.file.size, " (",
                                             FormatBytes(a.file.size), ")");
    if (result.was_published) {
      inv.out() << "already published " << result.version.name() << content
                << (a.restored ? absl::StrCat(", ", HowUploaded(result, a)) : "") << rerun_tier
                << "\n";
      return absl::OkStatus();
    }
    inv.out() << "published " << result.version.name() << content << " tier " << b.tier() << "/"
              << b.channel() << " sequence " << b.sequence() << " (" << HowUploaded(result, a)
              << ")\n";
    return absl::OkStatus();
  }
  // A head line, then one indented line per artifact, in the order given.
  if (result.was_published) {
    inv.out() << "already published " << result.version.name() << " with "
              << result.artifacts.size() << " artifacts" << rerun_tier << "\n";
  } else {
    inv.out() << "published " << result.version.name() << " with " << result.artifacts.size()
              << " artifacts tier " << b.tier() << "/" << b.channel() << " sequence "
              << b.sequence() << "\n";
  }
  for (const PublishedArtifact& a : result.artifacts) {
    inv.out() << "  " << TargetName(a.spec.platform, a.spec.arch, a.spec.format) << " digest "
              << a.digest << " size " << a.file.size << " (" << FormatBytes(a.file.size) << ") "
              << a.spec.file << " (" << HowUploaded(result, a) << ")\n";
  }
  return absl::OkStatus();
}

// --- list ------------------------------------------------------------------------------------

void ListFlags(Flags* f) {
  f->AddBool("tiers", "list tier bindings instead of models");
  f->AddBool("json", "print the result as JSON");
}

absl::Status ListModels(Invocation& inv, const Flags& flags, RegistryClient& client) {
  v1::ListModelsResponse all;
  v1::ListModelsRequest request;
  request.set_page_size(kPageSize);
  do {
    MD_ASSIGN_OR_RETURN(v1::ListModelsResponse page, client.ListModels(request));
    for (auto& m : *page.mutable_models()) *all.add_models() = std::move(m);
    request.set_page_token(page.next_page_token());
  } while (!request.page_token().empty());
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
  v1::ListVersionsResponse all;
  v1::ListVersionsRequest request;
  request.set_parent(ModelName(model_id));
  request.set_page_size(kPageSize);
  do {
    MD_ASSIGN_OR_RETURN(v1::ListVersionsResponse page, client.ListVersions(request));
    for (auto& v : *page.mutable_versions()) *all.add_versions() = std::move(v);
    request.set_page_token(page.next_page_token());
  } while (!request.page_token().empty());
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
  v1::ListTiersResponse all;
  v1::ListTiersRequest request;
  request.set_page_size(kPageSize);
  do {
    MD_ASSIGN_OR_RETURN(v1::ListTiersResponse page, client.ListTiers(request));
    for (auto& t : *page.mutable_tiers()) *all.add_tiers() = std::move(t);
    request.set_page_token(page.next_page_token());
  } while (!request.page_token().empty());
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

void PrintVersion(std::ostream& out, const v1::Version& v) {
  out << "name:       " << v.name() << "\n"
      << "state:      " << StateName(v.state()) << "\n"
      << "created:    " << FormatTime(v.create_time()) << "\n"
      << "published:  " << FormatTime(v.publish_time()) << "\n";
  if (v.state() == v1::Version::YANKED) {
    out << "yanked:     " << FormatTime(v.yank_time()) << "\n"
        << "reason:     " << (v.yank_reason().empty() ? "-" : v.yank_reason()) << "\n";
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
  }
}

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
  f->Add("reason", "TEXT", "", "why, for people (at most 1024 bytes)");
  f->AddBool("json", "print the version as JSON");
}

absl::Status RunYank(Invocation& inv, const Flags& flags) {
  MD_ASSIGN_OR_RETURN(VersionName name, VersionFromArgs(flags.positional(), "version"));
  if (flags.Get("reason").size() > 1024) return UsageError("--reason is longer than 1024 bytes");
  MD_ASSIGN_OR_RETURN(RegistryClient * client, inv.Client());
  v1::YankVersionRequest request;
  request.set_name(name.ToString());
  request.set_reason(flags.Get("reason"));
  MD_ASSIGN_OR_RETURN(v1::Version version, client->YankVersion(request));
  if (WantJson(inv, flags)) return PrintJson(inv, version);
  inv.out() << "yanked " << version.name() << "\n";
  return absl::OkStatus();
}

// --- rollout ---------------------------------------------------------------------------------

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
  v1::ListRolloutsResponse all;
  request.set_page_size(kPageSize);
  do {
    MD_ASSIGN_OR_RETURN(v1::ListRolloutsResponse page, client->ListRollouts(request));
    for (auto& r : *page.mutable_rollouts()) *all.add_rollouts() = std::move(r);
    request.set_page_token(page.next_page_token());
  } while (!request.page_token().empty());
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

// --- pin, unpin, pins ------------------------------------------------------------------------

// The server takes at most this many device ids per PinDevices/UnpinDevices call.
constexpr size_t kMaxDevicesPerCall = 1000;
constexpr size_t kMaxDeviceIdBytes = 128;

void PinFlags(Flags* f) {
  AddTierFlags(f);
  f->Add("version", "NAME", "", "models/M/versions/V (or the version id, with --model)");
  f->Add("model", "M", "", "the model id, when --version is a version id");
  f->Add("devices-file", "FILE", "",
         "more device ids, one per line (blank lines and lines starting with # are skipped)");
  f->AddBool("json", "print the result as JSON");
}

void UnpinFlags(Flags* f) {
  AddTierFlags(f);
  f->Add("devices-file", "FILE", "",
         "more device ids, one per line (blank lines and lines starting with # are skipped)");
  f->AddBool("json", "print the result as JSON");
}

// The device ids of a pin/unpin command: the arguments, then the lines of --devices-file, in
// order, each once. A usage error for none or for an id the server would refuse (so that no
// batch is sent when a later one is bound to fail); a local error for an unreadable file.
absl::StatusOr<std::vector<std::string>> DeviceIds(const Flags& flags, absl::string_view command) {
  std::vector<std::string> candidates = flags.positional();
  if (const std::string path = flags.Get("devices-file"); !path.empty()) {
    absl::StatusOr<std::string> contents = ReadFileToString(path);
    if (!contents.ok()) {
      return LocalError(absl::Status(
          contents.status().code(), absl::StrCat("--devices-file: ", contents.status().message())));
    }
    for (absl::string_view line : absl::StrSplit(*contents, '\n')) {
      line = absl::StripAsciiWhitespace(line);
      if (line.empty() || absl::StartsWith(line, "#")) continue;
      candidates.emplace_back(line);
    }
  }
  std::vector<std::string> ids;
  std::set<std::string> seen;
  for (std::string& id : candidates) {
    if (id.empty()) return UsageError(absl::StrCat(command, ": a device id is empty"));
    if (id.size() > kMaxDeviceIdBytes) {
      return UsageError(absl::StrCat(command, ": device id \"", id.substr(0, 40), "...\" is ",
                                     id.size(), " bytes; at most ", kMaxDeviceIdBytes));
    }
    if (seen.insert(id).second) ids.push_back(std::move(id));
  }
  if (ids.empty()) {
    return UsageError(
        absl::StrCat(command, " needs device ids: as arguments or with --devices-file FILE"));
  }
  return ids;
}

// What a batched pin/unpin did, summed over its calls.
struct PinTotals {
  int64_t devices = 0;  // Ids sent in calls that succeeded.
  int64_t changed = 0;
  int64_t sequence = 0;  // Of the last call that succeeded.
  int calls = 0;
};

// Sends `ids` in calls of at most kMaxDevicesPerCall through `call`. On a failure, says on
// stderr how far it got, since the earlier batches stay applied.
absl::Status SendInBatches(
    Invocation& inv, absl::string_view verb, const std::vector<std::string>& ids,
    const std::function<absl::StatusOr<v1::PinDevicesResponse>(absl::Span<const std::string>)>&
        call,
    PinTotals* totals) {
  for (size_t begin = 0; begin < ids.size(); begin += kMaxDevicesPerCall) {
    const size_t end = std::min(ids.size(), begin + kMaxDevicesPerCall);
    absl::StatusOr<v1::PinDevicesResponse> response =
        call(absl::MakeConstSpan(ids).subspan(begin, end - begin));
    if (!response.ok()) {
      if (totals->calls > 0) {
        inv.err() << verb << " " << totals->devices << " of " << ids.size()
                  << " devices before this error; the rest were not sent (running the same "
                     "command again is safe)\n";
      }
      return response.status();
    }
    totals->devices += static_cast<int64_t>(end - begin);
    totals->changed += response->changed();
    totals->sequence = response->sequence();
    ++totals->calls;
  }
  return absl::OkStatus();
}

absl::Status PrintPinTotals(Invocation& inv, const Flags& flags, absl::string_view verb,
                            const TierChannel& target, const std::string& version,
                            const PinTotals& totals) {
  if (WantJson(inv, flags)) {
    inv.out() << absl::StrFormat(
        "{\"tier\":\"%s\",\"channel\":\"%s\",%s\"devices\":%d,\"changed\":%d,\"sequence\":%d,"
        "\"calls\":%d}\n",
        target.tier, target.channel,
        version.empty() ? "" : absl::StrCat("\"version\":\"", version, "\","), totals.devices,
        totals.changed, totals.sequence, totals.calls);
    return absl::OkStatus();
  }
  inv.out() << verb << " " << totals.devices << (totals.devices == 1 ? " device" : " devices")
            << " of " << target.ToString() << (version.empty() ? "" : " to ") << version << " ("
            << totals.changed << " changed) sequence " << totals.sequence << "\n";
  return absl::OkStatus();
}

absl::Status RunPin(Invocation& inv, const Flags& flags) {
  MD_ASSIGN_OR_RETURN(TierChannel target, TierChannelFromFlags(flags));
  MD_ASSIGN_OR_RETURN(VersionName version, VersionFromFlags(flags));
  MD_ASSIGN_OR_RETURN(std::vector<std::string> ids, DeviceIds(flags, "pin"));
  MD_ASSIGN_OR_RETURN(RegistryClient * client, inv.Client());
  PinTotals totals;
  MD_RETURN_IF_ERROR(SendInBatches(
      inv, "pinned", ids,
      [&](absl::Span<const std::string> batch) {
        v1::PinDevicesRequest request;
        request.set_tier(target.tier);
        request.set_channel(target.channel);
        request.set_version(version.ToString());
        for (const std::string& id : batch) request.add_device_ids(id);
        return client->PinDevices(request);
      },
      &totals));
  return PrintPinTotals(inv, flags, "pinned", target, version.ToString(), totals);
}

absl::Status RunUnpin(Invocation& inv, const Flags& flags) {
  MD_ASSIGN_OR_RETURN(TierChannel target, TierChannelFromFlags(flags));
  MD_ASSIGN_OR_RETURN(std::vector<std::string> ids, DeviceIds(flags, "unpin"));
  MD_ASSIGN_OR_RETURN(RegistryClient * client, inv.Client());
  PinTotals totals;
  MD_RETURN_IF_ERROR(SendInBatches(
      inv, "unpinned", ids,
      [&](absl::Span<const std::string> batch) {
        v1::UnpinDevicesRequest request;
        request.set_tier(target.tier);
        request.set_channel(target.channel);
        for (const std::string& id : batch) request.add_device_ids(id);
        return client->UnpinDevices(request);
      },
      &totals));
  return PrintPinTotals(inv, flags, "unpinned", target, "", totals);
}

void PinsFlags(Flags* f) { f->AddBool("json", "print the pins as JSON"); }

absl::Status RunPins(Invocation& inv, const Flags& flags) {
  MD_RETURN_IF_ERROR(NoPositional(flags, "pins"));
  MD_ASSIGN_OR_RETURN(RegistryClient * client, inv.Client());
  v1::ListPinsResponse all;
  v1::ListPinsRequest request;
  request.set_page_size(kPageSize);
  do {
    MD_ASSIGN_OR_RETURN(v1::ListPinsResponse page, client->ListPins(request));
    for (auto& p : *page.mutable_pins()) *all.add_pins() = std::move(p);
    request.set_page_token(page.next_page_token());
  } while (!request.page_token().empty());
  if (WantJson(inv, flags)) return PrintJson(inv, all);
  std::vector<std::vector<std::string>> rows = {
      {"TIER", "CHANNEL", "DEVICE", "CREATED", "VERSION"}};
  for (const v1::DevicePin& p : all.pins()) {
    rows.push_back(
        {p.tier(), p.channel(), p.device_id(), FormatTime(p.create_time()), p.version()});
  }
  PrintTable(inv.out(), rows);
  return absl::OkStatus();
}

// --- audit -----------------------------------------------------------------------------------

constexpr int64_t kDefaultAuditLimit = 50;

void AuditFlags(Flags* f) {
  f->Add("limit", "N", absl::StrCat(kDefaultAuditLimit), "show the newest N entries; 0 for all");
  f->AddBool("json", "print the entries as JSON");
}

// Details are free text from the server; a newline or tab would break the table's rows.
std::string OneLine(absl::string_view text) {
  std::string out(text);
  for (char& c : out) {
    if (c == '\n' || c == '\r' || c == '\t') c = ' ';
  }
  return out;
}

absl::Status RunAudit(Invocation& inv, const Flags& flags) {
  MD_RETURN_IF_ERROR(NoPositional(flags, "audit"));
  MD_ASSIGN_OR_RETURN(int64_t limit, IntFlag(flags, "limit", 0, std::numeric_limits<int32_t>::max(),
                                             kDefaultAuditLimit));
  MD_ASSIGN_OR_RETURN(RegistryClient * client, inv.Client());
  v1::ListAuditLogResponse all;
  v1::ListAuditLogRequest request;
  // The server lists newest first, so the first `limit` entries are the newest ones.
  do {
    int64_t wanted = limit == 0 ? kPageSize : limit - all.entries_size();
    request.set_page_size(static_cast<int32_t>(std::min<int64_t>(wanted, kPageSize)));
    MD_ASSIGN_OR_RETURN(v1::ListAuditLogResponse page, client->ListAuditLog(request));
    for (auto& e : *page.mutable_entries()) {
      if (limit != 0 && all.entries_size() >= limit) break;
      *all.add_entries() = std::move(e);
    }
    request.set_page_token(page.next_page_token());
  } while (!request.page_token().empty() && (limit == 0 || all.entries_size() < limit));
  if (WantJson(inv, flags)) return PrintJson(inv, all);
  std::vector<std::vector<std::string>> rows = {{"TIME", "ACTOR", "ACTION", "RESOURCE", "DETAILS"}};
  for (const v1::AuditEntry& e : all.entries()) {
    rows.push_back({FormatTime(e.time()), OneLine(e.actor()), e.action(), OneLine(e.resource()),
                    OneLine(e.details())});
  }
  PrintTable(inv.out(), rows);
  return absl::OkStatus();
}

// --- keys ------------------------------------------------------------------------------------

// The largest key count RotateSigningKeys accepts.
constexpr int64_t kMaxRootKeys = 16;

void KeysFlags(Flags* f) {
  f->Add("out", "FILE", "",
         "generate: the private key (PKCS#8 PEM, mode 0600); root: the signed root (binary)");
  f->Add("threshold", "K", "",
         "add, revoke, rotate: signatures the new root requires (default: "
         "keep the current one)");
  f->Add("count", "N", "", "rotate: how many new keys, 1 to 16 (default: as many as now)");
  f->Add("version", "N", "", "root: the root version to fetch (default: the newest)");
  f->AddBool("json", "print the key or trust root as JSON");
}

constexpr std::initializer_list<absl::string_view> kKeysFlags = {"out", "threshold", "count",
                                                                 "version"};

absl::Status KeysGenerate(Invocation& inv, const Flags& flags) {
  const std::string out = flags.Get("out");
  if (out.empty()) return UsageError("--out is required");
  if (::access(out.c_str(), F_OK) == 0) {
    return LocalError(
        absl::AlreadyExistsError(absl::StrCat(out, " exists; refusing to overwrite a key")));
  }
  MD_ASSIGN_OR_RETURN(Ed25519PrivateKey key, Ed25519PrivateKey::Generate());
  // SavePemFile refuses to overwrite too, which closes the race with the check above.
  MD_RETURN_IF_ERROR(LocalError(key.SavePemFile(out)));
  v1::SigningKey info;
  info.set_key_id(key.public_key().KeyId());
  info.set_algorithm("ed25519");
  info.set_public_key(key.public_key().raw());
  info.set_public_key_pem(key.public_key().ToPem());
  if (WantJson(inv, flags)) return PrintJson(inv, info);
  inv.out() << "wrote private key " << out << " (mode 0600; keep it secret)\n"
            << "key id: " << info.key_id() << "\n"
            << info.public_key_pem();
  return absl::OkStatus();
}

// The root inside `signed_root`. A server error (exit 2) when the bytes do not parse: they
// came from the server, and the user can do nothing about them locally.
absl::StatusOr<v1::TrustRoot> ParseRoot(const v1::SignedTrustRoot& signed_root) {
  v1::TrustRoot root;
  if (!root.ParseFromString(signed_root.root())) {
    return absl::DataLossError("the server's signed trust root does not parse as a TrustRoot");
  }
  return root;
}

absl::Status PrintRoot(Invocation& inv, const Flags& flags, const v1::TrustRoot& root,
                       absl::string_view head) {
  if (WantJson(inv, flags)) return PrintJson(inv, root);
  inv.out() << head << "trust root version " << root.version() << ", threshold " << root.threshold()
            << " of " << root.keys_size() << (root.keys_size() == 1 ? " key" : " keys") << "\n";
  for (const v1::SigningKey& key : root.keys()) inv.out() << "  key " << key.key_id() << "\n";
  return absl::OkStatus();
}

absl::Status KeysChange(Invocation& inv, const Flags& flags, const std::string& sub) {
  MD_ASSIGN_OR_RETURN(int64_t threshold, IntFlag(flags, "threshold", 1, kMaxRootKeys, 0));
  MD_ASSIGN_OR_RETURN(int64_t count, IntFlag(flags, "count", 1, kMaxRootKeys, 0));
  const auto& args = flags.positional();
  if (sub == "revoke" ? args.size() != 2 : args.size() != 1) {
    return UsageError(sub == "revoke" ? "keys revoke needs exactly one KEY_ID"
                                      : absl::StrCat("keys ", sub, " takes no arguments"));
  }
  MD_ASSIGN_OR_RETURN(RegistryClient * client, inv.Client());
  absl::StatusOr<v1::SignedTrustRoot> signed_root;
  std::string head;
  if (sub == "add") {
    v1::AddSigningKeyRequest request;
    request.set_threshold(static_cast<int32_t>(threshold));
    signed_root = client->AddSigningKey(request);
    head = "added a signing key: ";
  } else if (sub == "revoke") {
    v1::RevokeSigningKeyRequest request;
    request.set_key_id(args[1]);
    request.set_threshold(static_cast<int32_t>(threshold));
    signed_root = client->RevokeSigningKey(request);
    head = absl::StrCat("revoked key ", args[1], ": ");
  } else {
    v1::RotateSigningKeysRequest request;
    request.set_count(static_cast<int32_t>(count));
    request.set_threshold(static_cast<int32_t>(threshold));
    signed_root = client->RotateSigningKeys(request);
    head = "rotated the signing keys: ";
  }
  if (!signed_root.ok()) return signed_root.status();
  MD_ASSIGN_OR_RETURN(v1::TrustRoot root, ParseRoot(*signed_root));
  return PrintRoot(inv, flags, root, head);
}

absl::Status KeysRoot(Invocation& inv, const Flags& flags) {
  if (flags.positional().size() != 1) return UsageError("keys root takes no arguments");
  MD_ASSIGN_OR_RETURN(int64_t version,
                      IntFlag(flags, "version", 1, std::numeric_limits<int64_t>::max(), 0));
  MD_ASSIGN_OR_RETURN(std::shared_ptr<grpc::Channel> channel, inv.Channel());
  MD_ASSIGN_OR_RETURN(v1::SignedTrustRoot signed_root, FetchTrustRoot(channel, version));
  // Devices pin what this writes and trust nothing that does not chain to it, so a root that
  // does not carry its own threshold of signatures must not get that far.
  absl::StatusOr<v1::TrustRoot> root = VerifyFirstRoot(signed_root);
  if (!root.ok()) {
    absl::Status failed(
        root.status().code(),
        absl::StrCat("the server's trust root does not verify: ", root.status().message()));
    // Keeps the ErrorInfo reason (e.g. ROOT_SIGNATURE_THRESHOLD_NOT_MET) for the error line.
    root.status().ForEachPayload([&failed](absl::string_view type_url, const absl::Cord& payload) {
      failed.SetPayload(type_url, payload);
    });
    return failed;
  }
  if (version != 0 && root->version() != version) {
    return absl::DataLossError(absl::StrCat("asked for trust root version ", version,
                                            " but the server sent version ", root->version()));
  }
  std::string head;
  if (const std::string out = flags.Get("out"); !out.empty()) {
    // Public data, refreshed as roots rotate: replacing the file is the normal case.
    MD_RETURN_IF_ERROR(LocalError(WriteFileAtomically(out, signed_root.SerializeAsString(), 0644)));
    head = absl::StrCat("wrote ", out, ": ");
  }
  return PrintRoot(inv, flags, *root, head);
}

absl::Status RunKeys(Invocation& inv, const Flags& flags) {
  const auto& args = flags.positional();
  constexpr absl::string_view kSubcommands = "generate, add, revoke, rotate, root";
  if (args.empty()) return UsageError(absl::StrCat("keys needs a subcommand: ", kSubcommands));
  const std::string& sub = args[0];
  const std::string command = absl::StrCat("keys ", sub);
  if (sub == "generate") {
    MD_RETURN_IF_ERROR(OnlyFlags(flags, command, {"out"}, kKeysFlags));
    if (args.size() != 1) return UsageError("keys generate takes no arguments");
    return KeysGenerate(inv, flags);
  }
  if (sub == "add" || sub == "revoke") {
    MD_RETURN_IF_ERROR(OnlyFlags(flags, command, {"threshold"}, kKeysFlags));
    return KeysChange(inv, flags, sub);
  }
  if (sub == "rotate") {
    MD_RETURN_IF_ERROR(OnlyFlags(flags, command, {"threshold", "count"}, kKeysFlags));
    return KeysChange(inv, flags, sub);
  }
  if (sub == "root") {
    MD_RETURN_IF_ERROR(OnlyFlags(flags, command, {"version", "out"}, kKeysFlags));
    return KeysRoot(inv, flags);
  }
  return UsageError(absl::StrCat("unknown keys subcommand \"", sub, "\"; one of ", kSubcommands));
}

// --- scrub -----------------------------------------------------------------------------------

void ScrubFlags(Flags* f) {
  f->Add("rate", "BYTES", "",
         "read at most this many bytes per second on the server, e.g. 200MiB, so downloads "
         "keep the disk (default: as fast as the disk allows)");
  f->AddBool("json", "print the summary and what was found as JSON");
}

// "damaged", "missing", "restored", "ok": how a person reads the outcome.
std::string OutcomeName(v1::ScrubBlobsResponse::Outcome outcome) {
  std::string name = v1::ScrubBlobsResponse::Outcome_Name(outcome);
  return absl::AsciiStrToLower(name);
}

absl::Status RunScrub(Invocation& inv, const Flags& flags) {
  MD_RETURN_IF_ERROR(NoPositional(flags, "scrub"));
  v1::ScrubBlobsRequest request;
  if (flags.IsSet("rate")) {
    absl::StatusOr<int64_t> rate = ParseSize(flags.Get("rate"));
    if (!rate.ok() || *rate < 0) {
      return UsageError(absl::StrCat("--rate: \"", flags.Get("rate"),
                                     "\" is not a number of bytes per second, e.g. 200MiB"));
    }
    request.set_bytes_per_second(*rate);
  }
  MD_ASSIGN_OR_RETURN(RegistryClient * client, inv.Client());
  const bool json = WantJson(inv, flags);

  // A stream with no deadline (a scrub of a large store takes hours); ^C ends the process,
  // the connection with it, and so the server's pass.
  std::unique_ptr<grpc::ClientContext> context = client->NewStreamContext();
  std::unique_ptr<grpc::ClientReader<v1::ScrubBlobsResponse>> reader =
      client->stub().ScrubBlobs(context.get(), request);
  const absl::Time start = absl::Now();
  std::unique_ptr<ProgressMeter> meter;       // made at the first message, which has the totals
  std::vector<v1::ScrubBlobsResponse> found;  // everything but OK, in the order found
  v1::ScrubBlobsResponse last;
  v1::ScrubBlobsResponse response;
  while (reader->Read(&response)) {
    if (!meter) {
      meter = std::make_unique<ProgressMeter>(&inv.err(), inv.err_is_tty(), "scrubbing", 0,
                                              response.bytes_total());
    }
    meter->Update(response.bytes_done());
    if (response.outcome() != v1::ScrubBlobsResponse::OK) {
      if (!json) {
        meter->Finish();  // stdout and stderr may share the terminal: no half-erased line
        inv.out() << OutcomeName(response.outcome()) << " " << response.digest();
        if (response.size_bytes() > 0)
          inv.out() << " (" << FormatBytes(response.size_bytes()) << ")";
        inv.out() << ": " << OneLine(response.details()) << "\n" << std::flush;
      }
      found.push_back(response);
    }
    last = std::move(response);
  }
  if (meter) meter->Finish();
  absl::Status status = FromGrpcStatus(reader->Finish());
  if (!status.ok()) return status;

  const absl::Duration took = absl::Now() - start;
  int64_t damaged = 0, missing = 0, restored = 0;
  for (const v1::ScrubBlobsResponse& r : found) {
    damaged += r.outcome() == v1::ScrubBlobsResponse::DAMAGED;
    missing += r.outcome() == v1::ScrubBlobsResponse::MISSING;
    restored += r.outcome() == v1::ScrubBlobsResponse::RESTORED;
  }
  if (json) {
    std::vector<std::string> entries;
    for (const v1::ScrubBlobsResponse& r : found) {
      entries.push_back(
          absl::StrFormat("{\"outcome\":\"%s\",\"digest\":\"%s\",\"sizeBytes\":%d,\"details\":%s}",
                          v1::ScrubBlobsResponse::Outcome_Name(r.outcome()), r.digest(),
                          r.size_bytes(), JsonQuote(r.details())));
    }
    inv.out() << absl::StrFormat(
        "{\"blobsChecked\":%d,\"bytesChecked\":%d,\"durationSeconds\":%.3f,\"damaged\":%d,"
        "\"missing\":%d,\"restored\":%d,\"found\":[%s]}\n",
        last.blobs_done(), last.bytes_done(), absl::ToDoubleSeconds(took), damaged, missing,
        restored, absl::StrJoin(entries, ","));
  } else {
    inv.out() << "checked " << last.blobs_done() << " blobs (" << FormatBytes(last.bytes_done())
              << ") in " << absl::ToInt64Seconds(took + absl::Milliseconds(500))
              << " s: " << damaged << " damaged, " << missing << " missing, " << restored
              << " restored\n";
  }
  if (damaged + missing > 0) {
    return DamageFound(absl::StrCat(
        "the scrub found ", damaged, " damaged and ", missing,
        " missing blobs; their manifests are withheld until the same files are published "
        "again (see docs/architecture.md, \"Integrity at rest\")"));
  }
  return absl::OkStatus();
}

// --- Dispatch --------------------------------------------------------------------------------

const Command kCommands[] = {
    {"publish",
     "publish --model M --version V --tier T [--channel C] [--description TEXT]\n"
     "           [CONSTRAINTS] PLATFORM/ARCH/FORMAT=FILE...\n"
     "   or: modeldistctl [global flags] publish --model M --version V --platform P --arch A\n"
     "           --format F --tier T [--channel C] [--description TEXT] [CONSTRAINTS] FILE\n"
     "CONSTRAINTS: [--min-os VERSION] [--min-ram BYTES] [--requires LIST] [--unpacked-size "
     "BYTES],\n"
     "what a device needs, declared alike on every artifact of the command",
     "upload a version's model files and bind a tier to it; rerun to resume",
     "modeldistctl publish --model llama-3.1-8b-instruct --version 2026.11.0 --tier llama8b \\\n"
     "      macos/arm64/coreml-zip=llama-3.1-8b-instruct-coreml.zip \\\n"
     "      macos/x86_64/gguf=llama-3.1-8b-instruct-q4_0.gguf",
     PublishFlags, RunPublish},
    {"list", "list [M | models/M | --tiers]",
     "list models, the versions and artifacts of model M, or the tier bindings",
     "modeldistctl list llama-3.1-8b-instruct", ListFlags, RunList},
    {"show", "show models/M/versions/V | show M V",
     "show a version: state, times and artifacts (digest, size, uploaded)",
     "modeldistctl show llama-3.1-8b-instruct 2026.11.0", ShowFlags, RunShow},
    {"set-tier", "set-tier --tier T [--channel C] --version models/M/versions/V",
     "bind a tier on a channel to a published version (also --model M --version V)",
     "modeldistctl set-tier --tier llama8b --channel beta \\\n"
     "      --version models/llama-3.1-8b-instruct/versions/2026.11.0",
     SetTierFlags, RunSetTier},
    {"yank", "yank models/M/versions/V [--reason TEXT]",
     "withdraw a published version; tiers bound to it fall back to their previous version",
     "modeldistctl yank models/llama-3.1-8b-instruct/versions/2026.11.0 --reason \"bad output\"",
     YankFlags, RunYank},
    {"rollout",
     "rollout start --tier T [--channel C] --version models/M/versions/V --percent P\n"
     "   or: modeldistctl [global flags] rollout advance --tier T [--channel C] --percent P\n"
     "   or: modeldistctl [global flags] rollout pause|resume|complete|abort --tier T "
     "[--channel C]\n"
     "   or: modeldistctl [global flags] rollout list [--tier T [--channel C]]",
     "move a tier to a new version for a growing share of devices (P in %, e.g. 0.5 or 10)",
     "modeldistctl rollout start --tier llama8b \\\n"
     "      --version models/llama-3.1-8b-instruct/versions/2026.12.0 --percent 0.5",
     RolloutFlags, RunRollout},
    {"pin",
     "pin --tier T [--channel C] --version models/M/versions/V DEVICE_ID... | --devices-file FILE",
     "hold devices of a tier on a version, whatever the binding or a rollout says",
     "modeldistctl pin --tier llama8b --version models/llama-3.1-8b-instruct/versions/2026.11.0 "
     "\\\n"
     "      --devices-file qa-devices.txt",
     PinFlags, RunPin},
    {"unpin", "unpin --tier T [--channel C] DEVICE_ID... | --devices-file FILE",
     "release pinned devices (unknown ids are ignored)",
     "modeldistctl unpin --tier llama8b device-0001 device-0002", UnpinFlags, RunUnpin},
    {"pins", "pins", "list pinned devices", "modeldistctl pins --json", PinsFlags, RunPins},
    {"audit", "audit [--limit N]", "show the audit log of catalog changes, newest first",
     "modeldistctl audit --limit 20", AuditFlags, RunAudit},
    {"keys",
     "keys generate --out FILE\n"
     "   or: modeldistctl [global flags] keys add [--threshold K]\n"
     "   or: modeldistctl [global flags] keys revoke KEY_ID [--threshold K]\n"
     "   or: modeldistctl [global flags] keys rotate [--count N] [--threshold K]\n"
     "   or: modeldistctl [global flags] keys root [--version N] [--out FILE]",
     "manage the server's manifest-signing keys and trust root; generate a key locally",
     "modeldistctl keys root --out trust-root.bin", KeysFlags, RunKeys},
    {"scrub",
     "scrub [--rate BYTES]\n"
     "Prints each damaged, missing or restored blob, then a summary; progress goes to stderr.\n"
     "The server quarantines a damaged blob and withholds its manifests until the same file\n"
     "is published again. Exit code 4 when a blob is damaged or missing.",
     "re-read and check every blob on the server's disk (exit 4: damage found)",
     "modeldistctl scrub --rate 200MiB", ScrubFlags, RunScrub},
};

const Command* FindCommand(absl::string_view name) {
  for (const Command& c : kCommands) {
    if (name == c.name) return &c;
  }
  return nullptr;
}

void AddGlobalFlags(Flags* f, const GetEnv& getenv) {
  std::optional<std::string> server = getenv ? getenv("MODELDIST_SERVER") : std::nullopt;
  f->Add("server", "HOST:PORT", server.value_or(kDefaultServer),
         "the modeldist server ($MODELDIST_SERVER)");
  f->Add("token-file", "FILE", "",
         "admin token file, first line ($MODELDIST_ADMIN_TOKEN when absent)");
  f->Add("tls-ca", "FILE", "", "use TLS, trusting this CA bundle (PEM); plaintext without it");
  f->Add("actor", "NAME", "", "who you are in the server's audit log (default: $USER@hostname)");
  f->AddBool("json", "print results as JSON");
  f->AddBool("help", "show this help");
}

std::string MainHelp(const GetEnv& getenv) {
  Flags global;
  AddGlobalFlags(&global, getenv);
  std::string out =
      "modeldistctl: the admin CLI of a modeldist server (RegistryService).\n\n"
      "usage: modeldistctl [--server HOST:PORT] [--token-file FILE] [--tls-ca FILE] "
      "[--actor NAME] [--json] COMMAND [args]\n\ncommands:\n";
  for (const Command& c : kCommands)
    absl::StrAppend(&out, absl::StrFormat("  %-9s %s\n", c.name, c.summary));
  absl::StrAppend(&out, "\nglobal flags (before the command):\n", global.Help(), "\nexamples:\n");
  for (const Command& c : kCommands) absl::StrAppend(&out, "  ", c.example, "\n");
  absl::StrAppend(&out,
                  "\nexit codes: 0 ok, 1 usage error, 2 server/RPC error, 3 local file error,\n"
                  "4 damaged or missing blobs found (scrub).\n"
                  "Run `modeldistctl COMMAND --help` for a command's flags.\n");
  return out;
}

std::string CommandHelp(const Command& c, const Flags& flags) {
  return absl::StrCat("usage: modeldistctl [global flags] ", c.usage, "\n\n", c.summary,
                      "\n\nflags:\n", flags.Help(), "\nexample:\n  ", c.example, "\n");
}

// argv-style pointers into `args`, which must outlive the result.
std::vector<char*> Argv(const std::vector<std::string>& args) {
  std::vector<char*> argv;
  argv.reserve(args.size() + 1);
  for (const std::string& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  return argv;
}

int Fail(const Console& console, const absl::Status& status, absl::string_view hint) {
  *console.err << "modeldistctl: " << DescribeError(status) << "\n";
  if (ExitCodeFor(status) == kExitUsage && !hint.empty()) *console.err << hint << "\n";
  return ExitCodeFor(status);
}

}  // namespace

absl::StatusOr<int32_t> ParsePercent(absl::string_view flag, absl::string_view text) {
  auto bad = [&](absl::string_view why) {
    return UsageError(absl::StrCat("--", flag, ": \"", text, "\" ", why));
  };
  absl::string_view t = absl::StripAsciiWhitespace(text);
  if (absl::EndsWith(t, "%")) t.remove_suffix(1);
  const size_t dot = t.find('.');
  absl::string_view whole = t.substr(0, dot);
  absl::string_view fraction = dot == absl::string_view::npos ? "" : t.substr(dot + 1);
  auto all_digits = [](absl::string_view s) {
    return s.find_first_not_of("0123456789") == absl::string_view::npos;
  };
  if ((whole.empty() && fraction.empty()) || !all_digits(whole) || !all_digits(fraction)) {
    return bad("is not a percent: expected a number from 0 to 100, e.g. 0.5, 10 or 50");
  }
  while (whole.size() > 1 && whole.front() == '0') whole.remove_prefix(1);
  const bool fraction_is_zero = fraction.find_first_not_of('0') == absl::string_view::npos;
  int whole_value = 0;
  if (whole.size() > 3 || (!whole.empty() && !absl::SimpleAtoi(whole, &whole_value)) ||
      whole_value > 100 || (whole_value == 100 && !fraction_is_zero)) {
    return bad("is out of range: a share of devices is 0 to 100 (percent)");
  }
  // Two decimals are basis points; the third rounds them, half up.
  auto digit = [&fraction](size_t i) { return i < fraction.size() ? fraction[i] - '0' : 0; };
  int32_t basis_points = whole_value * 100 + digit(0) * 10 + digit(1);
  if (digit(2) >= 5) ++basis_points;
  return basis_points;
}

std::string FormatBasisPoints(int32_t basis_points) {
  const int32_t whole = basis_points / 100;
  const int32_t hundredths = basis_points % 100;
  if (hundredths == 0) return absl::StrCat(whole, "%");
  if (hundredths % 10 == 0) return absl::StrCat(whole, ".", hundredths / 10, "%");
  return absl::StrFormat("%d.%02d%%", whole, hundredths);
}

Console ProcessConsole() {
  Console console;
  console.out = &std::cout;
  console.err = &std::cerr;
  console.err_is_tty = ::isatty(STDERR_FILENO) == 1;
  console.getenv = [](const std::string& name) -> std::optional<std::string> {
    const char* value = std::getenv(name.c_str());
    if (value == nullptr) return std::nullopt;
    return std::string(value);
  };
  return console;
}

absl::StatusOr<CommandLine> ParseCommandLine(const std::vector<std::string>& args,
                                             const GetEnv& getenv) {
  Flags global;
  AddGlobalFlags(&global, getenv);
  std::vector<char*> argv = Argv(args);
  absl::StatusOr<int> command_at = global.ParsePrefix(static_cast<int>(args.size()), argv.data());
  if (!command_at.ok()) return UsageError(command_at.status().message());
  CommandLine line;
  line.global.server = global.Get("server");
  line.global.token_file = global.Get("token-file");
  line.global.tls_ca = global.Get("tls-ca");
  if (global.IsSet("actor")) {
    MD_ASSIGN_OR_RETURN(line.global.actor, ValidateActor(global.Get("actor")));
  }
  line.global.json = global.GetBool("json");
  line.global.help = global.GetBool("help");
  line.command_args.assign(args.begin() + *command_at, args.end());
  return line;
}

int RunCtl(const std::vector<std::string>& args, const Console& console) {
  constexpr absl::string_view kMainHint = "Run `modeldistctl --help` for usage.";
  absl::StatusOr<CommandLine> line = ParseCommandLine(args, console.getenv);
  if (!line.ok()) return Fail(console, line.status(), kMainHint);
  std::vector<std::string>& command_args = line->command_args;
  if (!command_args.empty() && command_args[0] == "help") {
    // `modeldistctl help [COMMAND]` is `modeldistctl [COMMAND] --help`.
    command_args.erase(command_args.begin());
    if (command_args.empty()) line->global.help = true;
    command_args.resize(std::min<size_t>(command_args.size(), 1));
    if (!command_args.empty()) command_args.push_back("--help");
  }
  if (command_args.empty()) {
    if (line->global.help) {
      *console.out << MainHelp(console.getenv);
      return kExitOk;
    }
    return Fail(console, UsageError("no command given"), kMainHint);
  }
  const Command* command = FindCommand(command_args[0]);
  if (command == nullptr) {
    return Fail(console, UsageError(absl::StrCat("unknown command \"", command_args[0], "\"")),
                kMainHint);
  }
  Flags flags;
  command->add_flags(&flags);
  flags.AddBool("help", "show this help");
  std::string hint = absl::StrCat("Run `modeldistctl ", command->name, " --help` for usage.");
  std::vector<char*> argv = Argv(command_args);
  if (absl::Status parsed = flags.Parse(static_cast<int>(command_args.size()), argv.data(), 1);
      !parsed.ok()) {
    return Fail(console, UsageError(absl::StrCat(command->name, ": ", parsed.message())), hint);
  }
  if (flags.GetBool("help") || line->global.help) {
    *console.out << CommandHelp(*command, flags);
    return kExitOk;
  }
  Invocation invocation(line->global, console);
  absl::Status status = command->run(invocation, flags);
  if (!status.ok()) return Fail(console, status, hint);
  return kExitOk;
}

}  // namespace modeldist::ctl
