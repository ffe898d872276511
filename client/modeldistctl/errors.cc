#include "client/modeldistctl/errors.h"

#include "absl/strings/cord.h"
#include "absl/strings/str_cat.h"
#include "common/status.h"

namespace modeldist::ctl {
namespace {

// The payload that marks a status made by the CLI itself; its value is the kind.
constexpr absl::string_view kKindPayload = "type.modeldist.dev/modeldistctl.ErrorKind";
constexpr absl::string_view kUsage = "usage";
constexpr absl::string_view kLocal = "local";
constexpr absl::string_view kDamage = "damage";

std::string Kind(const absl::Status& status) {
  auto payload = status.GetPayload(kKindPayload);
  return payload.has_value() ? std::string(*payload) : "";
}

}  // namespace

absl::Status UsageError(absl::string_view message) {
  absl::Status status = absl::InvalidArgumentError(message);
  status.SetPayload(kKindPayload, absl::Cord(kUsage));
  return status;
}

absl::Status LocalError(absl::Status status) {
  if (!status.ok()) status.SetPayload(kKindPayload, absl::Cord(kLocal));
  return status;
}

absl::Status DamageFound(absl::string_view message) {
  absl::Status status = absl::DataLossError(message);
  status.SetPayload(kKindPayload, absl::Cord(kDamage));
  return status;
}

ExitCode ExitCodeFor(const absl::Status& status) {
  if (status.ok()) return kExitOk;
  std::string kind = Kind(status);
  if (kind == kUsage) return kExitUsage;
  if (kind == kLocal) return kExitLocal;
  if (kind == kDamage) return kExitDamage;
  return kExitRpc;
}

std::string DescribeError(const absl::Status& status) {
  if (status.ok()) return "OK";
  if (ExitCodeFor(status) != kExitRpc) return std::string(status.message());
  std::string out = absl::StrCat(absl::StatusCodeToString(status.code()), ": ", status.message());
  if (std::string reason = ErrorReason(status); !reason.empty()) {
    absl::StrAppend(&out, " [", reason, "]");
  }
  return out;
}

}  // namespace modeldist::ctl
