// File: status.h
//
// absl::Status helpers used everywhere inside modeldist. Errors carry a stable
// UPPER_SNAKE_CASE reason and the fields they are about (AIP-193 ErrorInfo), attached as a
// payload so the service edge (common/grpc_status.h) can turn them into gRPC details.
//
// Example:
//   if (id.empty()) return InvalidArgument("model_id", "EMPTY_ID", "model_id is required");
//   MD_ASSIGN_OR_RETURN(std::string hex, ParseDigest("digest", request.digest()));
#ifndef MODELDIST_COMMON_STATUS_H_
#define MODELDIST_COMMON_STATUS_H_

#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace modeldist {

// The payload type URL under which the ErrorInfo of a status is stored.
inline constexpr absl::string_view kErrorInfoPayload = "type.googleapis.com/google.rpc.ErrorInfo";

// The payload type URL of a status's RetryInfo (WithRetryDelay).
inline constexpr absl::string_view kRetryInfoPayload = "type.googleapis.com/google.rpc.RetryInfo";

using ErrorMetadata = std::vector<std::pair<std::string, std::string>>;

// Returns a status with `code`, `message`, and an ErrorInfo {reason, metadata}.
absl::Status MakeError(absl::StatusCode code, absl::string_view reason, absl::string_view message,
                       const ErrorMetadata& metadata = {});

// INVALID_ARGUMENT about one request field; metadata gets {"field": field}.
absl::Status InvalidArgument(absl::string_view field, absl::string_view reason,
                             absl::string_view message);

// `status` with `message` instead of its own, keeping the code and every payload (the
// ErrorInfo reason included); a status built anew from the code and a message would drop the
// reason. OK stays OK.
absl::Status WithMessage(const absl::Status& status, absl::string_view message);
// WithMessage(status, "context: " + its message).
absl::Status WithContext(const absl::Status& status, absl::string_view context);

// `status` with a RetryInfo saying to wait `delay` before trying again (gRPC clients see it in
// the status details). OK stays OK.
absl::Status WithRetryDelay(const absl::Status& status, absl::Duration delay);
// The RetryInfo delay of `status`, or nullopt when it has none.
std::optional<absl::Duration> RetryDelay(const absl::Status& status);

// Returns the ErrorInfo reason of `status`, or "" when it has none.
std::string ErrorReason(const absl::Status& status);

// Returns metadata[key] of the ErrorInfo of `status`, or "".
std::string ErrorMetadataValue(const absl::Status& status, absl::string_view key);

}  // namespace modeldist

#define MD_STATUS_CONCAT_INNER_(a, b) a##b
#define MD_STATUS_CONCAT_(a, b) MD_STATUS_CONCAT_INNER_(a, b)

// Evaluates `expr` (an absl::Status); returns it from the enclosing function if not OK.
#define MD_RETURN_IF_ERROR(expr)             \
  do {                                       \
    ::absl::Status md_status_ = (expr);      \
    if (!md_status_.ok()) return md_status_; \
  } while (false)

// Evaluates `expr` (an absl::StatusOr<T>); returns its status if not OK, else moves the value
// into `lhs` (a declaration or an lvalue).
#define MD_ASSIGN_OR_RETURN(lhs, expr) \
  MD_ASSIGN_OR_RETURN_IMPL_(MD_STATUS_CONCAT_(md_statusor_, __LINE__), lhs, expr)
#define MD_ASSIGN_OR_RETURN_IMPL_(statusor, lhs, expr)     \
  auto statusor = (expr);                                  \
  if (!statusor.ok()) return std::move(statusor).status(); \
  lhs = std::move(statusor).value()

#endif  // MODELDIST_COMMON_STATUS_H_
