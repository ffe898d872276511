#include "services/malformed_request.h"

#include <google/protobuf/descriptor.h>

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "common/status.h"
#include "services/grpc_status.h"

namespace modeldist::services {
namespace {

using grpc::experimental::InterceptionHookPoints;

// One per unary call: remembers whether the request parsed until the status goes out.
class MalformedRequestInterceptor final : public grpc::experimental::Interceptor {
 public:
  explicit MalformedRequestInterceptor(std::string request_type)
      : request_type_(std::move(request_type)) {}

  void Intercept(grpc::experimental::InterceptorBatchMethods* methods) override {
    // The parsed request, or null: for a unary call the only reason is that it did not parse
    // (or never came), since there is exactly one message to receive.
    if (methods->QueryInterceptionHookPoint(InterceptionHookPoints::POST_RECV_MESSAGE) &&
        methods->GetRecvMessage() == nullptr) {
      malformed_ = true;
    }
    if (malformed_ &&
        methods->QueryInterceptionHookPoint(InterceptionHookPoints::PRE_SEND_STATUS)) {
      methods->ModifySendStatus(ToGrpcStatus(MalformedRequestError(request_type_)));
    }
    methods->Proceed();
  }

 private:
  const std::string request_type_;
  bool malformed_ = false;
};

}  // namespace

absl::Status MalformedRequestError(absl::string_view type_name) {
  return MakeError(absl::StatusCode::kInvalidArgument, "MALFORMED_REQUEST",
                   absl::StrCat("the request could not be parsed as a ", type_name,
                                " (the bytes are not that protobuf message)"),
                   {{"type", std::string(type_name)}});
}

grpc::experimental::Interceptor* MalformedRequestInterceptorFactory::CreateServerInterceptor(
    grpc::experimental::ServerRpcInfo* info) {
  // Streaming methods are left alone: see the file comment.
  if (info->type() != grpc::experimental::ServerRpcInfo::Type::UNARY) return nullptr;
  // "/modeldist.v1.ManifestService/GetManifest" -> "modeldist.v1.ManifestService.GetManifest".
  if (info->method() == nullptr) return nullptr;
  absl::string_view path = info->method();
  if (path.empty() || path[0] != '/') return nullptr;
  const google::protobuf::MethodDescriptor* method =
      google::protobuf::DescriptorPool::generated_pool()->FindMethodByName(
          absl::StrReplaceAll(path.substr(1), {{"/", "."}}));
  if (method == nullptr) return nullptr;
  return new MalformedRequestInterceptor(method->input_type()->full_name());
}

std::vector<std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>>
MalformedRequestInterceptors() {
  std::vector<std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>> creators;
  creators.push_back(std::make_unique<MalformedRequestInterceptorFactory>());
  return creators;
}

}  // namespace modeldist::services
