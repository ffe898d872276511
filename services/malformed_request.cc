#include "services/malformed_request.h"

#include <google/protobuf/descriptor.h>

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/status.h"
#include "common/grpc_status.h"

namespace modeldist::services {
namespace {

using grpc::experimental::InterceptionHookPoints;

// The services whose unary methods the factory covers.
constexpr absl::string_view kServices[] = {"modeldist.v1.RegistryService",
                                           "modeldist.v1.ManifestService",
                                           "modeldist.v1.ArtifactService", "grpc.health.v1.Health"};

// One per unary call: remembers whether the request parsed until the status goes out.
class MalformedRequestInterceptor final : public grpc::experimental::Interceptor {
 public:
  // `request_type` is owned by the factory, which outlives every call.
  explicit MalformedRequestInterceptor(const std::string* request_type)
      : request_type_(request_type) {}

  void Intercept(grpc::experimental::InterceptorBatchMethods* methods) override {
    // The parsed request, or null: for a unary call the only reason is that it did not parse
    // (or never came), since there is exactly one message to receive.
    if (methods->QueryInterceptionHookPoint(InterceptionHookPoints::POST_RECV_MESSAGE) &&
        methods->GetRecvMessage() == nullptr) {
      malformed_ = true;
    }
    if (malformed_ &&
        methods->QueryInterceptionHookPoint(InterceptionHookPoints::PRE_SEND_STATUS)) {
      methods->ModifySendStatus(ToGrpcStatus(MalformedRequestError(*request_type_)));
    }
    methods->Proceed();
  }

 private:
  const std::string* const request_type_;
  bool malformed_ = false;
};

}  // namespace

absl::Status MalformedRequestError(absl::string_view type_name) {
  return MakeError(absl::StatusCode::kInvalidArgument, "MALFORMED_REQUEST",
                   absl::StrCat("the request could not be parsed as a ", type_name,
                                " (the bytes are not that protobuf message)"),
                   {{"type", std::string(type_name)}});
}

MalformedRequestInterceptorFactory::MalformedRequestInterceptorFactory() {
  // Every method of every service in the generated pool that a server may register, by the
  // path gRPC names it with: "/modeldist.v1.ManifestService/GetManifest". Built once, so a
  // call costs one hash lookup and no allocation beyond the interceptor (GetManifest is the
  // fleet's hot path).
  const google::protobuf::DescriptorPool* pool = google::protobuf::DescriptorPool::generated_pool();
  for (absl::string_view service_name : kServices) {
    const google::protobuf::ServiceDescriptor* service =
        pool->FindServiceByName(std::string(service_name));
    if (service == nullptr) continue;
    for (int i = 0; i < service->method_count(); ++i) {
      const google::protobuf::MethodDescriptor* method = service->method(i);
      if (method->client_streaming() || method->server_streaming()) continue;
      request_types_[absl::StrCat("/", service->full_name(), "/", method->name())] =
          method->input_type()->full_name();
    }
  }
}

grpc::experimental::Interceptor* MalformedRequestInterceptorFactory::CreateServerInterceptor(
    grpc::experimental::ServerRpcInfo* info) {
  // Streaming methods are left alone: see the file comment.
  if (info->type() != grpc::experimental::ServerRpcInfo::Type::UNARY || info->method() == nullptr) {
    return nullptr;
  }
  auto it = request_types_.find(absl::string_view(info->method()));
  if (it == request_types_.end()) return nullptr;
  return new MalformedRequestInterceptor(&it->second);
}

std::vector<std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>>
MalformedRequestInterceptors() {
  std::vector<std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>> creators;
  creators.push_back(std::make_unique<MalformedRequestInterceptorFactory>());
  return creators;
}

}  // namespace modeldist::services
