// File: names.h
//
// Validation of ids and resource names that clients send. An id that passes IsValidId can be
// used as a single path component: it cannot be empty, ".", "..", contain "/" or NUL, or be
// longer than kMaxIdLength.
#ifndef MODELDIST_COMMON_NAMES_H_
#define MODELDIST_COMMON_NAMES_H_

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace modeldist {

inline constexpr size_t kMaxIdLength = 128;
inline constexpr absl::string_view kDefaultChannel = "stable";

// OK when `id` is 1-128 chars of [A-Za-z0-9._-], starts with a letter or digit and has no
// "..". Otherwise INVALID_ARGUMENT naming `field` and saying what is wrong.
absl::Status ValidateId(absl::string_view field, absl::string_view id);

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
