#include "services/request_validation.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "common/digest.h"
#include "common/status.h"
#include "modeldist/v1/resources.pb.h"

namespace modeldist::services {

RequestCheck& RequestCheck::Keep(absl::Status status) {
  if (status_.ok()) status_ = std::move(status);
  return *this;
}

RequestCheck& RequestCheck::Id(absl::string_view field, absl::string_view id) {
  if (!status_.ok()) return *this;
  return Keep(ValidateId(field, id));
}

RequestCheck& RequestCheck::OptionalId(absl::string_view field, absl::string_view id) {
  if (id.empty()) return *this;
  return Id(field, id);
}

RequestCheck& RequestCheck::TierChannel(absl::string_view tier, absl::string_view channel,
                                        std::string* channel_out) {
  const absl::string_view c = channel.empty() ? kDefaultChannel : channel;
  Id("tier", tier).Id("channel", c);
  if (status_.ok()) *channel_out = std::string(c);
  return *this;
}

template <typename T>
RequestCheck& RequestCheck::Take(absl::StatusOr<T> parsed, T* out) {
  if (!parsed.ok()) return Keep(parsed.status());
  if (out != nullptr) *out = *std::move(parsed);
  return *this;
}

RequestCheck& RequestCheck::ModelName(absl::string_view field, absl::string_view name,
                                      std::string* model) {
  if (!status_.ok()) return *this;
  return Take(ParseModelName(field, name), model);
}

RequestCheck& RequestCheck::VersionName(absl::string_view field, absl::string_view name,
                                        modeldist::VersionName* version) {
  if (!status_.ok()) return *this;
  return Take(ParseVersionName(field, name), version);
}

RequestCheck& RequestCheck::Digest(absl::string_view field, absl::string_view digest,
                                   std::string* hex) {
  if (!status_.ok()) return *this;
  return Take(ParseDigest(field, digest), hex);
}

RequestCheck& RequestCheck::Text(absl::string_view field, absl::string_view text,
                                 size_t max_bytes) {
  if (!status_.ok() || text.size() <= max_bytes) return *this;
  return That(false, field, "TEXT_TOO_LONG",
              absl::StrCat(field, " is ", text.size(), " bytes; at most ", max_bytes));
}

RequestCheck& RequestCheck::NotNegative(absl::string_view field, int64_t value,
                                        absl::string_view reason, absl::string_view hint) {
  if (!status_.ok() || value >= 0) return *this;
  return Keep(InvalidArgument(field, reason,
                              absl::StrCat(field, " must not be negative", hint, ", got ", value)));
}

RequestCheck& RequestCheck::Range(absl::string_view field, int64_t value, int64_t min, int64_t max,
                                  absl::string_view reason, absl::string_view unit) {
  if (!status_.ok() || (value >= min && value <= max)) return *this;
  return Keep(InvalidArgument(
      field, reason, absl::StrCat(field, " must be ", min, " to ", max, unit, ", got ", value)));
}

RequestCheck& RequestCheck::PageSize(int32_t page_size) {
  return NotNegative("page_size", page_size, "INVALID_PAGE_SIZE",
                     absl::StrCat(" (0 means ", kDefaultPageSize, ")"));
}

RequestCheck& RequestCheck::BasisPoints(int32_t basis_points) {
  return Range("basis_points", basis_points, 0, kMaxBasisPoints, "INVALID_BASIS_POINTS",
               " (1/100 %)");
}

RequestCheck& RequestCheck::DeviceIds(const google::protobuf::RepeatedPtrField<std::string>& ids) {
  if (!status_.ok()) return *this;
  if (ids.empty() || ids.size() > kMaxDeviceIdsPerCall) {
    return That(false, "device_ids", "INVALID_DEVICE_IDS",
                absl::StrCat("device_ids must list 1 to ", kMaxDeviceIdsPerCall, " devices, got ",
                             ids.size()));
  }
  for (int i = 0; i < ids.size() && status_.ok(); ++i) {
    if (ids[i].empty() || ids[i].size() > kMaxDeviceIdBytes) {
      const std::string field = absl::StrCat("device_ids[", i, "]");
      Keep(InvalidArgument(field, "INVALID_DEVICE_ID",
                           absl::StrCat(field, " must be 1 to ", kMaxDeviceIdBytes, " bytes")));
    }
  }
  return *this;
}

RequestCheck& RequestCheck::OsVersion(absl::string_view field, absl::string_view version) {
  if (!status_.ok() || version.empty() || IsDottedVersion(version)) return *this;
  // Cut: the text is the client's, and may be long.
  return Keep(InvalidArgument(
      field, "INVALID_OS_VERSION",
      absl::StrCat(field, " must be dotted numbers like \"14.4.1\" (at most ", kMaxOsVersionBytes,
                   " bytes), got \"", version.substr(0, kMaxOsVersionBytes), "\"")));
}

RequestCheck& RequestCheck::Platform(absl::string_view field, int platform) {
  if (!status_.ok() || (platform != v1::PLATFORM_UNSPECIFIED && v1::Platform_IsValid(platform))) {
    return *this;
  }
  return That(false, field, "MISSING_PLATFORM",
              absl::StrCat(field, " is required (PLATFORM_MACOS, PLATFORM_LINUX, ...)"));
}

RequestCheck& RequestCheck::ArtifactArch(absl::string_view field, int arch) {
  if (!status_.ok() || (arch != v1::ARCH_UNSPECIFIED && v1::Arch_IsValid(arch))) return *this;
  return That(false, field, "MISSING_ARCH",
              absl::StrCat(field, " is required (ARCH_ARM64, ARCH_X86_64 or ARCH_ANY)"));
}

RequestCheck& RequestCheck::DeviceArch(absl::string_view field, int arch) {
  if (!status_.ok() || arch == v1::ARCH_ARM64 || arch == v1::ARCH_X86_64) return *this;
  return That(false, field, "INVALID_ARCH",
              absl::StrCat(field, " must be the device's architecture: ARCH_ARM64 or ARCH_X86_64"));
}

RequestCheck& RequestCheck::Format(absl::string_view field, int format) {
  if (!status_.ok() || (format != v1::FORMAT_UNSPECIFIED && v1::Format_IsValid(format))) {
    return *this;
  }
  return That(false, field, "MISSING_FORMAT",
              absl::StrCat(field, " is required (FORMAT_COREML_ZIP, FORMAT_GGUF, ...)"));
}

RequestCheck& RequestCheck::Accelerators(absl::string_view field,
                                         const google::protobuf::RepeatedField<int>& accelerators,
                                         bool allow_unspecified) {
  for (int a : accelerators) {
    if (!status_.ok()) break;
    if (v1::Accelerator_IsValid(a) && (allow_unspecified || a != v1::ACCELERATOR_UNSPECIFIED)) {
      continue;
    }
    That(false, field, "INVALID_ACCELERATOR", absl::StrCat(field, " has an unknown value ", a));
  }
  return *this;
}

RequestCheck& RequestCheck::That(bool ok, absl::string_view field, absl::string_view reason,
                                 absl::string_view message) {
  if (ok || !status_.ok()) return *this;
  return Keep(InvalidArgument(field, reason, message));
}

}  // namespace modeldist::services
