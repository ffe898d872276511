// File: grpc_status.h
//
// The one mapping between absl::Status and grpc::Status, both ways, for the server and every
// client. The code and message carry over; the ErrorInfo payload (common/status.h), and the
// RetryInfo when there is one, travel as `grpc-status-details-bin`, a serialized
// google.rpc.Status, so grpcurl and other clients can show the stable reason, and modeldist's own
// clients (modeldistctl, the agent) can switch on it: ErrorReason(FromGrpcStatus(s)) is the reason
// the server set.
#ifndef MODELDIST_COMMON_GRPC_STATUS_H_
#define MODELDIST_COMMON_GRPC_STATUS_H_

#include <grpcpp/support/status.h>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace modeldist {

grpc::Status ToGrpcStatus(const absl::Status& status);

// The inverse, for clients: code and message, plus the first ErrorInfo of the details when
// present. A non-empty `context` (what was called, e.g. "GetManifest" or the source's address)
// prefixes the message: "context: message".
absl::Status FromGrpcStatus(const grpc::Status& status, absl::string_view context = {});

}  // namespace modeldist

#endif  // MODELDIST_COMMON_GRPC_STATUS_H_
