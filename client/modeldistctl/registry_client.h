// File: registry_client.h
//
// The CLI's view of RegistryService: one method per unary rpc returning absl::StatusOr, each
// call carrying `authorization: Bearer <token>` and a deadline. The server's audit log names
// the token's credential, so the CLI sends no name of its own. Server errors keep their code,
// message and ErrorInfo reason (common/status.h), so the CLI can print them as sent.
//
// The token is held only to build call metadata; nothing here logs or formats it.
#ifndef MODELDIST_CLIENT_MODELDISTCTL_REGISTRY_CLIENT_H_
#define MODELDIST_CLIENT_MODELDISTCTL_REGISTRY_CLIENT_H_

#include <grpcpp/channel.h>
#include <grpcpp/client_context.h>
#include <grpcpp/support/status.h>

#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "common/grpc_status.h"  // FromGrpcStatus, for every rpc answer of the CLI
#include "modeldist/v1/manifest.grpc.pb.h"
#include "modeldist/v1/registry.grpc.pb.h"

namespace modeldist::ctl {

// A channel to `server` (HOST:PORT): plaintext when `tls_ca_file` is empty, else TLS trusting
// only the PEM certificates in that file. A CA file that cannot be read is a local error.
absl::StatusOr<std::shared_ptr<grpc::Channel>> CreateRegistryChannel(
    const std::string& server, const std::string& tls_ca_file);

// The admin token: the first line of `token_file` (whitespace trimmed) when it is given, else
// the value of MODELDIST_ADMIN_TOKEN as returned by `getenv`. A usage error when there is
// none or it has characters a header cannot carry; a local error when the file cannot be read.
// Messages never include the token.
absl::StatusOr<std::string> LoadAdminToken(
    const std::string& token_file,
    const std::function<std::optional<std::string>(const std::string&)>& getenv);

// ManifestService.GetTrustRoot: the signed trust root `version` (0 = the newest). The service
// is open to the fleet, so no token is sent.
absl::StatusOr<v1::SignedTrustRoot> FetchTrustRoot(
    const std::shared_ptr<grpc::ChannelInterface>& channel, int64_t version,
    absl::Duration timeout = absl::Seconds(30));

class RegistryClient {
 public:
  static constexpr absl::Duration kDefaultRpcTimeout = absl::Seconds(30);

  RegistryClient(std::shared_ptr<grpc::ChannelInterface> channel, std::string token,
                 absl::Duration rpc_timeout = kDefaultRpcTimeout);

  absl::StatusOr<v1::Model> CreateModel(const v1::CreateModelRequest& request);
  absl::StatusOr<v1::ListModelsResponse> ListModels(const v1::ListModelsRequest& request);
  absl::StatusOr<v1::Version> CreateVersion(const v1::CreateVersionRequest& request);
  absl::StatusOr<v1::Version> GetVersion(const v1::GetVersionRequest& request);
  absl::StatusOr<v1::ListVersionsResponse> ListVersions(const v1::ListVersionsRequest& request);
  absl::StatusOr<v1::QueryUploadResponse> QueryUpload(const v1::QueryUploadRequest& request);
  absl::StatusOr<v1::Version> PublishVersion(const v1::PublishVersionRequest& request);
  absl::StatusOr<v1::Version> YankVersion(const v1::YankVersionRequest& request);
  absl::StatusOr<v1::TierBinding> SetTier(const v1::SetTierRequest& request);
  absl::StatusOr<v1::ListTiersResponse> ListTiers(const v1::ListTiersRequest& request);
  // The binding of `tier` on `channel` (empty: the default channel). RegistryService has no
  // GetTier rpc, so this pages through ListTiers, which lists bindings in (tier, channel)
  // order, and stops at the first page past it. NOT_FOUND (reason TIER_NOT_FOUND) when the
  // tier was never bound on that channel.
  absl::StatusOr<v1::TierBinding> GetTier(const std::string& tier, const std::string& channel);
  absl::StatusOr<v1::Rollout> StartRollout(const v1::StartRolloutRequest& request);
  absl::StatusOr<v1::Rollout> AdvanceRollout(const v1::AdvanceRolloutRequest& request);
  absl::StatusOr<v1::Rollout> PauseRollout(const v1::RolloutRequest& request);
  absl::StatusOr<v1::Rollout> ResumeRollout(const v1::RolloutRequest& request);
  absl::StatusOr<v1::Rollout> CompleteRollout(const v1::RolloutRequest& request);
  absl::StatusOr<v1::Rollout> AbortRollout(const v1::RolloutRequest& request);
  absl::StatusOr<v1::ListRolloutsResponse> ListRollouts(const v1::ListRolloutsRequest& request);
  absl::StatusOr<v1::RolloutStatus> GetRolloutStatus(const v1::RolloutRequest& request);
  absl::StatusOr<v1::PinDevicesResponse> PinDevices(const v1::PinDevicesRequest& request);
  absl::StatusOr<v1::PinDevicesResponse> UnpinDevices(const v1::UnpinDevicesRequest& request);
  absl::StatusOr<v1::ListPinsResponse> ListPins(const v1::ListPinsRequest& request);
  absl::StatusOr<v1::ListAuditLogResponse> ListAuditLog(const v1::ListAuditLogRequest& request);
  absl::StatusOr<v1::FleetSummary> GetFleetSummary(const v1::GetFleetSummaryRequest& request);
  absl::StatusOr<v1::SignedTrustRoot> AddSigningKey(const v1::AddSigningKeyRequest& request);
  absl::StatusOr<v1::SignedTrustRoot> RevokeSigningKey(const v1::RevokeSigningKeyRequest& request);
  absl::StatusOr<v1::SignedTrustRoot> RotateSigningKeys(
      const v1::RotateSigningKeysRequest& request);
  absl::StatusOr<v1::SignedTrustRoot> UploadTrustRoot(const v1::UploadTrustRootRequest& request);
  absl::StatusOr<v1::Version> AttachRelease(const v1::AttachReleaseRequest& request);
  absl::StatusOr<v1::CreateCredentialResponse> CreateCredential(
      const v1::CreateCredentialRequest& request);
  absl::StatusOr<v1::ListCredentialsResponse> ListCredentials(
      const v1::ListCredentialsRequest& request);
  absl::StatusOr<v1::Credential> RevokeCredential(const v1::RevokeCredentialRequest& request);
  absl::StatusOr<v1::ListOriginsResponse> ListOrigins(const v1::ListOriginsRequest& request);
  absl::StatusOr<v1::CheckOriginResponse> CheckOrigin(const v1::CheckOriginRequest& request);

  // For streaming calls: a context with the token and no deadline, since a multi-GB
  // upload has no sensible bound; a dead connection is detected by keepalive instead.
  std::unique_ptr<grpc::ClientContext> NewStreamContext() const;
  v1::RegistryService::Stub& stub() { return *stub_; }

 private:
  template <typename Response, typename Call>
  absl::StatusOr<Response> Unary(Call call);

  std::unique_ptr<v1::RegistryService::Stub> stub_;
  std::string token_;
  absl::Duration rpc_timeout_;
};

}  // namespace modeldist::ctl

#endif  // MODELDIST_CLIENT_MODELDISTCTL_REGISTRY_CLIENT_H_
