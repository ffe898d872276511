#include "services/call_observer.h"

#include <grpcpp/server_context.h>

#include <string>

#include "absl/status/status.h"
#include "absl/time/clock.h"
#include "modeldist/v1/manifest.pb.h"

namespace modeldist::services {
namespace {

using grpc::experimental::InterceptionHookPoints;

constexpr absl::string_view kGetManifest = "/modeldist.v1.ManifestService/GetManifest";

// gRPC's name of a status code ("NOT_FOUND"), as metrics and logs show it: gRPC's codes are
// absl's, number for number.
std::string CodeName(grpc::StatusCode code) {
  return absl::StatusCodeToString(static_cast<absl::StatusCode>(code));
}

// One per call, from its creation (the call's start) to its status.
class CallObserver final : public grpc::experimental::Interceptor {
 public:
  CallObserver(grpc::experimental::ServerRpcInfo* info, ServerMetrics* metrics,
               const RequestLog* log)
      : info_(info),
        metrics_(metrics),
        // Off: what only the log wants (bytes, device id) is not gathered.
        log_(log != nullptr && log->Enabled(LogLevel::kError) ? log : nullptr),
        start_(absl::Now()) {
    metrics_->grpc_active()->Add(1);
  }
  ~CallObserver() override { metrics_->grpc_active()->Add(-1); }

  void Intercept(grpc::experimental::InterceptorBatchMethods* methods) override {
    if (methods->QueryInterceptionHookPoint(InterceptionHookPoints::POST_RECV_MESSAGE) &&
        log_ != nullptr && info_->method() != nullptr && info_->method() == kGetManifest) {
      if (const auto* request =
              static_cast<const v1::GetManifestRequest*>(methods->GetRecvMessage());
          request != nullptr) {
        device_id_ = request->device_id();
      }
    }
    if (methods->QueryInterceptionHookPoint(InterceptionHookPoints::PRE_SEND_MESSAGE) &&
        log_ != nullptr) {
      if (grpc::ByteBuffer* message = methods->GetSerializedSendMessage(); message != nullptr) {
        bytes_ += static_cast<int64_t>(message->Length());
      }
    }
    if (methods->QueryInterceptionHookPoint(InterceptionHookPoints::PRE_SEND_STATUS)) {
      Finished(methods->GetSendStatus().error_code());
    }
    methods->Proceed();
  }

 private:
  void Finished(grpc::StatusCode code) {
    const absl::Duration took = absl::Now() - start_;
    const absl::string_view method = info_->method() == nullptr ? "" : info_->method();
    metrics_->RecordGrpc(method, CodeName(code), took);
    if (log_ == nullptr) return;
    RequestRecord record;
    record.start = start_;
    record.method = std::string(method);
    record.code = CodeName(code);
    if (!log_->Enabled(record.Level())) return;
    record.bytes = bytes_;
    record.duration = took;
    if (info_->server_context() != nullptr) record.peer = info_->server_context()->peer();
    record.device_id = std::move(device_id_);
    log_->Write(record);
  }

  grpc::experimental::ServerRpcInfo* const info_;
  ServerMetrics* const metrics_;
  const RequestLog* const log_;
  const absl::Time start_;
  int64_t bytes_ = 0;
  std::string device_id_;
};

}  // namespace

grpc::experimental::Interceptor* CallObserverFactory::CreateServerInterceptor(
    grpc::experimental::ServerRpcInfo* info) {
  return new CallObserver(info, metrics_, log_);
}

}  // namespace modeldist::services
