// File: trust_walk.h
//
// How a client that trusts root N learns the newest root: GetTrustRoot(N+1), N+2, ... until
// the server has no next one, each verified against the one before (common/trust.h), so the
// newest is as trusted as the root the walk began from. The agent walks before it verifies a
// manifest; a pull-through cache (services/upstream_manifests.h) walks its upstream's roots.
#ifndef MODELDIST_CLIENT_RPC_TRUST_WALK_H_
#define MODELDIST_CLIENT_RPC_TRUST_WALK_H_

#include "absl/status/statusor.h"
#include "modeldist/v1/manifest.grpc.pb.h"

namespace modeldist::rpc {

// Advances `*root` and `*signed_root` (its signed bytes) to the newest root the server at
// `stub` chains from them. Returns whether they changed. On error they stay at the last root
// that verified. Errors: the server's (FromGrpcStatus, "GetTrustRoot: ..."), or a next root
// that does not verify (ROOT_SIGNATURE_THRESHOLD_NOT_MET, MALFORMED_ROOT,
// ROOT_VERSION_NOT_NEXT). Each call waits at most 30 seconds.
absl::StatusOr<bool> AdvanceTrustRoot(v1::ManifestService::StubInterface& stub, v1::TrustRoot* root,
                                      v1::SignedTrustRoot* signed_root);

}  // namespace modeldist::rpc

#endif  // MODELDIST_CLIENT_RPC_TRUST_WALK_H_
