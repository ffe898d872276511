// File: call_observer.h
//
// A gRPC server interceptor that observes every call, unary and streaming: counts it in
// ServerMetrics (by method and status code, its duration, calls in progress) and writes its
// line to the RequestLog (bytes sent, peer, and the device id GetManifest names). It changes
// nothing of the call.
#ifndef MODELDIST_SERVICES_CALL_OBSERVER_H_
#define MODELDIST_SERVICES_CALL_OBSERVER_H_

#include <grpcpp/support/server_interceptor.h>

#include "services/request_log.h"
#include "services/server_metrics.h"

namespace modeldist::services {

class CallObserverFactory final : public grpc::experimental::ServerInterceptorFactoryInterface {
 public:
  // Both must outlive the server; `log` may be null (no lines).
  CallObserverFactory(ServerMetrics* metrics, const RequestLog* log)
      : metrics_(metrics), log_(log) {}
  grpc::experimental::Interceptor* CreateServerInterceptor(
      grpc::experimental::ServerRpcInfo* info) override;

 private:
  ServerMetrics* const metrics_;
  const RequestLog* const log_;
};

}  // namespace modeldist::services

#endif  // MODELDIST_SERVICES_CALL_OBSERVER_H_
