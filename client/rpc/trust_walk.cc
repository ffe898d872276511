#include "client/rpc/trust_walk.h"

#include <grpcpp/client_context.h>

#include <chrono>

#include "common/grpc_status.h"
#include "common/status.h"
#include "common/trust.h"

namespace modeldist::rpc {

absl::StatusOr<bool> AdvanceTrustRoot(v1::ManifestService::StubInterface& stub, v1::TrustRoot* root,
                                      v1::SignedTrustRoot* signed_root) {
  bool changed = false;
  for (;;) {
    v1::GetTrustRootRequest request;
    request.set_version(root->version() + 1);
    v1::SignedTrustRoot next;
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
    const grpc::Status s = stub.GetTrustRoot(&context, request, &next);
    if (s.error_code() == grpc::StatusCode::NOT_FOUND) return changed;
    if (!s.ok()) return FromGrpcStatus(s, "GetTrustRoot");
    MD_ASSIGN_OR_RETURN(*root, VerifyNextRoot(*root, next));
    *signed_root = std::move(next);
    changed = true;
  }
}

}  // namespace modeldist::rpc
