#include "client/agent/bundle_install.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#if defined(__linux__)
#include <linux/fs.h>  // FICLONE
#include <sys/ioctl.h>
#elif defined(__APPLE__)
#include <sys/clonefile.h>
#endif

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <optional>
#include <utility>

#include "absl/strings/str_cat.h"
#include "client/agent/agent.h"
#include "client/agent/device_state.h"
#include "common/bundle_format.h"
#include "common/file_util.h"
#include "common/names.h"
#include "common/status.h"
#include "common/tar.h"
#include "common/trust.h"

namespace modeldist::agent {
namespace {

constexpr size_t kFileReadBytes = 1 << 20;

absl::Status Unexpected(const TarReader& tar, absl::string_view what) {
  return MakeError(absl::StatusCode::kInvalidArgument, "BUNDLE_UNEXPECTED_ENTRY",
                   absl::StrCat(tar.path(), ": ", what,
                                "; nothing was installed. Export the bundle again with "
                                "`modeldistctl bundle export`"));
}

// The next entry, which must be `name` (what INDEX announced, in its order).
absl::Status ExpectEntry(TarReader& tar, absl::string_view name, TarEntry* entry) {
  MD_ASSIGN_OR_RETURN(bool more, tar.Next(entry));
  if (!more) return Unexpected(tar, absl::StrCat("the archive ends where ", name, " should be"));
  if (entry->name != name) {
    return Unexpected(tar, absl::StrCat("entry \"", entry->name, "\" at byte ", entry->offset,
                                        " where ", name, " should be"));
  }
  return absl::OkStatus();
}

// The archive must end here: an entry INDEX did not announce is refused, not ignored.
absl::Status ExpectEnd(TarReader& tar) {
  TarEntry entry;
  MD_ASSIGN_OR_RETURN(bool more, tar.Next(&entry));
  if (more) {
    return Unexpected(tar, absl::StrCat("entry \"", entry.name, "\" at byte ", entry.offset,
                                        " is not in the bundle's INDEX"));
  }
  return absl::OkStatus();
}

// A file to adopt, read with pread: the downloader's source when the store copies it.
class FileSource : public ByteSource {
 public:
  FileSource(int fd, std::string path) : fd_(fd), path_(std::move(path)) {}

  absl::Status Read(const std::string& /*digest*/, int64_t offset, int64_t limit,
                    const std::function<absl::Status(absl::string_view)>& sink) override {
    std::string buffer(kFileReadBytes, '\0');
    while (limit > 0) {
      const size_t want = static_cast<size_t>(std::min<int64_t>(limit, kFileReadBytes));
      MD_ASSIGN_OR_RETURN(size_t got, PreadAll(fd_, buffer.data(), want, offset, path_));
      if (got == 0) return absl::OkStatus();  // the downloader reports the short file
      MD_RETURN_IF_ERROR(sink(absl::string_view(buffer.data(), got)));
      offset += static_cast<int64_t>(got);
      limit -= static_cast<int64_t>(got);
    }
    return absl::OkStatus();
  }
  void Cancel() override {}  // local reads do not stall
  std::string Describe() const override { return path_; }

 private:
  int fd_;
  std::string path_;
};

// Removes what a failed install left at `partial`: its clone temp always, the partial and its
// journal only when this install created them. A partial that was there before is a network
// download of the same digest that an interrupted sync will resume (DownloadChunks only ever
// adds verified chunks to it): it is not this install's to delete.
void RemovePartial(const std::string& partial, bool existed_before) {
  ::unlink(absl::StrCat(partial, ".adopt").c_str());
  if (existed_before) return;
  for (const char* suffix : {"", ".journal"}) ::unlink(absl::StrCat(partial, suffix).c_str());
}

// Opens the file to adopt: a regular file of the manifest's size.
absl::StatusOr<ScopedFd> OpenAdopted(const std::string& path,
                                     const v1::ManifestArtifact& artifact) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) return ErrnoStatus(errno, path);
  if (S_ISDIR(st.st_mode)) {
    return MakeError(
        absl::StatusCode::kInvalidArgument, "ADOPT_NOT_A_FILE",
        absl::StrCat(path,
                     " is a folder (an unpacked .mlmodelc or .mlpackage?): the manifest's digest "
                     "is of the ",
                     artifact.format() == v1::FORMAT_COREML_ZIP ? "zip" : "file",
                     ", and no folder can be checked against it. Ship the zip (or the GGUF) "
                     "and adopt that, or let the agent download the model"));
  }
  if (!S_ISREG(st.st_mode)) {
    return MakeError(absl::StatusCode::kInvalidArgument, "ADOPT_NOT_A_FILE",
                     absl::StrCat(path, " is not a regular file"));
  }
  if (st.st_size != artifact.size_bytes()) {
    return MakeError(absl::StatusCode::kInvalidArgument, "ADOPT_SIZE_MISMATCH",
                     absl::StrCat(path, " has ", st.st_size, " bytes; the bundle's manifest says ",
                                  artifact.size_bytes(), " (", artifact.digest(),
                                  "): it is not this model's file"));
  }
  ScopedFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) return ErrnoStatus(errno, path);
  return fd;
}

