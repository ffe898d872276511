#include "client/modeldistctl/commands.h"

#include <unistd.h>

#include <cstdlib>
#include <iostream>
#include <memory>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/time/time.h"
#include "client/modeldistctl/enums.h"
#include "client/modeldistctl/errors.h"
#include "client/modeldistctl/progress.h"
#include "client/modeldistctl/publish.h"
#include "client/modeldistctl/registry_client.h"
#include "common/ed25519.h"
#include "common/flags.h"
#include "common/names.h"
#include "common/status.h"
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

  // The registry client, created on first use: reading the token and building the channel
  // are the first things that can fail for a reason outside the command's own arguments.
  absl::StatusOr<RegistryClient*> Client() {
    if (!client_) {
      MD_ASSIGN_OR_RETURN(std::string token, LoadAdminToken(global_.token_file, console_.getenv));
      MD_ASSIGN_OR_RETURN(std::shared_ptr<grpc::Channel> channel,
                          CreateRegistryChannel(global_.server, global_.tls_ca));
      client_ = std::make_unique<RegistryClient>(std::move(channel), std::move(token));
    }
    return client_.get();
  }

 private:
  GlobalOptions global_;
  const Console& console_;
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
  return absl::StrFormat("{\"resumedFrom\":%d,\"bytesSent\":%d,\"alreadyComplete\":%s}",
                         upload.resumed_from, upload.bytes_sent,
                         upload.already_complete ? "true" : "false");
}

// How the bytes of one artifact got to the server, for the summary.
std::string HowUploaded(const PublishResult& result, const PublishedArtifact& a) {
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
        "\"sizeBytes\":%d,\"upload\":%s}",
        PlatformName(a.spec.platform), ArchName(a.spec.arch), FormatName(a.spec.format),
        JsonQuote(a.spec.file), a.digest, a.file.size, UploadJson(a.upload)));
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
      "{\"version\":%s,\"tierBinding\":%s,\"artifacts\":[%s],\"alreadyPublished\":%s%s}\n", version,
      binding, absl::StrJoin(artifacts, ","), result.was_published ? "true" : "false", legacy);
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
  MD_RETURN_IF_ERROR(ValidatePublishSpec(spec));
  MD_ASSIGN_OR_RETURN(RegistryClient * client, inv.Client());

  PublishOptions options;
  options.log = &inv.err();
  options.show_progress = inv.err_is_tty();
  PublishResult result;
  absl::Status status = Publish(*client, spec, options, &result);
  if (!status.ok()) {
    if (result.BytesSent() > 0 || result.version_created) {
      inv.err() << "the draft and the bytes sent are kept: run the same command again to resume\n";
    }
    return status;
  }

  if (WantJson(inv, flags)) return PrintPublishJson(inv, result);
  if (result.artifacts.size() == 1) {
    // One line, as before several files could be published at once.
    const PublishedArtifact& a = result.artifacts[0];
    inv.out() << "published " << result.version.name() << " digest " << a.digest << " size "
              << a.file.size << " (" << FormatBytes(a.file.size) << ") tier "
              << result.binding.tier() << "/" << result.binding.channel() << " sequence "
              << result.binding.sequence() << " (" << HowUploaded(result, a) << ")\n";
    return absl::OkStatus();
  }
  // A head line, then one indented line per artifact, in the order given.
  inv.out() << "published " << result.version.name() << " with " << result.artifacts.size()
            << " artifacts tier " << result.binding.tier() << "/" << result.binding.channel()
            << " sequence " << result.binding.sequence() << "\n";
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

// --- keys ------------------------------------------------------------------------------------

void KeysFlags(Flags* f) {
  f->Add("out", "FILE", "", "where to write the private key (PKCS#8 PEM, mode 0600)");
  f->AddBool("json", "print the key id and public key as JSON");
}

absl::Status RunKeys(Invocation& inv, const Flags& flags) {
  const auto& args = flags.positional();
  if (args.size() != 1 || args[0] != "generate") {
    return UsageError("the only keys command is: keys generate --out FILE");
  }
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

// --- Dispatch --------------------------------------------------------------------------------

const Command kCommands[] = {
    {"publish",
     "publish --model M --version V --tier T [--channel C] [--description TEXT]\n"
     "           PLATFORM/ARCH/FORMAT=FILE...\n"
     "   or: modeldistctl [global flags] publish --model M --version V --platform P --arch A\n"
     "           --format F --tier T [--channel C] [--description TEXT] FILE",
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
    {"keys", "keys generate --out FILE",
     "generate an Ed25519 manifest signing key for modeldist-server --signing-key",
     "modeldistctl keys generate --out /etc/modeldist/signing.pem", KeysFlags, RunKeys},
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
  f->AddBool("json", "print results as JSON (list, show, publish, set-tier, yank, keys)");
  f->AddBool("help", "show this help");
}

std::string MainHelp(const GetEnv& getenv) {
  Flags global;
  AddGlobalFlags(&global, getenv);
  std::string out =
      "modeldistctl: the admin CLI of a modeldist server (RegistryService).\n\n"
      "usage: modeldistctl [--server HOST:PORT] [--token-file FILE] [--tls-ca FILE] [--json] "
      "COMMAND [args]\n\ncommands:\n";
  for (const Command& c : kCommands)
    absl::StrAppend(&out, absl::StrFormat("  %-9s %s\n", c.name, c.summary));
  absl::StrAppend(&out, "\nglobal flags (before the command):\n", global.Help(), "\nexamples:\n");
  for (const Command& c : kCommands) absl::StrAppend(&out, "  ", c.example, "\n");
  absl::StrAppend(&out,
                  "\nexit codes: 0 ok, 1 usage error, 2 server/RPC error, 3 local file error.\n"
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
