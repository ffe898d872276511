#include <string>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "client/modeldistctl/command_families.h"
#include "client/modeldistctl/command_util.h"
#include "client/modeldistctl/enums.h"
#include "client/modeldistctl/errors.h"
#include "client/modeldistctl/import.h"
#include "client/modeldistctl/progress.h"
#include "client/modeldistctl/publish.h"
#include "client/modeldistctl/registry_client.h"
#include "client/modeldistctl/trust_files.h"
#include "common/json.h"
#include "common/names.h"
#include "common/status.h"

namespace modeldist::ctl {
namespace {

std::string UploadJson(const UploadStats& upload) {
  return absl::StrFormat(
      "{\"resumedFrom\":%d,\"bytesSent\":%d,\"alreadyComplete\":%s,\"bytesRead\":%d}",
      upload.resumed_from, upload.bytes_sent, upload.already_complete ? "true" : "false",
      upload.bytes_read);
}

// How the bytes of one artifact got to the server, for the summary.
std::string HowUploaded(const PublishResult& result, const PublishedArtifact& a) {
  if (a.imported) return absl::StrCat("imported by the server from ", a.spec.file);
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
        "\"sizeBytes\":%d,\"upload\":%s,\"restored\":%s,\"imported\":%s}",
        PlatformName(a.spec.platform), ArchName(a.spec.arch), FormatName(a.spec.format),
        JsonQuote(a.spec.file), a.digest, a.file.size, UploadJson(a.upload),
        a.restored ? "true" : "false", a.imported ? "true" : "false"));
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

// "a, b" -> {"a", "b"}; the server checks the names (INVALID_REPLICATE_TO names the bad one).
std::vector<std::string> OriginList(absl::string_view text) {
  std::vector<std::string> out;
  for (absl::string_view item : absl::StrSplit(text, ',', absl::SkipWhitespace())) {
    out.emplace_back(absl::StripAsciiWhitespace(item));
  }
  return out;
}

}  // namespace

void PublishFlags(Flags* f) {
  f->Add("model", "M", "", "model id, e.g. llama-3.1-8b-instruct (created if missing)");
  f->Add("version", "V", "", "version id, e.g. 2026.11.0");
  f->Add("platform", "P", "", "macos|ios|linux|windows|android, for the single-FILE form");
  f->Add("arch", "A", "", "arm64|x86_64|any, with --platform");
  f->Add("format", "F", "", "coreml-zip|gguf|safetensors|onnx|tflite, with --platform");
  f->Add("tier", "T", "", "the tier to bind, e.g. llama8b");
  f->Add("channel", "C", std::string(kDefaultChannel), "the channel to bind");
  f->Add("description", "TEXT", "", "model description, used when the model is created");
  f->Add("replicate-to", "LIST", "",
         "origins to copy this version to, e.g. r2,backup (default: the model's choice, else "
         "every origin with `replicate`; see `modeldistctl origins list`)");
  f->Add("model-replicate-to", "LIST", "",
         "the model's default for --replicate-to, used when the model is created");
  // One set of constraints per command: every artifact gets the same (see publish.h).
  f->Add("min-os", "VERSION", "",
         "devices need at least this OS version, e.g. 14.0 (every artifact)");
  f->Add("min-ram", "BYTES", "", "devices need at least this much RAM, e.g. 8GiB (every artifact)");
  f->Add("requires", "LIST", "",
         "devices need all of these, from ane,metal,cuda,vulkan (every artifact)");
  f->Add("unpacked-size", "BYTES", "",
         "bytes on disk after activation, e.g. 2GiB (every artifact)");
  f->Add("import", "SOURCE", "",
         "instead of a FILE: bytes the server fetches itself, ORIGIN:KEY (an origin of the "
         "server) or an http(s) URL; needs --sha256 and --size");
  f->Add("sha256", "HEX", "", "with --import: the bytes' SHA-256");
  f->Add("size", "BYTES", "", "with --import: the bytes' size");
  f->AddBool("check",
             "only check the FILEs as the server will at publish (GGUF structure and metadata; "
             "CoreML zip package, Manifest.json and tokenizer files) and print what they hold; "
             "nothing is sent (exit 4: a file would be refused)");
  f->Add("require-file", "LIST", "",
         "with --check: file names a CoreML zip must hold (default: a tokenizer file)");
  f->Add("release", "REL", "",
         "the version's release statement (`modeldistctl release sign`), required when the "
         "trust root has release keys");
  f->AddBool("json", "print the result as JSON");
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
  spec.replicate_to = OriginList(flags.Get("replicate-to"));
  spec.model_replicate_to = OriginList(flags.Get("model-replicate-to"));
  if (flags.IsSet("import")) {
    if (!flags.positional().empty()) {
      return UsageError("--import takes the place of the FILE: give one or the other");
    }
    MD_ASSIGN_OR_RETURN(ImportFrom from, ParseImportFlags(flags.Get("import"), flags.Get("sha256"),
                                                          flags.Get("size")));
    // The single-artifact form, with a placeholder file that ParsePublishArtifacts checks.
    MD_ASSIGN_OR_RETURN(spec.artifacts,
                        ParsePublishArtifacts(flags.Get("platform"), flags.Get("arch"),
                                              flags.Get("format"), {ImportName(from)}));
    spec.artifacts[0].import = std::move(from);
  } else {
    if (flags.IsSet("sha256") || flags.IsSet("size")) {
      return UsageError("--sha256 and --size go with --import (a FILE is hashed as it is sent)");
    }
    MD_ASSIGN_OR_RETURN(spec.artifacts,
                        ParsePublishArtifacts(flags.Get("platform"), flags.Get("arch"),
                                              flags.Get("format"), flags.positional()));
  }
  MD_RETURN_IF_ERROR(ParsePublishConstraints(flags.Get("min-os"), flags.Get("min-ram"),
                                             flags.Get("requires"), flags.Get("unpacked-size"),
                                             &spec));
  MD_RETURN_IF_ERROR(ValidatePublishSpec(spec));
  if (const std::string path = flags.Get("release"); !path.empty()) {
    MD_ASSIGN_OR_RETURN(spec.release, ReadReleaseFile(path));
    MD_ASSIGN_OR_RETURN(v1::Release release, ReleaseOf(path, *spec.release));
    // Caught here, before gigabytes are uploaded for a publish the server would refuse.
    const std::string version = VersionName{spec.model_id, spec.version_id}.ToString();
    if (release.version() != version) {
      return UsageError(
          absl::StrCat("--release ", path, " releases ", release.version(), ", not ", version));
    }
  }
  if (flags.GetBool("check")) {
    if (flags.IsSet("import")) return UsageError("--check reads local FILEs; not with --import");
    std::vector<ModelFile> files;
    for (const PublishArtifact& a : spec.artifacts) files.push_back({a.file, a.format});
    return CheckModelFiles(inv, files, RequiredFiles(flags), WantJson(inv, flags));
  }
  if (flags.IsSet("require-file")) return UsageError("--require-file goes with --check");
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

}  // namespace modeldist::ctl