// Puts a copy-on-write clone of `source` at `partial` when the file system can (no bytes
// copied, and the clone does not change when the app's file does). false when it cannot: the
// downloader then copies the bytes while it verifies them.
bool CloneInto(int source_fd, const std::string& source, const std::string& partial) {
  const std::string temp = partial + ".adopt";
  ::unlink(temp.c_str());
  bool cloned = false;
#if defined(__linux__)
  ScopedFd out(::open(temp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644));
  cloned = out.valid() && ::ioctl(out.get(), FICLONE, source_fd) == 0 && ::fsync(out.get()) == 0;
  (void)source;
#elif defined(__APPLE__)
  (void)source_fd;
  cloned = ::clonefile(source.c_str(), temp.c_str(), CLONE_NOFOLLOW) == 0;
#else
  (void)source_fd;
  (void)source;
#endif
  if (cloned && ::rename(temp.c_str(), partial.c_str()) == 0) return true;
  ::unlink(temp.c_str());
  return false;
}

}  // namespace

absl::Status TarEntrySource::Read(const std::string& /*digest*/, int64_t offset, int64_t limit,
                                  const std::function<absl::Status(absl::string_view)>& sink) {
  // A Cancel that landed before this Read (the downloader's watchdog racing the previous one)
  // is dropped; one that lands during it stops it at the next piece.
  cancelled_ = false;
  const int64_t consumed = size_ - tar_->Remaining();
  if (offset < consumed) {
    return MakeError(
        absl::StatusCode::kFailedPrecondition, "BUNDLE_REREAD",
        absl::StrCat(tar_->path(), ": bytes at ", offset, " were already read and did not verify"));
  }
  absl::Status status = tar_->Read(offset - consumed, [](absl::string_view) {
    return absl::OkStatus();  // a resumed partial already holds them, verified
  });
  bool sink_failed = false;
  if (status.ok()) {
    status = tar_->Read(std::min(limit, tar_->Remaining()), [&](absl::string_view piece) {
      absl::Status sunk = cancelled_ ? absl::CancelledError("cancelled") : sink(piece);
      sink_failed = !sunk.ok();
      return sunk;
    });
  }
  if (!status.ok() && !sink_failed) archive_error_ = status;
  return status;
}

