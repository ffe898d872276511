// File: manifest_service.h
//
// ManifestService: answers devices from the pre-signed ManifestCache, and serves the trust
// root chain from the KeyRing. Open to the fleet.
#ifndef MODELDIST_SERVICES_MANIFEST_SERVICE_H_
#define MODELDIST_SERVICES_MANIFEST_SERVICE_H_

#include "modeldist/v1/manifest.grpc.pb.h"
#include "services/key_ring.h"
#include "services/manifest_cache.h"

namespace modeldist::services {

class ManifestServiceImpl final : public v1::ManifestService::Service {
 public:
  ManifestServiceImpl(const ManifestCache* cache, const KeyRing* keys)
      : cache_(cache), keys_(keys) {}

  grpc::Status GetManifest(grpc::ServerContext* context, const v1::GetManifestRequest* request,
                           v1::SignedManifest* response) override;
  grpc::Status GetSigningKeys(grpc::ServerContext* context,
                              const v1::GetSigningKeysRequest* request,
                              v1::GetSigningKeysResponse* response) override;
  grpc::Status GetTrustRoot(grpc::ServerContext* context, const v1::GetTrustRootRequest* request,
                            v1::SignedTrustRoot* response) override;

 private:
  const ManifestCache* cache_;
  const KeyRing* keys_;
};

}  // namespace modeldist::services

#endif  // MODELDIST_SERVICES_MANIFEST_SERVICE_H_
