#include "client/modeldistctl/publish.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <memory>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/time.h"
#include "client/modeldistctl/enums.h"
#include "client/modeldistctl/errors.h"
#include "client/modeldistctl/progress.h"
#include "common/file_util.h"
#include "common/names.h"
#include "common/status.h"

namespace modeldist::ctl {
namespace {

// A usage error that reads like the flag the user typed.
absl::Status CheckId(absl::string_view flag, absl::string_view id) {
  absl::Status status = ValidateId(absl::StrCat("--", flag), id);
  return status.ok() ? status : UsageError(status.message());
}

bool SameArtifact(const v1::Artifact& a, const v1::Artifact& b) {
  return a.platform() == b.platform() && a.arch() == b.arch() && a.format() == b.format() &&
         a.digest() == b.digest() && a.size_bytes() == b.size_bytes();
}

std::string DescribeArtifact(const v1::Artifact& a) {
  return absl::StrCat(PlatformName(a.platform()), "/", ArchName(a.arch()), " ",
                      FormatName(a.format()), " ", a.digest(), " (", a.size_bytes(), " bytes)");
}

// Step 3 when the version exists: decides whether this run may continue with it.
absl::Status CheckExistingVersion(const v1::Version& existing, const v1::Artifact& wanted,
                                  PublishResult* result) {
  bool declares = false;
  std::vector<std::string> declared;
  for (const v1::Artifact& a : existing.artifacts()) {
    declares = declares || SameArtifact(a, wanted);
    declared.push_back(DescribeArtifact(a));
  }
  if (declares && existing.state() == v1::Version::DRAFT) return absl::OkStatus();
  if (declares && existing.state() == v1::Version::PUBLISHED) {
    result->was_published = true;
    return absl::OkStatus();
  }
  if (existing.state() == v1::Version::YANKED) {
    return absl::AlreadyExistsError(
        absl::StrCat(existing.name(), " exists and was yanked; publish under a new --version"));
  }
  return absl::AlreadyExistsError(
      absl::StrCat(existing.name(), " already exists (", StateName(existing.state()),
                   ") without this artifact, ", DescribeArtifact(wanted),
                   "; it declares: ", declared.empty() ? "nothing" : absl::StrJoin(declared, ", "),
                   ". Publish under a new --version"));
}

}  // namespace

absl::Status ValidatePublishSpec(const PublishSpec& spec) {
  MD_RETURN_IF_ERROR(CheckId("model", spec.model_id));
  MD_RETURN_IF_ERROR(CheckId("version", spec.version_id));
  MD_RETURN_IF_ERROR(CheckId("tier", spec.tier));
  if (!spec.channel.empty()) MD_RETURN_IF_ERROR(CheckId("channel", spec.channel));
  if (spec.platform == v1::PLATFORM_UNSPECIFIED) return UsageError("--platform is required");
  if (spec.arch == v1::ARCH_UNSPECIFIED) return UsageError("--arch is required");
  if (spec.format == v1::FORMAT_UNSPECIFIED) return UsageError("--format is required");
  if (spec.file.empty()) return UsageError("publish needs the FILE to upload");
  if (spec.description.size() > 1024) {
    return UsageError("--description is longer than 1024 bytes");
  }
  return absl::OkStatus();
}

absl::StatusOr<FileDigest> HashFile(const std::string& path, std::ostream* log,
                                    bool show_progress) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return LocalError(ErrnoStatus(errno, path));
  struct stat st;
  if (::fstat(fd, &st) != 0) {
    int err = errno;
    ::close(fd);
    return LocalError(ErrnoStatus(err, path));
  }
  if (!S_ISREG(st.st_mode) || st.st_size == 0) {
    ::close(fd);
    return LocalError(absl::InvalidArgumentError(
        absl::StrCat(path, S_ISREG(st.st_mode) ? " is empty" : " is not a regular file")));
  }
  // Hashed here rather than with DigestFile so that a multi-GB hash shows progress.
  ProgressMeter meter(log, show_progress && log != nullptr, "hashing  ", 0, st.st_size);
  Sha256 hash;
  FileDigest result;
  std::vector<char> buffer(1 << 20);
  for (;;) {
    ssize_t n = ::read(fd, buffer.data(), buffer.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      int err = errno;
      ::close(fd);
      return LocalError(ErrnoStatus(err, absl::StrCat("reading ", path)));
    }
    if (n == 0) break;
    hash.Update(buffer.data(), static_cast<size_t>(n));
    result.size += n;
    meter.Update(result.size);
  }
  ::close(fd);
  result.hex = hash.FinishHex();
  return result;
}

