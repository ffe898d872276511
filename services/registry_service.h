// File: registry_service.h
//
// RegistryService: the admin API. Every rpc checks the admin token first, validates its
// request (errors name the field), then calls the catalog and blob store; after each
// successful change of what devices see, the manifest cache re-signs.
#ifndef MODELDIST_SERVICES_REGISTRY_SERVICE_H_
#define MODELDIST_SERVICES_REGISTRY_SERVICE_H_

#include "modeldist/v1/registry.grpc.pb.h"
#include "services/admin_auth.h"
#include "services/manifest_cache.h"
#include "storage/blob_store.h"
#include "storage/catalog.h"

namespace modeldist::services {

class RegistryServiceImpl final : public v1::RegistryService::Service {
 public:
  RegistryServiceImpl(storage::Catalog* catalog, storage::BlobStore* blobs,
                      ManifestCache* manifests, const AdminAuth* auth)
      : catalog_(catalog), blobs_(blobs), manifests_(manifests), auth_(auth) {}

  grpc::Status CreateModel(grpc::ServerContext* context, const v1::CreateModelRequest* request,
                           v1::Model* response) override;
  grpc::Status GetModel(grpc::ServerContext* context, const v1::GetModelRequest* request,
                        v1::Model* response) override;
  grpc::Status ListModels(grpc::ServerContext* context, const v1::ListModelsRequest* request,
                          v1::ListModelsResponse* response) override;
  grpc::Status CreateVersion(grpc::ServerContext* context, const v1::CreateVersionRequest* request,
                             v1::Version* response) override;
  grpc::Status GetVersion(grpc::ServerContext* context, const v1::GetVersionRequest* request,
                          v1::Version* response) override;
  grpc::Status ListVersions(grpc::ServerContext* context, const v1::ListVersionsRequest* request,
                            v1::ListVersionsResponse* response) override;
  grpc::Status WriteArtifact(grpc::ServerContext* context,
                             grpc::ServerReader<v1::WriteArtifactRequest>* reader,
                             v1::WriteArtifactResponse* response) override;
  grpc::Status QueryUpload(grpc::ServerContext* context, const v1::QueryUploadRequest* request,
                           v1::QueryUploadResponse* response) override;
  grpc::Status PublishVersion(grpc::ServerContext* context,
                              const v1::PublishVersionRequest* request,
                              v1::Version* response) override;
  grpc::Status YankVersion(grpc::ServerContext* context, const v1::YankVersionRequest* request,
                           v1::Version* response) override;
  grpc::Status SetTier(grpc::ServerContext* context, const v1::SetTierRequest* request,
                       v1::TierBinding* response) override;
  grpc::Status ListTiers(grpc::ServerContext* context, const v1::ListTiersRequest* request,
                         v1::ListTiersResponse* response) override;

 private:
  // Sets `uploaded` on every artifact from the blob store.
  void FillUploaded(v1::Version* version) const;
  absl::Status DoWriteArtifact(grpc::ServerReader<v1::WriteArtifactRequest>* reader,
                               v1::WriteArtifactResponse* response);
  // Re-signs manifests after a committed change. The change stands even if this fails (the
  // refresher retries); the failure is logged, not returned, so clients do not retry a write
  // that already happened.
  void Resign();

  storage::Catalog* catalog_;
  storage::BlobStore* blobs_;
  ManifestCache* manifests_;
  const AdminAuth* auth_;
};

}  // namespace modeldist::services

#endif  // MODELDIST_SERVICES_REGISTRY_SERVICE_H_
