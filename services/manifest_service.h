// File: manifest_service.h
//
// ManifestService: answers devices from the pre-signed ManifestCache, and serves the trust
// root chain from the KeyRing. Open to the fleet. On a pull-through cache every answer comes
// from the upstream instead (services/upstream_manifests.h).
#ifndef MODELDIST_SERVICES_MANIFEST_SERVICE_H_
#define MODELDIST_SERVICES_MANIFEST_SERVICE_H_

#include "modeldist/v1/manifest.grpc.pb.h"
#include "services/key_ring.h"
#include "services/manifest_cache.h"
#include "services/mirror_urls.h"
#include "services/upstream_manifests.h"

namespace modeldist::services {

// Uses the callback API: every rpc here is a lookup in memory that never blocks, so it runs on
// gRPC's own threads instead of being handed to a sync-server worker thread; the hand-offs
// dominated GetManifest's cost under load (docs/benchmarks.md).
class ManifestServiceImpl final : public v1::ManifestService::CallbackService {
 public:
  // `mirrors` (nullptr: no origin serves devices) adds SignedManifest.mirrors. `upstream`
  // (nullptr: none) answers every rpc, once the request is validated here. `cdn_url` (empty:
  // none; no trailing slash) is where devices reach the HTTP listener's blobs, a CDN whose
  // origin it is: its URL of the blob goes first among the mirrors.
  ManifestServiceImpl(const ManifestCache* cache, const KeyRing* keys,
                      MirrorUrls* mirrors = nullptr, UpstreamManifests* upstream = nullptr,
                      std::string cdn_url = "")
      : cache_(cache),
        keys_(keys),
        mirrors_(mirrors),
        upstream_(upstream),
        cdn_url_(std::move(cdn_url)) {}

  grpc::ServerUnaryReactor* GetManifest(grpc::CallbackServerContext* context,
                                        const v1::GetManifestRequest* request,
                                        v1::SignedManifest* response) override;
  grpc::ServerUnaryReactor* GetSigningKeys(grpc::CallbackServerContext* context,
                                           const v1::GetSigningKeysRequest* request,
                                           v1::GetSigningKeysResponse* response) override;
  grpc::ServerUnaryReactor* GetTrustRoot(grpc::CallbackServerContext* context,
                                         const v1::GetTrustRootRequest* request,
                                         v1::SignedTrustRoot* response) override;

  // GetManifest for callers off gRPC (the HTTP edge endpoint): the same validation, selection
  // (rollouts, pins) and mirrors, or the upstream's answer on a pull-through cache. Blocks on
  // the caller's thread, on the upstream for at most 30 seconds.
  grpc::Status Answer(const v1::GetManifestRequest& request, v1::SignedManifest* response) const;

 private:
  grpc::Status DoGetManifest(const v1::GetManifestRequest& request,
                             v1::SignedManifest* response) const;
  grpc::Status DoGetSigningKeys(v1::GetSigningKeysResponse* response) const;
  grpc::Status DoGetTrustRoot(const v1::GetTrustRootRequest& request,
                              v1::SignedTrustRoot* response) const;

  const ManifestCache* cache_;
  const KeyRing* keys_;
  MirrorUrls* mirrors_;
  UpstreamManifests* upstream_;
  const std::string cdn_url_;
};

}  // namespace modeldist::services

#endif  // MODELDIST_SERVICES_MANIFEST_SERVICE_H_
