// File: request_validation.h
//
// How the services check a request's fields before anything touches the catalog or the blob
// store: a chain of named checks whose first failure is the answer, INVALID_ARGUMENT with an
// ErrorInfo reason and {"field": <field>} (common/status.h). The limits come from
// common/limits.h, the id and name syntax from common/names.h, so every rpc that takes the
// same kind of field refuses it the same way.
//
// Example (RegistryService.StartRollout):
//   std::string channel;
//   VersionName to;
//   MD_RETURN_IF_ERROR(RequestCheck()
//                          .TierChannel(request->tier(), request->channel(), &channel)
//                          .VersionName("to_version", request->to_version(), &to)
//                          .BasisPoints(request->basis_points())
//                          .status());
//
// Every check does nothing once an earlier one failed (nor writes its output), so a later
// check may assume the earlier ones passed.
#ifndef MODELDIST_SERVICES_REQUEST_VALIDATION_H_
#define MODELDIST_SERVICES_REQUEST_VALIDATION_H_

#include <google/protobuf/repeated_field.h>

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/limits.h"
#include "common/names.h"

namespace modeldist::services {

class RequestCheck {
 public:
  // An id (ValidateId): EMPTY_ID, ID_TOO_LONG or INVALID_ID.
  RequestCheck& Id(absl::string_view field, absl::string_view id);
  // As Id, but empty is allowed (an optional filter or a defaulted field).
  RequestCheck& OptionalId(absl::string_view field, absl::string_view id);
  // A tier and its channel, empty meaning kDefaultChannel; `*channel` gets the channel to use.
  RequestCheck& TierChannel(absl::string_view tier, absl::string_view channel,
                            std::string* channel_out);
  // `models/{model}` (INVALID_NAME or an id's reason); `*model` gets the model id.
  RequestCheck& ModelName(absl::string_view field, absl::string_view name, std::string* model);
  // `models/{model}/versions/{version}`; `*version` gets the parsed name.
  RequestCheck& VersionName(absl::string_view field, absl::string_view name,
                            modeldist::VersionName* version);
  // `sha256:<64 lowercase hex>` (MISSING_DIGEST, INVALID_DIGEST); `*hex` gets the hex digits
  // when given.
  RequestCheck& Digest(absl::string_view field, absl::string_view digest,
                       std::string* hex = nullptr);

  // At most `max_bytes` bytes: TEXT_TOO_LONG.
  RequestCheck& Text(absl::string_view field, absl::string_view text,
                     size_t max_bytes = kMaxTextBytes);
  // Not below 0: `reason` (e.g. INVALID_OFFSET); `hint` follows the message, e.g.
  // " (0 = to the end)".
  RequestCheck& NotNegative(absl::string_view field, int64_t value, absl::string_view reason,
                            absl::string_view hint = "");
  // In [min, max]: `reason`; `unit` follows the numbers in the message, e.g. " bytes".
  RequestCheck& Range(absl::string_view field, int64_t value, int64_t min, int64_t max,
                      absl::string_view reason, absl::string_view unit = "");
  // A list call's page size: not negative (INVALID_PAGE_SIZE); 0 means kDefaultPageSize.
  RequestCheck& PageSize(int32_t page_size);
  // A rollout share, 0..kMaxBasisPoints: INVALID_BASIS_POINTS.
  RequestCheck& BasisPoints(int32_t basis_points);
  // 1..kMaxDeviceIdsPerCall ids (INVALID_DEVICE_IDS), each 1..kMaxDeviceIdBytes bytes
  // (INVALID_DEVICE_ID, field `device_ids[i]`).
  RequestCheck& DeviceIds(const google::protobuf::RepeatedPtrField<std::string>& ids);
  // Empty, or IsDottedVersion: INVALID_OS_VERSION.
  RequestCheck& OsVersion(absl::string_view field, absl::string_view version);

  // A known platform other than PLATFORM_UNSPECIFIED: MISSING_PLATFORM.
  RequestCheck& Platform(absl::string_view field, int platform);
  // An artifact's arch: a known one other than ARCH_UNSPECIFIED (ARCH_ANY too): MISSING_ARCH.
  RequestCheck& ArtifactArch(absl::string_view field, int arch);
  // A device's arch: ARCH_ARM64 or ARCH_X86_64 only (a device has one): INVALID_ARCH.
  RequestCheck& DeviceArch(absl::string_view field, int arch);
  // A known format other than FORMAT_UNSPECIFIED: MISSING_FORMAT.
  RequestCheck& Format(absl::string_view field, int format);
  // Every value a known accelerator; with `allow_unspecified` false, not
  // ACCELERATOR_UNSPECIFIED either: INVALID_ACCELERATOR.
  RequestCheck& Accelerators(absl::string_view field,
                             const google::protobuf::RepeatedField<int>& accelerators,
                             bool allow_unspecified);

  // A rule of one rpc: unless `ok`, INVALID_ARGUMENT about `field` with `reason`, `message`.
  // The arguments are evaluated even after a failure: keep them cheap (this runs on every
  // request).
  RequestCheck& That(bool ok, absl::string_view field, absl::string_view reason,
                     absl::string_view message);

  // OK, or the first failure.
  const absl::Status& status() const { return status_; }

 private:
  // Keeps `status` when it is the first failure.
  RequestCheck& Keep(absl::Status status);
  // Keeps a failed parse, or moves its value to `*out` (when given).
  template <typename T>
  RequestCheck& Take(absl::StatusOr<T> parsed, T* out);

  absl::Status status_;
};

}  // namespace modeldist::services

#endif  // MODELDIST_SERVICES_REQUEST_VALIDATION_H_