absl::StatusOr<BundleInstallResult> InstallBundle(const BundleInstallOptions& options) {
  const absl::Time now = options.now();
  if (options.dir.empty()) return InvalidArgument("dir", "MISSING_DIR", "--dir is required");
  const v1::Platform platform =
      options.platform != v1::PLATFORM_UNSPECIFIED ? options.platform : DetectPlatform();
  const v1::Arch arch = options.arch != v1::ARCH_UNSPECIFIED ? options.arch : DetectArch();
  const bool adopt = !options.adopt_file.empty();

  ScopedFd fd(::open(options.bundle.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) return ErrnoStatus(errno, options.bundle);
  TarReader tar(fd.get(), options.bundle);
  TarEntry entry;
  MD_RETURN_IF_ERROR(ExpectEntry(tar, kBundleIndexEntry, &entry));
  MD_ASSIGN_OR_RETURN(std::string index_text, tar.ReadSmall(kMaxBundleIndexBytes));
  MD_ASSIGN_OR_RETURN(BundleIndex index, ParseBundleIndex(index_text));
  if (adopt && index.blob.has_value()) {
    return MakeError(absl::StatusCode::kFailedPrecondition, "BUNDLE_HAS_BLOB",
                     absl::StrCat(options.bundle,
                                  " carries the model itself: install it without --file, or "
                                  "export a manifest-only bundle (`bundle export --no-blobs`) "
                                  "to adopt ",
                                  options.adopt_file));
  }
  if (!adopt && !index.blob.has_value()) {
    return MakeError(absl::StatusCode::kFailedPrecondition, "BUNDLE_NO_BLOB",
                     absl::StrCat(options.bundle,
                                  " is manifest-only: pass the model file the app ships with "
                                  "--file PATH (modeldist-agent adopt)"));
  }

  MD_RETURN_IF_ERROR(MakeDirs(options.dir, 0755));
  MD_ASSIGN_OR_RETURN(TrustState trust, TrustState::Load(options.dir, options.trust_root_file));
  for (int64_t i = 0; i < index.root_count; ++i) {
    const int64_t version = index.first_root + i;
    MD_RETURN_IF_ERROR(ExpectEntry(tar, BundleRootEntry(version), &entry));
    MD_ASSIGN_OR_RETURN(std::string bytes, tar.ReadSmall(kMaxBundleRootBytes));
    // Roots the device already trusts (or passed) say nothing new; the name's version is not
    // trusted, but a root skipped under a false name only breaks the chain after it.
    if (version <= trust.root().version()) continue;
    v1::SignedTrustRoot next;
    if (!next.ParseFromString(bytes)) {
      return MakeError(absl::StatusCode::kInvalidArgument, "MALFORMED_ROOT",
                       absl::StrCat(options.bundle, ": ", entry.name, " is not a SignedTrustRoot"));
    }
    MD_RETURN_IF_ERROR(WithContext(trust.AdvanceTo(next), entry.name));
  }

  MD_RETURN_IF_ERROR(ExpectEntry(tar, kBundleManifestEntry, &entry));
  MD_ASSIGN_OR_RETURN(std::string manifest_bytes, tar.ReadSmall(kMaxBundleManifestBytes));
  v1::SignedManifest signed_manifest;
  if (!signed_manifest.ParseFromString(manifest_bytes)) {
    return MakeError(absl::StatusCode::kInvalidArgument, "MALFORMED_MANIFEST",
                     absl::StrCat(options.bundle, ": manifest.pb is not a SignedManifest"));
  }
  // The tier and channel come from the manifest itself, so it is verified first (AcceptManifest
  // verifies again: a signature check is cheap, parsing unverified bytes is not allowed).
  MD_ASSIGN_OR_RETURN(v1::Manifest signed_content, VerifyManifest(trust.root(), signed_manifest));
  ManifestTarget target{options.tier.empty() ? signed_content.tier() : options.tier,
                        options.channel.empty() ? signed_content.channel() : options.channel,
                        platform, arch};
  if (target.channel.empty()) target.channel = std::string(kDefaultChannel);
  MD_RETURN_IF_ERROR(ValidateId("tier", target.tier));
  MD_RETURN_IF_ERROR(ValidateId("channel", target.channel));
  MD_ASSIGN_OR_RETURN(
      AcceptedManifest accepted,
      AcceptManifest(
          trust, options.dir, signed_manifest, target,
          {.now = now, .waive_expiry = true, .report_older = true, .same_target_only = true}));
  BundleInstallResult result;
  result.manifest = std::move(accepted.manifest);
  result.expiry_waived = accepted.expiry_waived;
  result.highest_seen = accepted.highest_seen;
  const v1::ManifestArtifact& artifact = result.manifest.artifact();

  MD_ASSIGN_OR_RETURN(ModelStore store, ModelStore::Open(options.dir));
  if (accepted.older) {
    if (std::optional<InstalledVersion> current = store.Current()) {
      result.action = BundleInstallResult::Action::kKeptNewer;
      result.installed = *std::move(current);
      return result;
    }
    // Nothing active to keep, and the rule holds all the same: SEQUENCE_ROLLBACK.
    MD_RETURN_IF_ERROR(CheckManifestFreshness(result.manifest, absl::InfinitePast(),
                                              absl::ZeroDuration(), accepted.highest_seen));
  }
  if (std::optional<InstalledVersion> current =
          store.CurrentIfInstalled(result.manifest.version(), artifact.digest())) {
    result.action = BundleInstallResult::Action::kUpToDate;
    result.installed = *std::move(current);
    return result;
  }

  MD_ASSIGN_OR_RETURN(const std::string partial, store.PartialPath(artifact.digest()));
  struct stat partial_st;
  const bool partial_existed = ::stat(partial.c_str(), &partial_st) == 0;
  MD_RETURN_IF_ERROR(CheckDisk(options.dir, artifact));
  ChunkDownloadOptions download;
  download.retry.max_attempts = 1;  // a local file gives the same bytes again
  download.fsync = options.fsync;
  download.on_progress = options.on_progress;

  ScopedFd adopted;
  std::optional<TarEntrySource> blob_source;
  std::optional<FileSource> file_source;
  ByteSource* source = nullptr;
  if (adopt) {
    MD_RETURN_IF_ERROR(ExpectEnd(tar));
    MD_ASSIGN_OR_RETURN(adopted, OpenAdopted(options.adopt_file, artifact));
    // A clone needs the partial's place; an earlier partial (an interrupted download) is
    // resumed instead, the rest copied from the file.
    result.placement = !partial_existed && CloneInto(adopted.get(), options.adopt_file, partial)
                           ? "reflink"
                           : "copy";
    source = &file_source.emplace(adopted.get(), options.adopt_file);
  } else {
    if (index.blob->digest != artifact.digest() || index.blob->size != artifact.size_bytes()) {
      return Unexpected(tar, absl::StrCat("INDEX names blob ", index.blob->digest, " of ",
                                          index.blob->size, " bytes, the manifest ",
                                          artifact.digest(), " of ", artifact.size_bytes()));
    }
    MD_RETURN_IF_ERROR(ExpectEntry(tar, BundleBlobEntry(artifact.digest()), &entry));
    if (entry.size != artifact.size_bytes()) {
      return Unexpected(tar, absl::StrCat(entry.name, " has ", entry.size,
                                          " bytes, the manifest "
                                          "says ",
                                          artifact.size_bytes()));
    }
    result.placement = "bundle";
    source = &blob_source.emplace(&tar, entry.size);
  }

  absl::StatusOr<ChunkDownloadStats> stats = DownloadChunks(artifact, {source}, partial, download);
  if (!stats.ok()) {
    RemovePartial(partial, partial_existed);
    // The downloader's message speaks of sources and resumes; say what it means here.
    if (blob_source.has_value() && !blob_source->archive_error().ok()) {
      return blob_source->archive_error();
    }
    if (stats.status().code() != absl::StatusCode::kDataLoss) return stats.status();
    if (adopt) {
      return MakeError(absl::StatusCode::kDataLoss, "ADOPT_FILE_MISMATCH",
                       absl::StrCat(options.adopt_file, " is not the bundle's ",
                                    result.manifest.version(), " (", artifact.digest(),
                                    "): its bytes differ from the signed manifest's; nothing "
                                    "was installed"));
    }
    return MakeError(absl::StatusCode::kDataLoss, "BUNDLE_BLOB_MISMATCH",
                     absl::StrCat(options.bundle, ": the bytes of ", entry.name,
                                  " do not match the signed manifest's chunk chain: the bundle "
                                  "is damaged or was altered; nothing was installed"));
  }
  if (absl::Status end = adopt ? absl::OkStatus() : ExpectEnd(tar); !end.ok()) {
    RemovePartial(partial, partial_existed);
    return end;
  }
  result.stats = *stats;
  // As a sync's: the installed version is on trial until the app confirms it loads.
  store.StartTrials(
      {result.manifest.tier(), result.manifest.channel(), options.now(), options.trial});
  absl::StatusOr<InstalledVersion> installed =
      store.ActivatePartial(result.manifest.version(), artifact.digest(), artifact.format());
  if (!installed.ok()) {
    RemovePartial(partial, partial_existed);
    return installed.status();
  }
  result.installed = *std::move(installed);
  result.action = BundleInstallResult::Action::kActivated;
  return result;
}

}  // namespace modeldist::agent
