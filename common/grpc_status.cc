#include "common/grpc_status.h"

#include <string>

#include "absl/strings/cord.h"
#include "absl/strings/str_cat.h"
#include "common/status.h"
#include "modeldist/v1/resources.pb.h"

namespace modeldist {

grpc::Status ToGrpcStatus(const absl::Status& status) {
  if (status.ok()) return grpc::Status::OK;
  auto code = static_cast<grpc::StatusCode>(status.code());
  std::string message(status.message());
  v1::RpcStatus details;
  details.set_code(static_cast<int>(status.code()));
  details.set_message(message);
  for (absl::string_view type_url : {kErrorInfoPayload, kRetryInfoPayload}) {
    if (auto payload = status.GetPayload(type_url); payload.has_value()) {
      auto* any = details.add_details();
      any->set_type_url(std::string(type_url));
      any->set_value(std::string(*payload));
    }
  }
  return grpc::Status(code, message, details.SerializeAsString());
}

absl::Status FromGrpcStatus(const grpc::Status& status, absl::string_view context) {
  if (status.ok()) return absl::OkStatus();
  absl::Status out(static_cast<absl::StatusCode>(status.error_code()),
                   context.empty() ? status.error_message()
                                   : absl::StrCat(context, ": ", status.error_message()));
  v1::RpcStatus details;
  if (status.error_details().empty() || !details.ParseFromString(status.error_details())) {
    return out;
  }
  // The type URLs name google.rpc's messages, which v1's mirror on the wire; Any::UnpackTo
  // would refuse them for the different message names. The first of each kind counts.
  for (const auto& any : details.details()) {
    v1::ErrorInfo info;
    if (any.type_url() == kErrorInfoPayload && !out.GetPayload(kErrorInfoPayload).has_value() &&
        info.ParseFromString(any.value())) {
      out.SetPayload(kErrorInfoPayload, absl::Cord(any.value()));
    }
    v1::RetryInfo retry;
    if (any.type_url() == kRetryInfoPayload && !out.GetPayload(kRetryInfoPayload).has_value() &&
        retry.ParseFromString(any.value())) {
      out.SetPayload(kRetryInfoPayload, absl::Cord(any.value()));
    }
  }
  return out;
}

}  // namespace modeldist
