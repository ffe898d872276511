// File: publish.h
//
// `modeldistctl publish`: from local files to a published version bound to a tier, in one
// command that can simply be run again after an interruption. A version is immutable and
// declares all its artifacts at once (e.g. a CoreML zip for macOS arm64 and a GGUF for macOS
// x86_64), so one run takes every file of the version. Each file is read once: its SHA-256 is
// computed while it is uploaded (upload.h), never in a pass of its own before.
//
//   1. open every file (a regular file or a pipe; nothing is read yet);
//   2. CreateModel (ALREADY_EXISTS is fine);
//   3. GetVersion, then each file in turn (an --import is fetched by the server instead, see
//      import.h, unless the version holds its bytes already). For a new version: upload it in an
//      upload session whose id is derived from the file's identity (UploadIdFor), hashing it in the
//      same pass; the server stores the bytes once its own hash agrees, and a rerun resumes the
//      session (or finds it finished). For an existing version, files it already holds (and
//      files it does not declare) are only hashed, to compare; a file it declares but whose
//      bytes the server lacks (never uploaded to a DRAFT, or lost from the blob store under a
//      PUBLISHED version) is uploaded the same way, and finish_write is sent only when the
//      file hashes to the declared digest, so a different file stores nothing;
//   4. CreateVersion declaring all the artifacts with the digests learnt in step 3. If the
//      version exists: a DRAFT declaring exactly the same artifacts (content, constraints and
//      unpacked size, as the server returns them) is resumed; a PUBLISHED one with the same
//      artifacts skips to step 6; anything else is an ALREADY_EXISTS error that says what
//      differs;
//   5. PublishVersion, with the release statement when there is one (a version published
//      before without one gets it through AttachRelease);
//   6. SetTier, unless the version was already PUBLISHED and the tier is already bound to it
//      on that channel (ListTiers says so): a rerun that changes nothing then binds nothing,
//      so the tier's sequence and the audit log stay as they were.
#ifndef MODELDIST_CLIENT_MODELDISTCTL_PUBLISH_H_
#define MODELDIST_CLIENT_MODELDISTCTL_PUBLISH_H_

#include <cstdint>
#include <optional>
#include <ostream>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "client/modeldistctl/hashing_file_reader.h"
#include "client/modeldistctl/import.h"
#include "client/modeldistctl/registry_client.h"
#include "client/modeldistctl/upload.h"
#include "common/digest.h"
#include "modeldist/v1/manifest.pb.h"
#include "modeldist/v1/resources.pb.h"

namespace modeldist::ctl {

// One file of a version and what it runs on.
struct PublishArtifact {
  v1::Platform platform = v1::PLATFORM_UNSPECIFIED;
  v1::Arch arch = v1::ARCH_UNSPECIFIED;
  v1::Format format = v1::FORMAT_UNSPECIFIED;
  std::string file;  // for an import, its source as ImportName says it
  // Set: the server fetches the bytes itself (import.h); no file is read.
  std::optional<ImportFrom> import;
};

struct PublishSpec {
  std::string model_id;
  std::string version_id;
  std::string tier;
  std::string channel;      // Empty means the server's default, `stable`.
  std::string description;  // For the model, when publish creates it.
  // The origins to copy the new version's blobs to (Version.replicate_to); empty: the model's.
  std::vector<std::string> replicate_to;
  // Model.replicate_to, when publish creates the model; empty: every replicating origin.
  std::vector<std::string> model_replicate_to;
  // At least one, at most one per (platform, arch, format); uploaded in this order.
  std::vector<PublishArtifact> artifacts;
  // What a device needs, declared alike on EVERY artifact of the spec: the command line has
  // one set of constraint flags per command, which keeps the common case (one file, or files
  // that differ only by arch) short. Empty means none.
  v1::ArtifactConstraints constraints;
  // Bytes on disk after activation, for every artifact; 0 means each artifact's own size.
  int64_t unpacked_size_bytes = 0;
  // The version's release statement (`release sign`), sent with PublishVersion; for a version
  // published before without one, attached (AttachRelease) instead.
  std::optional<v1::SignedRelease> release;
};

struct PublishOptions {
  UploadOptions upload;  // Publish wraps on_progress and sets on_retry, for its own lines.
  // Notes for people (e.g. "resuming draft ...") and the progress line go here.
  std::ostream* log = nullptr;
  // Draw progress lines on `log` (when it is a terminal).
  bool show_progress = false;
};

// What publish did with one artifact.
struct PublishedArtifact {
  PublishArtifact spec;
  FileDigest file;
  std::string digest;  // sha256:<hex>
  UploadStats upload;  // Untouched (resumed_from -1) when the upload was not reached.
  // The version was PUBLISHED before this run, yet the server had lost these bytes, and this
  // run uploaded them again.
  bool restored = false;
  // The server imported the bytes (spec.import) in this run.
  bool imported = false;
};

struct PublishResult {
  // In the order of PublishSpec::artifacts, one per file opened so far; `file` and `digest`
  // are set once the file was read.
  std::vector<PublishedArtifact> artifacts;
  bool model_created = false;
  bool version_created = false;
  bool was_published = false;  // The version was PUBLISHED before this run.
  v1::Version version;
  v1::TierBinding binding;
  // The tier was bound to the version on the channel before this run, so no SetTier was
  // sent; `binding` is the binding as it was found.
  bool tier_already_bound = false;

