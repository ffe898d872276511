// File: bundle_install.h
//
// Installing a model from a bundle (common/bundle_format.h) instead of the network, and adopting
// a model file an app already ships. The bundle is read front to back, once, never whole in
// memory, and passes the checks a network sync does, through the same functions
// (device_state.h, chunk_downloader.h, model_store.h):
//   1. the roots it carries are walked from the device's trusted root (DIR/trust/root.bin or
//      the pinned --trust-root file), each verified against the one before;
//   2. the manifest's signatures, target and sequence are checked, and its sequence recorded
//      (AcceptManifest). Its expiry is waived (the result says so): a bundle proves
//      authenticity, not freshness. A manifest with a sequence lower than the highest the
//      device has seen never installs: with an active version it is a no-op (kKeptNewer),
//      without one it is SEQUENCE_ROLLBACK;
//   3. the blob streams into DIR/staging/<hex>.partial through DownloadChunks, every chunk
//      checked against the signed chunk chain (so the whole file's SHA-256 too);
//   4. only when the archive then ends as INDEX said is the partial activated
//      (ModelStore::ActivatePartial: atomic, crash-safe).
// Any error leaves the active version as it was, and no partial behind but one that was there
// before (an interrupted network download of the same digest, which a later sync resumes).
//
// Adopting (`adopt_file`): the bundle is manifest-only, and the artifact is a file already on
// the device (a GGUF, or the CoreML zip, shipped inside the app). The file is cloned into the
// store where the file system can (FICLONE on Linux, clonefile on macOS: copy-on-write, no
// bytes copied, and a later write to the app's copy does not reach the store's), else copied;
// either way every byte of the store's copy is verified against the manifest before
// activation. Never a hard link: the store must own its file (activation chmods and fsyncs it,
// and the downloader opens a partial read-write), and a file the store could take over that
// way is one the app could also change later under the installed, "verified" model.
#ifndef MODELDIST_CLIENT_AGENT_BUNDLE_INSTALL_H_
#define MODELDIST_CLIENT_AGENT_BUNDLE_INSTALL_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "client/agent/chunk_downloader.h"
#include "client/agent/model_store.h"
#include "common/tar.h"
#include "modeldist/v1/manifest.pb.h"

namespace modeldist::agent {

struct BundleInstallOptions {
  std::string bundle;  // the bundle file
  std::string dir;     // as SyncOptions::dir
  // As SyncOptions::trust_root_file: read only while `dir` has no trusted root.
  std::string trust_root_file;
  // A model file to adopt: then the bundle must be manifest-only (`bundle export --no-blobs`).
  std::string adopt_file;
  // Empty: the manifest's own tier and channel (a device dir keeps one tier).
  std::string tier;
  std::string channel;
  // Unspecified = detected from this machine.
  v1::Platform platform = v1::PLATFORM_UNSPECIFIED;
  v1::Arch arch = v1::ARCH_UNSPECIFIED;
  // Make the installed bytes durable before activation; off only in tests.
  bool fsync = true;
  // The limits of the trial the installed version starts (trial.h), as SyncOptions::trial.
  TrialLimits trial;
  std::function<void(int64_t verified_bytes, int64_t total_bytes)> on_progress;
  std::function<absl::Time()> now = [] { return absl::Now(); };
};

struct BundleInstallResult {
  enum class Action {
    kActivated,  // the bundle's version is now current
    kUpToDate,   // it already was
    kKeptNewer,  // the device has seen a higher sequence and has an active version: no-op
  };
  Action action = Action::kActivated;
  v1::Manifest manifest;
  // The current version after the call (the bundle's, or the newer one kept).
  InstalledVersion installed;
  bool expiry_waived = false;
  int64_t highest_seen = 0;  // the device's highest sequence before this bundle
  // How the artifact got into the store: "bundle" (streamed from it), "reflink" or "copy"
  // (adopted); "" when nothing was installed.
  std::string placement;
  ChunkDownloadStats stats;
};

// Errors: the bundle's structure (INVALID_ARGUMENT: BUNDLE_MALFORMED, TAR_BAD_HEADER,
// TAR_ENTRY_TOO_LARGE, BUNDLE_UNEXPECTED_ENTRY for an entry INDEX does not announce or a blob
// the manifest does not name; DATA_LOSS: TAR_TRUNCATED); the checks of a sync (ROOT_*,
// MALFORMED_ROOT, NO_TRUST_ROOT, SIGNATURE_THRESHOLD_NOT_MET, MALFORMED_MANIFEST, WRONG_TARGET,
// SEQUENCE_ROLLBACK); a blob or adopted file whose bytes do not match (DATA_LOSS:
// BUNDLE_BLOB_MISMATCH, ADOPT_FILE_MISMATCH); FAILED_PRECONDITION BUNDLE_NO_BLOB (a manifest-only
// bundle without `adopt_file`) or BUNDLE_HAS_BLOB (an adopt with a bundle that carries the blob);
// WRONG_TARGET also for a bundle of another tier/channel than the one `dir` already keeps
// (device_state.h AcceptManifest); INVALID_ARGUMENT ADOPT_NOT_A_FILE (a folder such as an unpacked
// .mlmodelc, which no zip digest can check) and ADOPT_SIZE_MISMATCH; INSUFFICIENT_DISK; file errors
// (ErrnoStatus).
absl::StatusOr<BundleInstallResult> InstallBundle(const BundleInstallOptions& options);

// The blob entry of a bundle as a ByteSource for DownloadChunks (InstallBundle's; declared here
// for its tests): bytes [offset, offset+limit) of the entry `tar` is at, read once, front to
// back. A second read of bytes already passed (the downloader refetching a chunk that failed
// its check) cannot be served (FAILED_PRECONDITION, BUNDLE_REREAD): the bundle is wrong, and a
// second read of it would give the same bytes. Cancel stops a running Read (CANCELLED) and,
// as the ByteSource contract says, never a later one.
class TarEntrySource : public ByteSource {
 public:
  TarEntrySource(TarReader* tar, int64_t size) : tar_(tar), size_(size) {}

  absl::Status Read(const std::string& digest, int64_t offset, int64_t limit,
                    const std::function<absl::Status(absl::string_view)>& sink) override;
  void Cancel() override { cancelled_ = true; }
  std::string Describe() const override { return "bundle " + tar_->path(); }

  // The archive's own error (TAR_TRUNCATED, a read error), as opposed to bytes that did not
  // verify; OK when there was none.
  const absl::Status& archive_error() const { return archive_error_; }

 private:
  TarReader* tar_;
  int64_t size_;
  std::atomic<bool> cancelled_{false};
  absl::Status archive_error_;
};

}  // namespace modeldist::agent

#endif  // MODELDIST_CLIENT_AGENT_BUNDLE_INSTALL_H_
