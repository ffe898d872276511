// File: registry_client.h
//
// The CLI's view of RegistryService: one method per unary rpc returning absl::StatusOr, each
// call carrying `authorization: Bearer <token>` and a deadline. Server errors keep their code,
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
#include "absl/time/time.h"
#include "modeldist/v1/registry.grpc.pb.h"

namespace modeldist::ctl {

// Code and message of `status`, plus its ErrorInfo (from `grpc-status-details-bin`) as the
// common/status.h payload when the server sent one.
absl::Status FromGrpcStatus(const grpc::Status& status);

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

  // For streaming calls: a context with the token and no deadline, since a multi-GB upload
  // has no sensible bound; a dead connection is detected by keepalive instead.
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
