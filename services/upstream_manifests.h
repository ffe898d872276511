// File: upstream_manifests.h
//
// A pull-through cache's ManifestService (docs/origins.md, "Pull-through cache"): every answer
// comes from the upstream modeldist-server named by the origin with
// `modeldist.forward_manifests`, so devices keep the upstream's trust root and get exactly its
// signed manifests, while their Reads come here and each blob crosses the uplink once.
//
// A forwarded manifest is verified against the upstream's pinned trust root
// (`modeldist.trust_root_file`, advanced along the roots the upstream chains from it) and must
// answer the request (tier, channel, platform, arch). Only then is its artifact's chunk chain
// recorded in the catalog, which lets read-through (services/read_through.h) fetch the blob
// from the origins and check each chunk before a byte of it is stored or sent: the chain is
// as trusted as the root, not the network path. SignedManifest.mirrors (unsigned) are dropped:
// they would send devices past the cache.
//
// Each call blocks on the upstream, so the service runs them on a pool of their own. Thread-safe.
#ifndef MODELDIST_SERVICES_UPSTREAM_MANIFESTS_H_
#define MODELDIST_SERVICES_UPSTREAM_MANIFESTS_H_

#include <grpcpp/support/status.h>

#include <chrono>
#include <functional>
#include <memory>
#include <set>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "modeldist/v1/manifest.grpc.pb.h"
#include "modeldist/v1/origins.pb.h"
#include "services/blocking_pool.h"
#include "storage/catalog.h"

namespace modeldist::services {

class UpstreamManifests {
 public:
  // For the origin `config` (a modeldist origin with forward_manifests). Reads and verifies
  // the pinned root now, so that a wrong file stops the start; connects lazily. `catalog`
  // must outlive this.
  static absl::StatusOr<std::unique_ptr<UpstreamManifests>> Create(const v1::Origin& config,
                                                                   storage::Catalog* catalog);

  // Runs `call` on the forwarding pool.
  void Run(std::function<void()> call) { pool_.Run(std::move(call)); }

  // The upstream's answers (blocking), each waiting until `deadline` at most (the caller's,
  // capped). Errors of the upstream come back as it sent them, with their details; one that
  // cannot be reached is UNAVAILABLE (UPSTREAM_UNAVAILABLE), a manifest that does not verify
  // or answers another request UNAVAILABLE (UPSTREAM_UNTRUSTED).
  grpc::Status GetManifest(const v1::GetManifestRequest& request,
                           std::chrono::system_clock::time_point deadline,
                           v1::SignedManifest* response) ABSL_LOCKS_EXCLUDED(mu_);
  grpc::Status GetSigningKeys(std::chrono::system_clock::time_point deadline,
                              v1::GetSigningKeysResponse* response);
  grpc::Status GetTrustRoot(const v1::GetTrustRootRequest& request,
                            std::chrono::system_clock::time_point deadline,
                            v1::SignedTrustRoot* response);

 private:
  UpstreamManifests(std::string name, std::string target, storage::Catalog* catalog,
                    std::unique_ptr<v1::ManifestService::Stub> stub)
      : name_(std::move(name)),
        target_(std::move(target)),
        catalog_(catalog),
        stub_(std::move(stub)) {}

  // The manifest, verified by the newest root the upstream chains from the pinned one (walked
  // again once when the current root does not verify it: the upstream may have rotated keys).
  absl::StatusOr<v1::Manifest> Verify(const v1::SignedManifest& signed_manifest)
      ABSL_LOCKS_EXCLUDED(mu_);
  // Records the artifact's chain for read-through, once per digest.
  void RecordChain(const v1::ManifestArtifact& artifact) ABSL_LOCKS_EXCLUDED(mu_);
  // A failed call of the upstream, as devices get it.
  grpc::Status Failed(const grpc::Status& status, const char* method) const;

  const std::string name_;
  const std::string target_;
  storage::Catalog* const catalog_;
  const std::unique_ptr<v1::ManifestService::Stub> stub_;

  absl::Mutex mu_;
  v1::TrustRoot root_ ABSL_GUARDED_BY(mu_);
  v1::SignedTrustRoot signed_root_ ABSL_GUARDED_BY(mu_);
  std::set<std::string> recorded_ ABSL_GUARDED_BY(mu_);  // digests whose chain is recorded
  // Last: its threads finish their calls before the members above go.
  BlockingPool pool_{8};
};

}  // namespace modeldist::services

#endif  // MODELDIST_SERVICES_UPSTREAM_MANIFESTS_H_
