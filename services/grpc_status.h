// File: grpc_status.h
//
// The one place where an absl::Status becomes a grpc::Status. The code and message carry
// over; the ErrorInfo payload (common/status.h) travels as `grpc-status-details-bin`, a
// serialized google.rpc.Status, so grpcurl and other clients can show the stable reason.
#ifndef MODELDIST_SERVICES_GRPC_STATUS_H_
#define MODELDIST_SERVICES_GRPC_STATUS_H_

#include <grpcpp/support/status.h>

#include "absl/status/status.h"

namespace modeldist::services {

grpc::Status ToGrpcStatus(const absl::Status& status);

// The inverse, for clients: code and message, plus the ErrorInfo when present.
absl::Status FromGrpcStatus(const grpc::Status& status);

}  // namespace modeldist::services

#endif  // MODELDIST_SERVICES_GRPC_STATUS_H_
