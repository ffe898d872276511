// File: names.h
//
// Validation of ids and resource names that clients send. An id that passes IsValidId can be
// used as a single path component: it cannot be empty, ".", "..", contain "/" or NUL, or be
// longer than kMaxIdLength (common/limits.h).
#ifndef MODELDIST_COMMON_NAMES_H_
#define MODELDIST_COMMON_NAMES_H_

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/limits.h"

namespace modeldist {

// Upload session ids (RegistryService.WriteArtifact `upload_id`) are chosen by clients; the
// minimum keeps them hard to collide with another client's, the maximum keeps file names short.
inline constexpr size_t kMinUploadIdLength = 16;
inline constexpr size_t kMaxUploadIdLength = 64;
inline constexpr absl::string_view kDefaultChannel = "stable";

// OK when `id` is 1-128 chars of [A-Za-z0-9._-], starts with a letter or digit and has no
// "..". Otherwise INVALID_ARGUMENT naming `field` and saying what is wrong.
absl::Status ValidateId(absl::string_view field, absl::string_view id);

// OK when `id` is kMinUploadIdLength to kMaxUploadIdLength characters of [A-Za-z0-9_-].
// Stricter than ValidateId on purpose: without '.', an upload id can never be "." or "..",
// nor look like a file suffix, so `session-<id>.partial` names exactly one session. Otherwise
// INVALID_ARGUMENT naming `field`, reason INVALID_UPLOAD_ID.
absl::Status ValidateUploadId(absl::string_view field, absl::string_view id);

struct VersionName {
  std::string model;
  std::string version;
  std::string ToString() const;  // models/{model}/versions/{version}
};

// Parses `models/{model}`; returns the model id.
absl::StatusOr<std::string> ParseModelName(absl::string_view field, absl::string_view name);
// Parses `models/{model}/versions/{version}`.
absl::StatusOr<VersionName> ParseVersionName(absl::string_view field, absl::string_view name);

std::string ModelName(absl::string_view model);

}  // namespace modeldist

#endif  // MODELDIST_COMMON_NAMES_H_
