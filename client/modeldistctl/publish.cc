#include "client/modeldistctl/publish.h"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <tuple>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/time.h"
#include "client/modeldistctl/enums.h"
#include "client/modeldistctl/errors.h"
#include "client/modeldistctl/progress.h"
#include "common/file_util.h"
#include "common/flags.h"
#include "common/names.h"
#include "common/status.h"

namespace modeldist::ctl {
namespace {

// A usage error that reads like the flag the user typed.
absl::Status CheckId(absl::string_view flag, absl::string_view id) {
  absl::Status status = ValidateId(absl::StrCat("--", flag), id);
  return status.ok() ? status : UsageError(status.message());
}

// The (platform, arch, format) a version holds at most one artifact for.
using Target = std::tuple<v1::Platform, v1::Arch, v1::Format>;

Target TargetOf(const v1::Artifact& a) { return {a.platform(), a.arch(), a.format()}; }
Target TargetOf(const PublishArtifact& a) { return {a.platform, a.arch, a.format}; }

std::string TargetNameOf(const v1::Artifact& a) {
  return TargetName(a.platform(), a.arch(), a.format());
}

std::string DescribeContent(const v1::Artifact& a) {
  return absl::StrCat(a.digest(), " (", a.size_bytes(), " bytes)");
}

std::string DescribeArtifact(const v1::Artifact& a) {
  return absl::StrCat(TargetNameOf(a), " ", DescribeContent(a));
}

// Whether two declarations of one artifact ask the same of a device. Compared as the server
// means them, not byte for byte, so that a server that normalizes (absent constraints as
// empty ones, unpacked 0 as the file size, accelerators in its own order) still matches.
bool SameRequirements(const v1::Artifact& a, const v1::Artifact& b) {
  auto effective_unpacked = [](const v1::Artifact& x) {
    return x.unpacked_size_bytes() == 0 ? x.size_bytes() : x.unpacked_size_bytes();
  };
  auto accelerators = [](const v1::Artifact& x) {
    const auto& list = x.constraints().required_accelerators();
    return std::set<int>(list.begin(), list.end());
  };
  return effective_unpacked(a) == effective_unpacked(b) &&
         a.constraints().min_os_version() == b.constraints().min_os_version() &&
         a.constraints().min_ram_bytes() == b.constraints().min_ram_bytes() &&
         accelerators(a) == accelerators(b);
}

// How the content (digest and size) declared for a target differs from the file's, or "".
std::string ContentDifference(const v1::Artifact& declared, const v1::Artifact& wanted) {
  if (declared.digest() == wanted.digest() && declared.size_bytes() == wanted.size_bytes()) {
    return "";
  }
  return absl::StrCat(TargetNameOf(wanted), " is ", DescribeContent(declared), " there but ",
                      DescribeContent(wanted), " here");
}

// What an existing version declares that differs from `wanted`, one phrase per target;
// empty when the two sets are equal.
std::vector<std::string> ArtifactDifferences(const v1::Version& existing,
                                             const std::vector<v1::Artifact>& wanted) {
  std::map<Target, const v1::Artifact*> declared;
  for (const v1::Artifact& a : existing.artifacts()) declared[TargetOf(a)] = &a;
  std::vector<std::string> differences;
  for (const v1::Artifact& w : wanted) {
    auto it = declared.find(TargetOf(w));
    if (it == declared.end()) {
      differences.push_back(absl::StrCat("it does not declare ", DescribeArtifact(w)));
      continue;
    }
    const v1::Artifact& d = *it->second;
    if (std::string content = ContentDifference(d, w); !content.empty()) {
      differences.push_back(std::move(content));
    } else if (!SameRequirements(d, w)) {
      // The same bytes with other constraints would be served to other devices than asked.
      differences.push_back(absl::StrCat(TargetNameOf(w), " has ", DescribeRequirements(d),
                                         " there but ", DescribeRequirements(w), " here"));
    }
    declared.erase(it);
  }
  // What is left was not asked for; in declaration order, as `show` lists them.
  for (const v1::Artifact& a : existing.artifacts()) {
    if (declared.count(TargetOf(a)) > 0) {
      differences.push_back(absl::StrCat("it also declares ", DescribeArtifact(a)));
    }
  }
  return differences;
}

// The version exists with other artifacts than this run's; `differences` says how.
absl::Status OtherArtifactsError(const v1::Version& existing,
                                 const std::vector<std::string>& differences) {
  return absl::AlreadyExistsError(
      absl::StrCat(existing.name(), " already exists (", StateName(existing.state()),
                   ") with other artifacts than this run's: ", absl::StrJoin(differences, "; "),
                   ". Publish under a new --version"));
}

absl::Status YankedError(const v1::Version& existing) {
  return absl::AlreadyExistsError(
      absl::StrCat(existing.name(), " exists and was yanked; publish under a new --version"));
}

// Step 3 when the version exists: decides whether this run may continue with it. Only the
// exact set of artifacts will do, since a version cannot gain or lose one after creation.
absl::Status CheckExistingVersion(const v1::Version& existing,
                                  const std::vector<v1::Artifact>& wanted, PublishResult* result) {
  std::vector<std::string> differences = ArtifactDifferences(existing, wanted);
  if (differences.empty() && existing.state() == v1::Version::DRAFT) return absl::OkStatus();
  if (differences.empty() && existing.state() == v1::Version::PUBLISHED) {
    result->was_published = true;
    return absl::OkStatus();
  }
  if (existing.state() == v1::Version::YANKED) return YankedError(existing);
  return OtherArtifactsError(existing, differences);
}

// The last component of `path`, for progress labels.
absl::string_view Basename(absl::string_view path) {
  size_t slash = path.find_last_of('/');
  return slash == absl::string_view::npos ? path : path.substr(slash + 1);
}

// Whether `arg` reads as PLATFORM/ARCH/FORMAT=FILE rather than as a file name: used only to
// detect the two publish forms being mixed, so it needs just a known platform first.
bool LooksLikeTargetArg(absl::string_view arg) {
  size_t eq = arg.find('=');
  if (eq == absl::string_view::npos) return false;
  std::vector<absl::string_view> parts = absl::StrSplit(arg.substr(0, eq), '/');
  return parts.size() == 3 && ParsePlatform("", parts[0]).ok();
}

absl::Status CheckDistinctTargets(const std::vector<PublishArtifact>& artifacts) {
  std::map<Target, const PublishArtifact*> seen;
  for (const PublishArtifact& a : artifacts) {
    auto [it, inserted] = seen.emplace(TargetOf(a), &a);
    if (!inserted) {
      return UsageError(absl::StrCat(TargetName(a.platform, a.arch, a.format), " is given twice (",
                                     it->second->file, " and ", a.file,
                                     "); a version holds one file per platform/arch/format"));
    }
  }
  return absl::OkStatus();
}

// Dotted numbers as the server compares them (e.g. 14 or 14.4.1): no empty part, at most 32
// bytes.
bool IsDottedVersion(absl::string_view text) {
  if (text.empty() || text.size() > 32) return false;
  for (absl::string_view part : absl::StrSplit(text, '.')) {
    if (part.empty() || part.find_first_not_of("0123456789") != absl::string_view::npos) {
      return false;
    }
  }
  return true;
}

// A size flag: at least 1 byte, with ParseSize's suffixes.
absl::StatusOr<int64_t> ParsePositiveSize(absl::string_view flag, const std::string& text) {
  absl::StatusOr<int64_t> size = ParseSize(text);
  if (!size.ok() || *size < 1) {
    return UsageError(absl::StrCat("--", flag, ": \"", text,
                                   "\" is not a size of at least 1 byte (e.g. 8589934592, 8GiB, "
                                   "512M; suffixes K, M, G, KiB, MiB, GiB are binary)"));
  }
  return size;
}

}  // namespace

absl::Status ParsePublishConstraints(const std::string& min_os, const std::string& min_ram,
                                     const std::string& required_accelerators,
                                     const std::string& unpacked_size, PublishSpec* spec) {
  spec->constraints.Clear();
  spec->unpacked_size_bytes = 0;
  if (!min_os.empty()) {
    if (!IsDottedVersion(min_os)) {
      return UsageError(
          absl::StrCat("--min-os: \"", min_os, "\" is not a dotted version like 14.0 or 14.4.1"));
    }
    spec->constraints.set_min_os_version(min_os);
  }
  if (!min_ram.empty()) {
    MD_ASSIGN_OR_RETURN(int64_t bytes, ParsePositiveSize("min-ram", min_ram));
    spec->constraints.set_min_ram_bytes(bytes);
  }
  if (!required_accelerators.empty()) {
    MD_ASSIGN_OR_RETURN(std::vector<v1::Accelerator> accelerators,
                        ParseAccelerators("requires", required_accelerators));
    for (v1::Accelerator a : accelerators) spec->constraints.add_required_accelerators(a);
  }
  if (!unpacked_size.empty()) {
    MD_ASSIGN_OR_RETURN(spec->unpacked_size_bytes,
                        ParsePositiveSize("unpacked-size", unpacked_size));
  }
  return absl::OkStatus();
}

std::string DescribeRequirements(const v1::Artifact& artifact) {
  const v1::ArtifactConstraints& c = artifact.constraints();
  std::vector<std::string> parts;
  if (!c.min_os_version().empty()) parts.push_back(absl::StrCat("min OS ", c.min_os_version()));
  if (c.min_ram_bytes() > 0) {
    parts.push_back(absl::StrCat("min RAM ", c.min_ram_bytes(), " bytes"));
  }
  if (c.required_accelerators_size() > 0) {
    std::vector<std::string> names;
    for (int a : c.required_accelerators()) {
      names.push_back(AcceleratorName(static_cast<v1::Accelerator>(a)));
    }
    parts.push_back(absl::StrCat("needs ", absl::StrJoin(names, "+")));
  }
  if (artifact.unpacked_size_bytes() > 0) {
    parts.push_back(absl::StrCat("unpacked ", artifact.unpacked_size_bytes(), " bytes"));
  }
  if (parts.empty()) return "no constraints";
  return absl::StrJoin(parts, ", ");
}

int64_t PublishResult::BytesSent() const {
  int64_t sent = 0;
  for (const PublishedArtifact& a : artifacts) sent += a.upload.bytes_sent;
  return sent;
}

std::string TargetName(v1::Platform platform, v1::Arch arch, v1::Format format) {
  return absl::StrCat(PlatformName(platform), "/", ArchName(arch), "/", FormatName(format));
}

absl::StatusOr<PublishArtifact> ParseArtifactArg(absl::string_view arg) {
  // Every message quotes the argument: with several of them, the user must see which.
  auto bad = [arg](absl::string_view why) {
    return UsageError(absl::StrCat("\"", arg, "\": ", why));
  };
  size_t eq = arg.find('=');
  if (eq == absl::string_view::npos) {
    return bad(
        "missing '=': expected PLATFORM/ARCH/FORMAT=FILE, e.g. macos/arm64/coreml-zip=model.zip "
        "(or give --platform, --arch and --format with a single FILE)");
  }
  std::vector<absl::string_view> parts = absl::StrSplit(arg.substr(0, eq), '/');
  if (parts.size() != 3) {
    return bad("expected PLATFORM/ARCH/FORMAT before '=', e.g. macos/arm64/coreml-zip");
  }
  PublishArtifact artifact;
  artifact.file = std::string(arg.substr(eq + 1));
  if (artifact.file.empty()) return bad("no FILE after '='");
  absl::StatusOr<v1::Platform> platform = ParsePlatform("", parts[0]);
  if (!platform.ok()) return bad(platform.status().message());
  absl::StatusOr<v1::Arch> arch = ParseArch("", parts[1]);
  if (!arch.ok()) return bad(arch.status().message());
  absl::StatusOr<v1::Format> format = ParseFormat("", parts[2]);
  if (!format.ok()) return bad(format.status().message());
  artifact.platform = *platform;
  artifact.arch = *arch;
  artifact.format = *format;
  return artifact;
}

absl::StatusOr<std::vector<PublishArtifact>> ParsePublishArtifacts(
    const std::string& platform, const std::string& arch, const std::string& format,
    const std::vector<std::string>& args) {
  std::vector<PublishArtifact> artifacts;
  if (!platform.empty() || !arch.empty() || !format.empty()) {
    for (const std::string& arg : args) {
      if (LooksLikeTargetArg(arg)) {
        return UsageError(absl::StrCat(
            "\"", arg,
            "\" is a PLATFORM/ARCH/FORMAT=FILE argument, which cannot be mixed with --platform, "
            "--arch and --format (those describe a single FILE): use one form or the other"));
      }
    }
    if (platform.empty()) return UsageError("--platform is required");
    if (arch.empty()) return UsageError("--arch is required");
    if (format.empty()) return UsageError("--format is required");
    if (args.size() != 1) {
      return UsageError(
          "publish needs exactly one FILE with --platform, --arch and --format; for several "
          "files, drop those flags and give each file as PLATFORM/ARCH/FORMAT=FILE");
    }
    PublishArtifact artifact;
    MD_ASSIGN_OR_RETURN(artifact.platform, ParsePlatform("platform", platform));
    MD_ASSIGN_OR_RETURN(artifact.arch, ParseArch("arch", arch));
    MD_ASSIGN_OR_RETURN(artifact.format, ParseFormat("format", format));
    artifact.file = args[0];
    artifacts.push_back(std::move(artifact));
    return artifacts;
  }
  if (args.empty()) {
    return UsageError(
        "publish needs the files to upload, each as PLATFORM/ARCH/FORMAT=FILE (e.g. "
        "macos/arm64/coreml-zip=model.zip), or --platform, --arch and --format with one FILE");
  }
  for (const std::string& arg : args) {
    MD_ASSIGN_OR_RETURN(PublishArtifact artifact, ParseArtifactArg(arg));
    artifacts.push_back(std::move(artifact));
  }
  MD_RETURN_IF_ERROR(CheckDistinctTargets(artifacts));
  return artifacts;
}

absl::Status ValidatePublishSpec(const PublishSpec& spec) {
  MD_RETURN_IF_ERROR(CheckId("model", spec.model_id));
  MD_RETURN_IF_ERROR(CheckId("version", spec.version_id));
  MD_RETURN_IF_ERROR(CheckId("tier", spec.tier));
  if (!spec.channel.empty()) MD_RETURN_IF_ERROR(CheckId("channel", spec.channel));
  if (spec.artifacts.empty()) return UsageError("publish needs at least one FILE to upload");
  for (size_t i = 0; i < spec.artifacts.size(); ++i) {
    const PublishArtifact& a = spec.artifacts[i];
    // A single artifact came from the flags, so name them; several came from arguments.
    auto missing = [&](absl::string_view what) {
      if (spec.artifacts.size() == 1) return UsageError(absl::StrCat("--", what, " is required"));
      return UsageError(absl::StrCat("artifact ", i + 1, " (", a.file.empty() ? "no file" : a.file,
                                     ") has no ", what));
    };
    if (a.platform == v1::PLATFORM_UNSPECIFIED) return missing("platform");
    if (a.arch == v1::ARCH_UNSPECIFIED) return missing("arch");
    if (a.format == v1::FORMAT_UNSPECIFIED) return missing("format");
    if (a.file.empty()) return UsageError("publish needs the FILE to upload");
  }
  MD_RETURN_IF_ERROR(CheckDistinctTargets(spec.artifacts));
  if (!spec.constraints.min_os_version().empty() &&
      !IsDottedVersion(spec.constraints.min_os_version())) {
    return UsageError("--min-os must be a dotted version like 14.0");
  }
  if (spec.constraints.min_ram_bytes() < 0) return UsageError("--min-ram must not be negative");
  for (int a : spec.constraints.required_accelerators()) {
    if (a == v1::ACCELERATOR_UNSPECIFIED || !v1::Accelerator_IsValid(a)) {
      return UsageError(absl::StrCat("--requires has an unknown accelerator ", a));
    }
  }
  if (spec.unpacked_size_bytes < 0) return UsageError("--unpacked-size must not be negative");
  if (spec.description.size() > 1024) {
    return UsageError("--description is longer than 1024 bytes");
  }
  return absl::OkStatus();
}

namespace {

// Reads `file` to its end for its digest alone, with a progress line labelled `label`.
absl::StatusOr<FileDigest> HashToEnd(HashingFileReader& file, std::ostream* log, bool draw,
                                     const std::string& label) {
  ProgressMeter meter(log, draw, label, file.position(), file.size());
  MD_RETURN_IF_ERROR(file.ReadToEnd([&meter](int64_t position) { meter.Update(position); }));
  MD_RETURN_IF_ERROR(file.CheckUnchanged());
  return FileDigest{file.DigestHex(), file.position()};
}

// The declared artifact of `version` for the target of `a`, or null.
const v1::Artifact* DeclaredFor(const v1::Version& version, const PublishArtifact& a) {
  for (const v1::Artifact& declared : version.artifacts()) {
    if (TargetOf(declared) == TargetOf(a)) return &declared;
  }
  return nullptr;
}

// Whether this run must send the bytes of `file`: always for a new version; for an existing
// one (DRAFT or PUBLISHED) only when it declares this target, the server does not hold the
// bytes (a DRAFT not uploaded to yet, or a PUBLISHED version whose blob was lost) and the
// sizes agree (else the file cannot be what it declares and hashing it is enough to say so).
// Otherwise the file is only hashed, to compare it with what the version declares.
bool NeedsUpload(const absl::StatusOr<v1::Version>& existing, const PublishArtifact& a,
                 const HashingFileReader& file) {
  if (!existing.ok()) return true;
  const v1::Artifact* declared = DeclaredFor(*existing, a);
  return declared != nullptr && !declared->uploaded() &&
         (file.is_pipe() || declared->size_bytes() == file.size());
}

// A line for people on `log`, when there is one.
void Note(std::ostream* log, absl::string_view text) {
  if (log != nullptr) *log << text << "\n";
}

}  // namespace

std::string UploadIdFor(const HashingFileReader& file) {
  Sha256 hash;
  if (file.is_pipe()) {
    // A pipe cannot be read again, so its upload never resumes: a fresh id every time.
    std::random_device random;
    for (int i = 0; i < 8; ++i) {
      const uint32_t word = random();
      hash.Update(&word, sizeof word);
    }
  } else {
    char host[256] = {};
    ::gethostname(host, sizeof host - 1);
    const struct stat& st = file.opened_stat();
    hash.Update(absl::StrCat("modeldistctl-upload-v1", std::string(1, '\0'), host,
                             std::string(1, '\0'), st.st_dev, ":", st.st_ino, ":", st.st_size, ":",
                             st.st_mtim.tv_sec, ".", st.st_mtim.tv_nsec));
  }
  return absl::StrCat("ctl-", hash.FinishHex().substr(0, 40));
}

namespace {

// Step 3 for a file whose bytes must go up: uploads it in its session, hashing it in the same
// pass, with a progress line labelled `label` and notes on options.log. `check_digest` (see
// UploadOptions) may be empty.
absl::Status UploadArtifact(RegistryClient& client, const PublishOptions& options,
                            const std::string& label, HashingFileReader& file,
                            std::function<absl::Status(const FileDigest&)> check_digest,
                            PublishedArtifact* done) {
  std::ostream* log = options.log;
  std::unique_ptr<ProgressMeter> meter;
  UploadOptions upload_options = options.upload;
  upload_options.check_digest = std::move(check_digest);
  upload_options.on_progress = [&, caller = options.upload.on_progress](int64_t position) {
    if (!meter) {
      meter = std::make_unique<ProgressMeter>(log, options.show_progress && log != nullptr, label,
                                              position, file.size());
    }
    meter->Update(position);
    if (caller) caller(position);
  };
  upload_options.on_retry = [&](const absl::Status& failure, int retry, absl::Duration wait) {
    if (meter) meter->Finish();
    Note(log, absl::StrCat("upload of ", done->spec.file, " interrupted (", DescribeError(failure),
                           "); retry ", retry, " in ",
                           absl::FormatDuration(absl::Trunc(wait, absl::Milliseconds(1)))));
  };
  ArtifactUploader uploader(&client, std::move(upload_options));
  absl::StatusOr<FileDigest> uploaded = uploader.Upload(file, UploadIdFor(file), &done->upload);
  meter.reset();
  MD_RETURN_IF_ERROR(uploaded.status());
  done->file = *std::move(uploaded);
  done->digest = FormatDigest(done->file.hex);
  if (done->upload.resumed_from > 0 && !done->upload.already_complete) {
    Note(log, absl::StrCat("resumed the upload of ", done->spec.file, " at byte ",
                           done->upload.resumed_from));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status Publish(RegistryClient& client, const PublishSpec& spec, const PublishOptions& options,
                     PublishResult* result) {
  MD_RETURN_IF_ERROR(ValidatePublishSpec(spec));
  std::ostream* log = options.log;
  auto note = [log](absl::string_view text) { Note(log, text); };
  const bool draw = options.show_progress && log != nullptr;
  // With several files, the progress line says which one it is about.
  // The single-file labels are padded so that both lines start their numbers in one column.
  auto label = [&spec](absl::string_view verb, const PublishArtifact& a) {
    if (spec.artifacts.size() == 1) return absl::StrFormat("%-9s", verb);
    return absl::StrCat(verb, " ", Basename(a.file));
  };

  // 1. Open every file before any rpc, so that a missing one changes nothing on the server.
  // Nothing is read yet: each file is read once, in step 3.
  result->artifacts.clear();
  std::vector<std::optional<HashingFileReader>> files;  // none for an import
  for (const PublishArtifact& a : spec.artifacts) {
    result->artifacts.emplace_back().spec = a;
    if (a.import.has_value()) {
      files.emplace_back();
      continue;
    }
    MD_ASSIGN_OR_RETURN(HashingFileReader file, HashingFileReader::Open(a.file));
    files.emplace_back(std::move(file));
  }
  const std::string model_name = ModelName(spec.model_id);
  const std::string version_name = VersionName{spec.model_id, spec.version_id}.ToString();

  // 2. Model.
  v1::CreateModelRequest create_model;
  create_model.set_model_id(spec.model_id);
  create_model.mutable_model()->set_description(spec.description);
  for (const std::string& origin : spec.model_replicate_to) {
    create_model.mutable_model()->add_replicate_to(origin);
  }
  absl::StatusOr<v1::Model> model = client.CreateModel(create_model);
  if (model.ok()) {
    result->model_created = true;
  } else if (model.status().code() == absl::StatusCode::kAlreadyExists) {
    if (!spec.description.empty()) note(absl::StrCat(model_name, " exists; --description unused"));
    if (!spec.model_replicate_to.empty()) {
      note(absl::StrCat(model_name, " exists; --model-replicate-to unused"));
    }
  } else {
    return model.status();
  }

  // 3. The files, one after the other. A version is declared with its digests, so a new one
  // is created only after its files are uploaded; each upload hashes the file as it sends it.
  v1::GetVersionRequest get_version;
  get_version.set_name(version_name);
  absl::StatusOr<v1::Version> existing = client.GetVersion(get_version);
  if (!existing.ok() && existing.status().code() != absl::StatusCode::kNotFound) {
    return existing.status();
  }
  if (existing.ok() && existing->state() == v1::Version::YANKED) return YankedError(*existing);
  for (size_t i = 0; i < files.size(); ++i) {
    PublishedArtifact& done = result->artifacts[i];
    if (done.spec.import.has_value()) {
      // Compared with the declaration in step 4, like a hashed file.
      done.file = done.spec.import->expected;
      done.digest = FormatDigest(done.file.hex);
      const v1::Artifact* declared = existing.ok() ? DeclaredFor(*existing, done.spec) : nullptr;
      if (existing.ok() &&
          (declared == nullptr || declared->uploaded() || declared->digest() != done.digest)) {
        continue;
      }
      MD_RETURN_IF_ERROR(
          ImportArtifact(client, *done.spec.import, label("importing", done.spec), log, draw));
      done.imported = true;
      done.restored = existing.ok() && existing->state() == v1::Version::PUBLISHED;
      continue;
    }
    HashingFileReader& file = *files[i];
    if (!NeedsUpload(existing, done.spec, file)) {
      MD_ASSIGN_OR_RETURN(done.file, HashToEnd(file, log, draw, label("hashing", done.spec)));
      done.digest = FormatDigest(done.file.hex);
      continue;
    }
    if (!existing.ok()) {
      MD_RETURN_IF_ERROR(
          UploadArtifact(client, options, label("uploading", done.spec), file, nullptr, &done));
      continue;
    }
    // The version declares these bytes and the server lacks them: only the declared bytes may
    // go up, so a file that hashes otherwise is refused before finish_write (nothing stored),
    // with the error a hashed-only file would get in step 4.
    const v1::Artifact& declared = *DeclaredFor(*existing, done.spec);
    auto is_declared = [&](const FileDigest& got) -> absl::Status {
      v1::Artifact here = declared;
      here.set_digest(FormatDigest(got.hex));
      here.set_size_bytes(got.size);
      std::string difference = ContentDifference(declared, here);
      return difference.empty() ? absl::OkStatus() : OtherArtifactsError(*existing, {difference});
    };
    MD_RETURN_IF_ERROR(
        UploadArtifact(client, options, label("uploading", done.spec), file, is_declared, &done));
    if (existing->state() == v1::Version::PUBLISHED) {
      done.restored = true;
      note(absl::StrCat("restored bytes of ", done.digest, " (", done.spec.file,
                        "): ", version_name, " declares them but the server had lost them"));
    }
  }
  if (std::any_of(result->artifacts.begin(), result->artifacts.end(),
                  [](const PublishedArtifact& a) { return a.restored; })) {
    // What the server says now, so that the result shows the bytes as uploaded.
    MD_ASSIGN_OR_RETURN(existing, client.GetVersion(get_version));
  }

  // 4. Version.
  std::vector<v1::Artifact> artifacts;
  for (const PublishedArtifact& done : result->artifacts) {
    v1::Artifact& artifact = artifacts.emplace_back();
    artifact.set_platform(done.spec.platform);
    artifact.set_arch(done.spec.arch);
    artifact.set_format(done.spec.format);
    artifact.set_digest(done.digest);
    artifact.set_size_bytes(done.file.size);
    // Left unset when not asked for, so that a publish without constraints sends what it
    // always sent.
    if (spec.constraints.ByteSizeLong() > 0) *artifact.mutable_constraints() = spec.constraints;
    artifact.set_unpacked_size_bytes(spec.unpacked_size_bytes);
  }
  absl::StatusOr<v1::Version> version = existing;
  if (!existing.ok()) {
    v1::CreateVersionRequest create_version;
    create_version.set_parent(model_name);
    create_version.set_version_id(spec.version_id);
    for (const v1::Artifact& artifact : artifacts) *create_version.add_artifacts() = artifact;
    for (const std::string& origin : spec.replicate_to) create_version.add_replicate_to(origin);
    version = client.CreateVersion(create_version);
    if (version.ok()) {
      result->version_created = true;
      // A server from before artifact constraints drops them without an error; the version
      // is created either way, but the user should know its devices will not be filtered.
      const bool declared_requirements =
          spec.constraints.ByteSizeLong() > 0 || spec.unpacked_size_bytes > 0;
      if (declared_requirements && version->artifacts_size() > 0) {
        if (std::vector<std::string> dropped = ArtifactDifferences(*version, artifacts);
            !dropped.empty()) {
          note(absl::StrCat("warning: the server did not keep what this run declared (",
                            absl::StrJoin(dropped, "; "),
                            "); it may not support artifact constraints"));
        }
      }
    } else if (version.status().code() == absl::StatusCode::kAlreadyExists) {
      // Created by someone else since step 3.
      version = client.GetVersion(get_version);
    }
    if (!version.ok()) return version.status();
  }
  if (!result->version_created) {
    MD_RETURN_IF_ERROR(CheckExistingVersion(*version, artifacts, result));
    note(result->was_published ? absl::StrCat(version_name, " is already published with ",
                                              artifacts.size() == 1 ? "this file" : "these files")
                               : absl::StrCat("resuming draft ", version_name));
  }
  result->version = *std::move(version);

  // 5. Publish.
  if (!result->was_published) {
    v1::PublishVersionRequest publish;
    publish.set_name(version_name);
    if (spec.release.has_value()) *publish.mutable_release() = *spec.release;
    MD_ASSIGN_OR_RETURN(result->version, client.PublishVersion(publish));
  } else if (spec.release.has_value() && !result->version.released()) {
    v1::AttachReleaseRequest attach;
    attach.set_name(version_name);
    *attach.mutable_release() = *spec.release;
    MD_ASSIGN_OR_RETURN(result->version, client.AttachRelease(attach));
    note(absl::StrCat("attached the release statement to ", version_name));
  }

  // 6. Tier. A version published before this run may be bound already: binding it again
  // would change nothing devices see, yet bump the tier's sequence and add an audit entry.
  if (result->was_published) {
    absl::StatusOr<v1::TierBinding> bound = client.GetTier(spec.tier, spec.channel);
    if (!bound.ok() && bound.status().code() != absl::StatusCode::kNotFound) {
      return bound.status();
    }
    if (bound.ok() && bound->version() == version_name) {
      result->binding = *std::move(bound);
      result->tier_already_bound = true;
      return absl::OkStatus();
    }
  }
  v1::SetTierRequest set_tier;
  set_tier.set_tier(spec.tier);
  set_tier.set_channel(spec.channel);
  set_tier.set_version(version_name);
  MD_ASSIGN_OR_RETURN(result->binding, client.SetTier(set_tier));
  return absl::OkStatus();
}

}  // namespace modeldist::ctl