absl::Status Publish(RegistryClient& client, const PublishSpec& spec, const PublishOptions& options,
                     PublishResult* result) {
  MD_RETURN_IF_ERROR(ValidatePublishSpec(spec));
  std::ostream* log = options.log;
  auto note = [log](absl::string_view text) {
    if (log != nullptr) *log << text << "\n";
  };

  // 1. Hash.
  MD_ASSIGN_OR_RETURN(result->file, HashFile(spec.file, log, options.show_progress));
  result->digest = FormatDigest(result->file.hex);
  const std::string model_name = ModelName(spec.model_id);
  const std::string version_name = VersionName{spec.model_id, spec.version_id}.ToString();

  // 2. Model.
  v1::CreateModelRequest create_model;
  create_model.set_model_id(spec.model_id);
  create_model.mutable_model()->set_description(spec.description);
  absl::StatusOr<v1::Model> model = client.CreateModel(create_model);
  if (model.ok()) {
    result->model_created = true;
  } else if (model.status().code() == absl::StatusCode::kAlreadyExists) {
    if (!spec.description.empty()) note(absl::StrCat(model_name, " exists; --description unused"));
  } else {
    return model.status();
  }

  // 3. Version.
  v1::Artifact artifact;
  artifact.set_platform(spec.platform);
  artifact.set_arch(spec.arch);
  artifact.set_format(spec.format);
  artifact.set_digest(result->digest);
  artifact.set_size_bytes(result->file.size);
  v1::CreateVersionRequest create_version;
  create_version.set_parent(model_name);
  create_version.set_version_id(spec.version_id);
  *create_version.add_artifacts() = artifact;
  absl::StatusOr<v1::Version> version = client.CreateVersion(create_version);
  if (version.ok()) {
    result->version_created = true;
  } else if (version.status().code() == absl::StatusCode::kAlreadyExists) {
    v1::GetVersionRequest get;
    get.set_name(version_name);
    version = client.GetVersion(get);
    if (!version.ok()) return version.status();
    MD_RETURN_IF_ERROR(CheckExistingVersion(*version, artifact, result));
    note(result->was_published ? absl::StrCat(version_name, " is already published with this file")
                               : absl::StrCat("resuming draft ", version_name));
  } else {
    return version.status();
  }
  result->version = *std::move(version);

  if (!result->was_published) {
    // 4. Upload.
    std::unique_ptr<ProgressMeter> meter;
    UploadOptions upload_options = options.upload;
    upload_options.on_progress = [&](int64_t position) {
      if (!meter) {
        meter = std::make_unique<ProgressMeter>(log, options.show_progress && log != nullptr,
                                                "uploading", position, result->file.size);
      }
      meter->Update(position);
    };
    upload_options.on_retry = [&](const absl::Status& failure, int retry, absl::Duration wait) {
      if (meter) meter->Finish();
      note(absl::StrCat("upload interrupted (", DescribeError(failure), "); retry ", retry, " in ",
                        absl::FormatDuration(absl::Trunc(wait, absl::Milliseconds(1)))));
    };
    ArtifactUploader uploader(&client, std::move(upload_options));
    absl::Status uploaded =
        uploader.Upload(spec.file, result->digest, result->file.size, &result->upload);
    meter.reset();
    MD_RETURN_IF_ERROR(uploaded);
    if (result->upload.resumed_from > 0 && !result->upload.already_complete) {
      note(absl::StrCat("resumed the upload at byte ", result->upload.resumed_from));
    }

    // 5. Publish.
    v1::PublishVersionRequest publish;
    publish.set_name(version_name);
    MD_ASSIGN_OR_RETURN(result->version, client.PublishVersion(publish));
  }

  // 6. Tier.
  v1::SetTierRequest set_tier;
  set_tier.set_tier(spec.tier);
  set_tier.set_channel(spec.channel);
  set_tier.set_version(version_name);
  MD_ASSIGN_OR_RETURN(result->binding, client.SetTier(set_tier));
  return absl::OkStatus();
}

}  // namespace modeldist::ctl
