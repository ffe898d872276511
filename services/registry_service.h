// File: registry_service.h
//
// RegistryService: the admin API. Every rpc authenticates its caller and checks the rpc's
// scope first (services/admin_auth.h), validates its
// request (errors name the field), then calls the catalog and blob store; after each
// successful change of what devices see, the manifest cache re-signs.
#ifndef MODELDIST_SERVICES_REGISTRY_SERVICE_H_
#define MODELDIST_SERVICES_REGISTRY_SERVICE_H_

#include <optional>
#include <utility>

#include "common/model_check/model_check.h"
#include "modeldist/v1/registry.grpc.pb.h"
#include "services/admin_auth.h"
#include "services/blob_health.h"
#include "services/fleet_stats.h"
#include "services/key_ring.h"
#include "services/manifest_cache.h"
#include "services/replicator.h"
#include "services/rollout_autopilot.h"
#include "services/scrubber.h"
#include "services/upload_limits.h"
#include "storage/blob_store.h"
#include "storage/catalog.h"
#include "storage/origin/origin_set.h"

namespace modeldist::services {

class RegistryServiceImpl final : public v1::RegistryService::Service {
 public:
  // `health` is told when an upload stores a blob, which heals one recorded as damaged.
  // `scrubber` runs ScrubBlobs.
  // `origins` (nullptr: none configured) answers ListOrigins and CheckOrigin; `replicator`
  // (nullptr: none replicates) is woken by each publish. `model_checks` (nullopt: off):
  // PublishVersion refuses GGUF and CoreML zip artifacts that fail the model checks with these
  // options (services/publish_checks.h).
  RegistryServiceImpl(
      storage::Catalog* catalog, storage::BlobStore* blobs, ManifestCache* manifests, KeyRing* keys,
      const AdminAuth* auth, BlobHealth* health, Scrubber* scrubber,
      const origin::OriginSet* origins = nullptr, Replicator* replicator = nullptr,
      std::optional<model_check::CheckOptions> model_checks = model_check::CheckOptions(),
      UploadLimiter* uploads = nullptr)
      : model_checks_(std::move(model_checks)),
        catalog_(catalog),
        blobs_(blobs),
        manifests_(manifests),
        keys_(keys),
        auth_(auth),
        health_(health),
        scrubber_(scrubber),
        origins_(origins),
        replicator_(replicator),
        uploads_(uploads) {}

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
  grpc::Status StartRollout(grpc::ServerContext* context, const v1::StartRolloutRequest* request,
                            v1::Rollout* response) override;
  grpc::Status AdvanceRollout(grpc::ServerContext* context,
                              const v1::AdvanceRolloutRequest* request,
                              v1::Rollout* response) override;
  grpc::Status PauseRollout(grpc::ServerContext* context, const v1::RolloutRequest* request,
                            v1::Rollout* response) override;
  grpc::Status ResumeRollout(grpc::ServerContext* context, const v1::RolloutRequest* request,
                             v1::Rollout* response) override;
  grpc::Status CompleteRollout(grpc::ServerContext* context, const v1::RolloutRequest* request,
                               v1::Rollout* response) override;
  grpc::Status AbortRollout(grpc::ServerContext* context, const v1::RolloutRequest* request,
                            v1::Rollout* response) override;
  grpc::Status ListRollouts(grpc::ServerContext* context, const v1::ListRolloutsRequest* request,
                            v1::ListRolloutsResponse* response) override;
  // services/rollout_status.cc.
  grpc::Status GetRolloutStatus(grpc::ServerContext* context, const v1::RolloutRequest* request,
                                v1::RolloutStatus* response) override;
  // Where rollout changes read the report counts their steps record, and which GetRolloutStatus
  // reports (nullptr, the default: every count reads 0). Set before serving; outlives this.
  void set_autopilot(RolloutAutopilot* autopilot) { autopilot_ = autopilot; }
  // services/fleet_admin.cc.
  grpc::Status GetFleetSummary(grpc::ServerContext* context,
                               const v1::GetFleetSummaryRequest* request,
                               v1::FleetSummary* response) override;
  // What GetFleetSummary reads (nullptr, the default: an empty summary). Set before serving;
  // outlives this.
  void set_fleet(const FleetStats* fleet) { fleet_ = fleet; }
  grpc::Status PinDevices(grpc::ServerContext* context, const v1::PinDevicesRequest* request,
                          v1::PinDevicesResponse* response) override;
  grpc::Status UnpinDevices(grpc::ServerContext* context, const v1::UnpinDevicesRequest* request,
                            v1::PinDevicesResponse* response) override;
  grpc::Status ListPins(grpc::ServerContext* context, const v1::ListPinsRequest* request,
                        v1::ListPinsResponse* response) override;
  grpc::Status ListAuditLog(grpc::ServerContext* context, const v1::ListAuditLogRequest* request,
                            v1::ListAuditLogResponse* response) override;
  grpc::Status AddSigningKey(grpc::ServerContext* context, const v1::AddSigningKeyRequest* request,
                             v1::SignedTrustRoot* response) override;
  grpc::Status RevokeSigningKey(grpc::ServerContext* context,
                                const v1::RevokeSigningKeyRequest* request,
                                v1::SignedTrustRoot* response) override;
  grpc::Status RotateSigningKeys(grpc::ServerContext* context,
                                 const v1::RotateSigningKeysRequest* request,
                                 v1::SignedTrustRoot* response) override;
  // UploadTrustRoot and AttachRelease: services/key_ring_upload.cc, services/release_admin.h.
  grpc::Status UploadTrustRoot(grpc::ServerContext* context,
                               const v1::UploadTrustRootRequest* request,
                               v1::SignedTrustRoot* response) override;
  grpc::Status AttachRelease(grpc::ServerContext* context, const v1::AttachReleaseRequest* request,
                             v1::Version* response) override;
  grpc::Status ScrubBlobs(grpc::ServerContext* context, const v1::ScrubBlobsRequest* request,
                          grpc::ServerWriter<v1::ScrubBlobsResponse>* writer) override;
  grpc::Status ListOrigins(grpc::ServerContext* context, const v1::ListOriginsRequest* request,
                           v1::ListOriginsResponse* response) override;
  grpc::Status CheckOrigin(grpc::ServerContext* context, const v1::CheckOriginRequest* request,
                           v1::CheckOriginResponse* response) override;
  // services/credential_admin.h.
  grpc::Status CreateCredential(grpc::ServerContext* context,
                                const v1::CreateCredentialRequest* request,
                                v1::CreateCredentialResponse* response) override;
  grpc::Status ListCredentials(grpc::ServerContext* context,
                               const v1::ListCredentialsRequest* request,
                               v1::ListCredentialsResponse* response) override;
  grpc::Status RevokeCredential(grpc::ServerContext* context,
                                const v1::RevokeCredentialRequest* request,
                                v1::Credential* response) override;
  // services/blob_import.h.
  grpc::Status ImportArtifact(grpc::ServerContext* context,
                              const v1::ImportArtifactRequest* request,
                              grpc::ServerWriter<v1::ImportArtifactProgress>* writer) override;

