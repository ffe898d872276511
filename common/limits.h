// File: limits.h
//
// The limits on what clients send, in one place: the server's request validation
// (services/request_validation.h), the catalog's paging, and the clients that check their
// input before sending it (so that a batch is never sent when the server is bound to refuse
// it) all use these. The proto comments state the same numbers; changing one here changes the
// API.
#ifndef MODELDIST_COMMON_LIMITS_H_
#define MODELDIST_COMMON_LIMITS_H_

#include <cstddef>
#include <cstdint>

#include "absl/strings/string_view.h"

namespace modeldist {

// A model, version, tier or channel id (common/names.h).
inline constexpr size_t kMaxIdLength = 128;

// A device id (GetManifestRequest.device_id, PinDevicesRequest.device_ids), in bytes.
inline constexpr size_t kMaxDeviceIdBytes = 128;
// Device ids in one PinDevices or UnpinDevices call.
inline constexpr int kMaxDeviceIdsPerCall = 1000;

// A rollout's share of devices is in 1/100 of a percent: 0..kMaxBasisPoints.
inline constexpr int32_t kMaxBasisPoints = 10000;

// List calls: a page_size of 0 means kDefaultPageSize; larger ones are cut to kMaxPageSize.
inline constexpr int kDefaultPageSize = 100;
inline constexpr int kMaxPageSize = 1000;

// Free text for people (a model's description, a yank reason), in bytes.
inline constexpr size_t kMaxTextBytes = 1024;
// GetManifestRequest.app_version, in bytes.
inline constexpr size_t kMaxAppVersionBytes = 64;
// FleetService.ReportStatus: reports in one call, a report's reason (UPPER_SNAKE) and the
// agent_version, in bytes (app_version: kMaxAppVersionBytes).
inline constexpr int kMaxStatusReportsPerCall = 100;
inline constexpr size_t kMaxStatusReasonBytes = 64;
inline constexpr size_t kMaxAgentVersionBytes = 64;
// Artifacts in one version.
inline constexpr int kMaxArtifactsPerVersion = 64;
// Origins named in one Model.replicate_to or Version.replicate_to.
inline constexpr int kMaxReplicateTo = 16;

// An OS version (ArtifactConstraints.min_os_version, DeviceInfo.os_version), in bytes.
inline constexpr size_t kMaxOsVersionBytes = 32;

// True when `text` is an OS version as the server compares them: dotted numbers such as `14`
// or `14.4.1`, 1 to kMaxOsVersionBytes bytes, no empty part. An empty field means "none" to
// the API and is checked by the caller, not here.
constexpr bool IsDottedVersion(absl::string_view text) {
  if (text.empty() || text.size() > kMaxOsVersionBytes) return false;
  bool part_empty = true;
  for (char c : text) {
    if (c == '.') {
      if (part_empty) return false;
      part_empty = true;
    } else if (c >= '0' && c <= '9') {
      part_empty = false;
    } else {
      return false;
    }
  }
  return !part_empty;
}

// True when `reason` is what a status report may carry as its reason: UPPER_SNAKE
// ([A-Z][A-Z0-9_]*), 1 to kMaxStatusReasonBytes bytes (an ErrorInfo reason's shape).
constexpr bool IsStatusReason(absl::string_view reason) {
  if (reason.empty() || reason.size() > kMaxStatusReasonBytes) return false;
  if (reason[0] < 'A' || reason[0] > 'Z') return false;
  for (char c : reason) {
    if (!((c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_')) return false;
  }
  return true;
}

}  // namespace modeldist

#endif  // MODELDIST_COMMON_LIMITS_H_
