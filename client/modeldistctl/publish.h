// File: publish.h
//
// `modeldistctl publish`: from a local file to a published version bound to a tier, in one
// command that can simply be run again after an interruption.
//
//   1. hash the file (SHA-256, one pass);
//   2. CreateModel (ALREADY_EXISTS is fine);
//   3. CreateVersion declaring the artifact. If the version exists: a DRAFT declaring the same
//      artifact is resumed; a PUBLISHED one with the same artifact skips to step 6; anything
//      else is an ALREADY_EXISTS error that says what differs;
//   4. upload the bytes, resuming from what the server has committed (upload.h);
//   5. PublishVersion;
//   6. SetTier.
#ifndef MODELDIST_CLIENT_MODELDISTCTL_PUBLISH_H_
#define MODELDIST_CLIENT_MODELDISTCTL_PUBLISH_H_

#include <cstdint>
#include <ostream>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "client/modeldistctl/registry_client.h"
#include "client/modeldistctl/upload.h"
#include "common/digest.h"
#include "modeldist/v1/resources.pb.h"

namespace modeldist::ctl {

struct PublishSpec {
  std::string model_id;
  std::string version_id;
  v1::Platform platform = v1::PLATFORM_UNSPECIFIED;
  v1::Arch arch = v1::ARCH_UNSPECIFIED;
  v1::Format format = v1::FORMAT_UNSPECIFIED;
  std::string tier;
  std::string channel;      // Empty means the server's default, `stable`.
  std::string description;  // For the model, when publish creates it.
  std::string file;
};

struct PublishOptions {
  UploadOptions upload;  // on_progress is set by Publish to drive the meter.
  // Notes for people (e.g. "resuming draft ...") and the progress line go here.
  std::ostream* log = nullptr;
  // Draw progress lines on `log` (when it is a terminal).
  bool show_progress = false;
};

struct PublishResult {
  FileDigest file;
  std::string digest;  // sha256:<hex>
  bool model_created = false;
  bool version_created = false;
  bool was_published = false;  // The version was PUBLISHED before this run.
  UploadStats upload;
  v1::Version version;
  v1::TierBinding binding;
};

// Validates `spec` without touching the network or the file: usage errors naming the flag.
absl::Status ValidatePublishSpec(const PublishSpec& spec);

// Hashes `path` with a progress line on `log` when `show_progress`. A local error when the
// file is missing, unreadable, not a regular file or empty (an artifact has at least 1 byte).
absl::StatusOr<FileDigest> HashFile(const std::string& path, std::ostream* log, bool show_progress);

// Runs steps 1-6. `result` is filled in as far as the run got, so a caller can report what
// was uploaded before a failure.
absl::Status Publish(RegistryClient& client, const PublishSpec& spec, const PublishOptions& options,
                     PublishResult* result);

}  // namespace modeldist::ctl

#endif  // MODELDIST_CLIENT_MODELDISTCTL_PUBLISH_H_