 private:
  // Sets the output-only fields of every artifact: `uploaded` from the blob store, `replicas`
  // from the replication queue.
  absl::Status FillStatus(v1::Version* version) const;
  absl::Status DoWriteArtifact(grpc::ServerReaderInterface<v1::WriteArtifactRequest>* reader,
                               v1::WriteArtifactResponse* response);
  // WriteArtifact for an upload session; `first` is the stream's first message.
  absl::Status DoWriteSession(grpc::ServerReaderInterface<v1::WriteArtifactRequest>* reader,
                              v1::WriteArtifactRequest& first, v1::WriteArtifactResponse* response);
  // Re-signs manifests after a committed change. The change stands even if this fails (the
  // refresher retries); the failure is logged, not returned, so clients do not retry a write
  // that already happened.
  void Resign();
  // Runs one rollout state change (pause, resume, complete, abort) after validating the
  // tier/channel, then re-signs.
  // Runs one key change, `change(actor)` with the authenticated caller's name (the catalog
  // audits the new root under it), and re-signs every manifest.
  template <typename Change>
  grpc::Status KeyChange(grpc::ServerContext* context, absl::string_view method,
                         v1::SignedTrustRoot* response, Change change);
  template <typename Change>
  grpc::Status RolloutChange(grpc::ServerContext* context, absl::string_view method,
                             const v1::RolloutRequest& request, v1::Rollout* response,
                             Change change);

  const std::optional<model_check::CheckOptions> model_checks_;
  storage::Catalog* catalog_;
  storage::BlobStore* blobs_;
  ManifestCache* manifests_;
  KeyRing* keys_;
  const AdminAuth* auth_;
  BlobHealth* health_;
  Scrubber* scrubber_;
  const origin::OriginSet* origins_;
  Replicator* replicator_;
  UploadLimiter* uploads_;  // nullptr: upload streams are not limited
  RolloutAutopilot* autopilot_ = nullptr;
  const FleetStats* fleet_ = nullptr;
};

}  // namespace modeldist::services

#endif  // MODELDIST_SERVICES_REGISTRY_SERVICE_H_
