#include "common/names.h"

#include <algorithm>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/status.h"

namespace modeldist {

absl::Status ValidateId(absl::string_view field, absl::string_view id) {
  if (id.empty()) {
    return InvalidArgument(field, "EMPTY_ID", absl::StrCat(field, " is required"));
  }
  if (id.size() > kMaxIdLength) {
    return InvalidArgument(
        field, "ID_TOO_LONG",
        absl::StrCat(field, " is ", id.size(), " characters; at most ", kMaxIdLength));
  }
  if (id.find("..") != absl::string_view::npos) {
    return InvalidArgument(field, "INVALID_ID", absl::StrCat(field, " must not contain \"..\""));
  }
  auto alnum = [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
  };
  if (!alnum(id[0])) {
    return InvalidArgument(field, "INVALID_ID",
                           absl::StrCat(field, " must start with a letter or digit"));
  }
  for (char c : id) {
    if (!alnum(c) && c != '.' && c != '_' && c != '-') {
      return InvalidArgument(
          field, "INVALID_ID",
          absl::StrCat(field, " may only contain letters, digits, '.', '_' and '-'"));
    }
  }
  return absl::OkStatus();
}

absl::Status ValidateUploadId(absl::string_view field, absl::string_view id) {
  auto allowed = [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '-';
  };
  std::string problem;
  if (id.size() < kMinUploadIdLength || id.size() > kMaxUploadIdLength) {
    problem = absl::StrCat("got ", id.size(), " characters");
  } else if (!std::all_of(id.begin(), id.end(), allowed)) {
    problem = "got other characters";
  } else {
    return absl::OkStatus();
  }
  // The id itself is not echoed: it may hold bytes that a log or terminal should not get.
  return InvalidArgument(
      field, "INVALID_UPLOAD_ID",
      absl::StrCat(field, " must be ", kMinUploadIdLength, " to ", kMaxUploadIdLength,
                   " characters of A-Z, a-z, 0-9, '_' and '-'; ", problem));
}

std::string VersionName::ToString() const {
  return absl::StrCat("models/", model, "/versions/", version);
}

std::string ModelName(absl::string_view model) { return absl::StrCat("models/", model); }

absl::StatusOr<std::string> ParseModelName(absl::string_view field, absl::string_view name) {
  std::vector<absl::string_view> parts = absl::StrSplit(name, '/');
  if (parts.size() != 2 || parts[0] != "models") {
    return InvalidArgument(field, "INVALID_NAME",
                           absl::StrCat(field, " must be models/{model}, got \"", name, "\""));
  }
  if (absl::Status s = ValidateId(field, parts[1]); !s.ok()) return s;
  return std::string(parts[1]);
}

absl::StatusOr<VersionName> ParseVersionName(absl::string_view field, absl::string_view name) {
  std::vector<absl::string_view> parts = absl::StrSplit(name, '/');
  if (parts.size() != 4 || parts[0] != "models" || parts[2] != "versions") {
    return InvalidArgument(
        field, "INVALID_NAME",
        absl::StrCat(field, " must be models/{model}/versions/{version}, got \"", name, "\""));
  }
  if (absl::Status s = ValidateId(field, parts[1]); !s.ok()) return s;
  if (absl::Status s = ValidateId(field, parts[3]); !s.ok()) return s;
  return VersionName{std::string(parts[1]), std::string(parts[3])};
}

}  // namespace modeldist