  // File data bytes sent over all the uploads.
  int64_t BytesSent() const;
};

// "macos/arm64/coreml-zip": how the command line names an artifact's target.
std::string TargetName(v1::Platform platform, v1::Arch arch, v1::Format format);

// Parses one PLATFORM/ARCH/FORMAT=FILE argument, e.g. `macos/arm64/coreml-zip=llama.zip`,
// with the names enums.h accepts. Everything after the first '=' is the file, so a path may
// contain '='. Usage errors quote the argument.
absl::StatusOr<PublishArtifact> ParseArtifactArg(absl::string_view arg);

// The artifacts of a publish command line, in one of two forms:
//   - `--platform P --arch A --format F FILE`: the flags (empty when not given) describe
//     exactly one FILE;
//   - no such flags and one PLATFORM/ARCH/FORMAT=FILE argument per artifact.
// Mixing the forms, a missing part, or two files for one platform/arch/format is a usage
// error that says so. With the flags, an argument that parses as a platform followed by
// /ARCH/FORMAT=... counts as mixing (a file really named so can be given as ./macos/...).
absl::StatusOr<std::vector<PublishArtifact>> ParsePublishArtifacts(
    const std::string& platform, const std::string& arch, const std::string& format,
    const std::vector<std::string>& args);

// Fills spec->constraints and spec->unpacked_size_bytes from the publish flags (each empty
// when not given): `min_os` dotted numbers like 14.0; `min_ram` and `unpacked_size` sizes of at
// least 1 byte with the suffixes of ParseSize (8GiB, 512M, ...); `required_accelerators` a comma
// list of accelerators (ane,metal,cuda,vulkan). Usage errors name the flag.
absl::Status ParsePublishConstraints(const std::string& min_os, const std::string& min_ram,
                                     const std::string& required_accelerators,
                                     const std::string& unpacked_size, PublishSpec* spec);

// "min OS 14.0, min RAM 8.59 GB, needs ane+metal, unpacked 12 B", or "no constraints": the
// device-facing requirements of an artifact, for messages and `show`.
std::string DescribeRequirements(const v1::Artifact& artifact);

// Validates `spec` without touching the network or the file: usage errors naming the flag.
absl::Status ValidatePublishSpec(const PublishSpec& spec);

// The upload session id publish uses for `file`: derived from the host and the file's
// identity when opened (device, inode, size, modification time), so that running publish
// again on the same, unchanged file resumes its session or finds it finished, even for
// another version or target (then only the file's hash is checked, nothing is sent); a file
// that changed gets a new session. A pipe, which cannot be read again, gets a random id.
// "ctl-" and 40 hex digits.
std::string UploadIdFor(const HashingFileReader& file);

// Runs steps 1-6. `result` is filled in as far as the run got, so a caller can report what
// was uploaded before a failure. Uploads stop at the first failure (after the uploader's own
// retries); the next run resumes there. options.upload.max_bytes_to_send applies to each
// file's upload; options.upload.on_progress is called after publish's own progress line.
absl::Status Publish(RegistryClient& client, const PublishSpec& spec, const PublishOptions& options,
                     PublishResult* result);

}  // namespace modeldist::ctl

#endif  // MODELDIST_CLIENT_MODELDISTCTL_PUBLISH_H_
