// File: malformed_request.h
//
// What the server answers to request bytes that do not parse as the method's request message:
// INVALID_ARGUMENT, reason MALFORMED_REQUEST, a message naming the expected type, like every
// other error (common/status.h, common/grpc_status.h).
//
// gRPC 1.51 parses a request before any of our code runs, and on failure answers by itself:
//   - a sync unary method (RegistryService): the generated RpcMethodHandler passes on the
//     status of SerializationTraits::Deserialize, INTERNAL with
//     MessageLite::InitializationErrorString() as the message, which is empty for proto3
//     (grpcpp/support/method_handler.h, grpcpp/impl/codegen/proto_utils.h);
//   - a callback unary method (ManifestService): CallbackUnaryHandler drops that status and
//     finishes the call with UNIMPLEMENTED and an empty message, as if the method did not
//     exist (grpcpp/impl/codegen/server_callback_handlers.h).
// Neither handler can be replaced per service, and SerializationTraits is per message type
// for the whole process, so the answer is corrected on its way out by a server interceptor:
// gRPC runs POST_RECV_MESSAGE on the parsed request, which is null exactly when a unary
// request did not parse (or there was none), and then lets PRE_SEND_STATUS replace the
// status it sends. The request types come from the generated descriptors of the services,
// read once when the factory is made.
//
// Not covered by the interceptor, by design or by necessity:
//   - ArtifactService.Read is a raw callback method (artifact_service.h): gRPC hands it the
//     bytes as they came, and it parses them itself, answering with MalformedRequestError;
//   - RegistryService.WriteArtifact is client-streaming: there gRPC's ServerReader::Read
//     returns false both at the end of the stream and for a message that does not parse, and
//     POST_RECV_MESSAGE sees a null message in both cases (grpcpp/impl/call_op_set.h,
//     CallOpRecvMessage), so neither the service nor an interceptor can tell a garbled message
//     from a client that stopped sending. It answers as for a stream that ended there.
#ifndef MODELDIST_SERVICES_MALFORMED_REQUEST_H_
#define MODELDIST_SERVICES_MALFORMED_REQUEST_H_

#include <grpcpp/support/server_interceptor.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace modeldist::services {

// INVALID_ARGUMENT, reason MALFORMED_REQUEST (metadata {"type": type_name}): the request could
// not be parsed as a `type_name` (a full protobuf message name, e.g.
// modeldist.v1.GetManifestRequest).
absl::Status MalformedRequestError(absl::string_view type_name);

// Gives every unary method of modeldist's services (and grpc.health.v1) the answer of
// MalformedRequestError when its request does not parse. Other methods get no interceptor,
// so they pay nothing for it.
class MalformedRequestInterceptorFactory final
    : public grpc::experimental::ServerInterceptorFactoryInterface {
 public:
  MalformedRequestInterceptorFactory();
  grpc::experimental::Interceptor* CreateServerInterceptor(
      grpc::experimental::ServerRpcInfo* info) override;

 private:
  // Method path ("/package.Service/Method") -> full name of its request type.
  absl::flat_hash_map<std::string, std::string> request_types_;
};

// The server's interceptor creators, for ServerBuilder::experimental().SetInterceptorCreators:
// a MalformedRequestInterceptorFactory.
std::vector<std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>>
MalformedRequestInterceptors();

}  // namespace modeldist::services

#endif  // MODELDIST_SERVICES_MALFORMED_REQUEST_H_
