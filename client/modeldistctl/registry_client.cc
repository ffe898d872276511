#include "client/modeldistctl/registry_client.h"

#include <grpc/grpc.h>

#include <tuple>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "client/modeldistctl/errors.h"
#include "client/rpc/channel.h"
#include "common/file_util.h"
#include "common/names.h"
#include "common/status.h"
#include "modeldist/v1/resources.pb.h"

namespace modeldist::ctl {
namespace {

// Keepalive finds a dead connection under an upload that has no deadline. The interval stays
// above gRPC servers' default minimum ping interval (5 minutes), below which a server counts
// pings as abuse and closes the connection.
constexpr absl::Duration kKeepaliveTime = absl::Seconds(330);
constexpr absl::Duration kKeepaliveTimeout = absl::Seconds(20);

}  // namespace

absl::StatusOr<std::shared_ptr<grpc::Channel>> CreateRegistryChannel(
    const std::string& server, const std::string& tls_ca_file) {
  if (server.empty()) return UsageError("--server must be HOST:PORT");
  absl::StatusOr<std::shared_ptr<grpc::Channel>> channel =
      rpc::MakeChannel({.target = server,
                        .tls_ca_file = tls_ca_file,
                        .keepalive_time = kKeepaliveTime,
                        .keepalive_timeout = kKeepaliveTimeout});
  if (!channel.ok()) {
    return LocalError(absl::Status(channel.status().code(),
                                   absl::StrCat("--tls-ca: ", channel.status().message())));
  }
  return channel;
}

absl::StatusOr<std::string> LoadAdminToken(
    const std::string& token_file,
    const std::function<std::optional<std::string>(const std::string&)>& getenv) {
  std::string token;
  std::string source;
  if (!token_file.empty()) {
    absl::StatusOr<std::string> contents = ReadFileToString(token_file);
    if (!contents.ok()) {
      return LocalError(absl::Status(contents.status().code(),
                                     absl::StrCat("--token-file: ", contents.status().message())));
    }
    token = contents->substr(0, contents->find('\n'));
    source = absl::StrCat("the first line of ", token_file);
  } else if (std::optional<std::string> env = getenv("MODELDIST_ADMIN_TOKEN"); env.has_value()) {
    token = *env;
    source = "MODELDIST_ADMIN_TOKEN";
  } else {
    return UsageError("no admin token: pass --token-file FILE or set MODELDIST_ADMIN_TOKEN");
  }
  token = std::string(absl::StripAsciiWhitespace(token));
  if (token.empty()) return UsageError(absl::StrCat("the admin token (", source, ") is empty"));
  for (char c : token) {
    // An HTTP/2 header value: visible ASCII and spaces only.
    if (c < 0x20 || c > 0x7e) {
      return UsageError(
          absl::StrCat("the admin token (", source, ") has characters a header cannot carry"));
    }
  }
  return token;
}

absl::StatusOr<v1::SignedTrustRoot> FetchTrustRoot(
    const std::shared_ptr<grpc::ChannelInterface>& channel, int64_t version,
    absl::Duration timeout) {
  std::unique_ptr<v1::ManifestService::Stub> stub = v1::ManifestService::NewStub(channel);
  grpc::ClientContext context;
  context.set_deadline(absl::ToChronoTime(absl::Now() + timeout));
  v1::GetTrustRootRequest request;
  request.set_version(version);
  v1::SignedTrustRoot response;
  grpc::Status status = stub->GetTrustRoot(&context, request, &response);
  if (!status.ok()) return FromGrpcStatus(status);
  return response;
}

RegistryClient::RegistryClient(std::shared_ptr<grpc::ChannelInterface> channel, std::string token,
                               absl::Duration rpc_timeout)
    : stub_(v1::RegistryService::NewStub(channel)),
      token_(std::move(token)),
      rpc_timeout_(rpc_timeout) {}

std::unique_ptr<grpc::ClientContext> RegistryClient::NewStreamContext() const {
  auto context = std::make_unique<grpc::ClientContext>();
  context->AddMetadata("authorization", absl::StrCat("Bearer ", token_));
  return context;
}

template <typename Response, typename Call>
absl::StatusOr<Response> RegistryClient::Unary(Call call) {
  std::unique_ptr<grpc::ClientContext> context = NewStreamContext();
  context->set_deadline(absl::ToChronoTime(absl::Now() + rpc_timeout_));
  Response response;
  grpc::Status status = call(context.get(), &response);
  if (!status.ok()) return FromGrpcStatus(status);
  return response;
}

absl::StatusOr<v1::Model> RegistryClient::CreateModel(const v1::CreateModelRequest& request) {
  return Unary<v1::Model>(
      [&](grpc::ClientContext* c, v1::Model* r) { return stub_->CreateModel(c, request, r); });
}

absl::StatusOr<v1::ListModelsResponse> RegistryClient::ListModels(
    const v1::ListModelsRequest& request) {
  return Unary<v1::ListModelsResponse>([&](grpc::ClientContext* c, v1::ListModelsResponse* r) {
    return stub_->ListModels(c, request, r);
  });
}

absl::StatusOr<v1::Version> RegistryClient::CreateVersion(const v1::CreateVersionRequest& request) {
  return Unary<v1::Version>(
      [&](grpc::ClientContext* c, v1::Version* r) { return stub_->CreateVersion(c, request, r); });
}

absl::StatusOr<v1::Version> RegistryClient::GetVersion(const v1::GetVersionRequest& request) {
  return Unary<v1::Version>(
      [&](grpc::ClientContext* c, v1::Version* r) { return stub_->GetVersion(c, request, r); });
}

absl::StatusOr<v1::ListVersionsResponse> RegistryClient::ListVersions(
    const v1::ListVersionsRequest& request) {
  return Unary<v1::ListVersionsResponse>([&](grpc::ClientContext* c, v1::ListVersionsResponse* r) {
    return stub_->ListVersions(c, request, r);
  });
}

absl::StatusOr<v1::QueryUploadResponse> RegistryClient::QueryUpload(
    const v1::QueryUploadRequest& request) {
  return Unary<v1::QueryUploadResponse>([&](grpc::ClientContext* c, v1::QueryUploadResponse* r) {
    return stub_->QueryUpload(c, request, r);
  });
}

absl::StatusOr<v1::Version> RegistryClient::PublishVersion(
    const v1::PublishVersionRequest& request) {
  return Unary<v1::Version>(
      [&](grpc::ClientContext* c, v1::Version* r) { return stub_->PublishVersion(c, request, r); });
}

absl::StatusOr<v1::Version> RegistryClient::YankVersion(const v1::YankVersionRequest& request) {
  return Unary<v1::Version>(
      [&](grpc::ClientContext* c, v1::Version* r) { return stub_->YankVersion(c, request, r); });
}

absl::StatusOr<v1::TierBinding> RegistryClient::SetTier(const v1::SetTierRequest& request) {
  return Unary<v1::TierBinding>(
      [&](grpc::ClientContext* c, v1::TierBinding* r) { return stub_->SetTier(c, request, r); });
}

absl::StatusOr<v1::ListTiersResponse> RegistryClient::ListTiers(
    const v1::ListTiersRequest& request) {
  return Unary<v1::ListTiersResponse>([&](grpc::ClientContext* c, v1::ListTiersResponse* r) {
    return stub_->ListTiers(c, request, r);
  });
}

absl::StatusOr<v1::TierBinding> RegistryClient::GetTier(const std::string& tier,
                                                        const std::string& channel) {
  const std::string wanted_channel = channel.empty() ? std::string(kDefaultChannel) : channel;
  const auto wanted = std::tie(tier, wanted_channel);
  v1::ListTiersRequest request;
  do {
    MD_ASSIGN_OR_RETURN(v1::ListTiersResponse page, ListTiers(request));
    bool past = false;  // Bindings are sorted, so it is not on a later page either.
    for (v1::TierBinding& binding : *page.mutable_tiers()) {
      const auto key = std::tie(binding.tier(), binding.channel());
      if (key == wanted) return std::move(binding);
      if (wanted < key) {
        past = true;
        break;
      }
    }
    request.set_page_token(past ? "" : page.next_page_token());
  } while (!request.page_token().empty());
  return MakeError(
      absl::StatusCode::kNotFound, "TIER_NOT_FOUND",
      absl::StrCat("tier \"", tier, "\" is not bound on channel \"", wanted_channel, "\""),
      {{"tier", tier}, {"channel", wanted_channel}});
}

absl::StatusOr<v1::Rollout> RegistryClient::StartRollout(const v1::StartRolloutRequest& request) {
  return Unary<v1::Rollout>(
      [&](grpc::ClientContext* c, v1::Rollout* r) { return stub_->StartRollout(c, request, r); });
}

absl::StatusOr<v1::Rollout> RegistryClient::AdvanceRollout(
    const v1::AdvanceRolloutRequest& request) {
  return Unary<v1::Rollout>(
      [&](grpc::ClientContext* c, v1::Rollout* r) { return stub_->AdvanceRollout(c, request, r); });
}

absl::StatusOr<v1::RolloutStatus> RegistryClient::GetRolloutStatus(
    const v1::RolloutRequest& request) {
  return Unary<v1::RolloutStatus>([&](grpc::ClientContext* c, v1::RolloutStatus* r) {
    return stub_->GetRolloutStatus(c, request, r);
  });
}

absl::StatusOr<v1::Rollout> RegistryClient::PauseRollout(const v1::RolloutRequest& request) {
  return Unary<v1::Rollout>(
      [&](grpc::ClientContext* c, v1::Rollout* r) { return stub_->PauseRollout(c, request, r); });
}

absl::StatusOr<v1::Rollout> RegistryClient::ResumeRollout(const v1::RolloutRequest& request) {
  return Unary<v1::Rollout>(
      [&](grpc::ClientContext* c, v1::Rollout* r) { return stub_->ResumeRollout(c, request, r); });
}

absl::StatusOr<v1::Rollout> RegistryClient::CompleteRollout(const v1::RolloutRequest& request) {
  return Unary<v1::Rollout>([&](grpc::ClientContext* c, v1::Rollout* r) {
    return stub_->CompleteRollout(c, request, r);
  });
}

absl::StatusOr<v1::Rollout> RegistryClient::AbortRollout(const v1::RolloutRequest& request) {
  return Unary<v1::Rollout>(
      [&](grpc::ClientContext* c, v1::Rollout* r) { return stub_->AbortRollout(c, request, r); });
}

absl::StatusOr<v1::ListRolloutsResponse> RegistryClient::ListRollouts(
    const v1::ListRolloutsRequest& request) {
  return Unary<v1::ListRolloutsResponse>([&](grpc::ClientContext* c, v1::ListRolloutsResponse* r) {
    return stub_->ListRollouts(c, request, r);
  });
}

absl::StatusOr<v1::PinDevicesResponse> RegistryClient::PinDevices(
    const v1::PinDevicesRequest& request) {
  return Unary<v1::PinDevicesResponse>([&](grpc::ClientContext* c, v1::PinDevicesResponse* r) {
    return stub_->PinDevices(c, request, r);
  });
}

absl::StatusOr<v1::PinDevicesResponse> RegistryClient::UnpinDevices(
    const v1::UnpinDevicesRequest& request) {
  return Unary<v1::PinDevicesResponse>([&](grpc::ClientContext* c, v1::PinDevicesResponse* r) {
    return stub_->UnpinDevices(c, request, r);
  });
}

absl::StatusOr<v1::ListPinsResponse> RegistryClient::ListPins(const v1::ListPinsRequest& request) {
  return Unary<v1::ListPinsResponse>([&](grpc::ClientContext* c, v1::ListPinsResponse* r) {
    return stub_->ListPins(c, request, r);
  });
}

absl::StatusOr<v1::ListAuditLogResponse> RegistryClient::ListAuditLog(
    const v1::ListAuditLogRequest& request) {
  return Unary<v1::ListAuditLogResponse>([&](grpc::ClientContext* c, v1::ListAuditLogResponse* r) {
    return stub_->ListAuditLog(c, request, r);
  });
}

absl::StatusOr<v1::FleetSummary> RegistryClient::GetFleetSummary(
    const v1::GetFleetSummaryRequest& request) {
  return Unary<v1::FleetSummary>([&](grpc::ClientContext* c, v1::FleetSummary* r) {
    return stub_->GetFleetSummary(c, request, r);
  });
}

absl::StatusOr<v1::CreateCredentialResponse> RegistryClient::CreateCredential(
    const v1::CreateCredentialRequest& request) {
  return Unary<v1::CreateCredentialResponse>(
      [&](grpc::ClientContext* c, v1::CreateCredentialResponse* r) {
        return stub_->CreateCredential(c, request, r);
      });
}

absl::StatusOr<v1::ListCredentialsResponse> RegistryClient::ListCredentials(
    const v1::ListCredentialsRequest& request) {
  return Unary<v1::ListCredentialsResponse>(
      [&](grpc::ClientContext* c, v1::ListCredentialsResponse* r) {
        return stub_->ListCredentials(c, request, r);
      });
}

absl::StatusOr<v1::Credential> RegistryClient::RevokeCredential(
    const v1::RevokeCredentialRequest& request) {
  return Unary<v1::Credential>([&](grpc::ClientContext* c, v1::Credential* r) {
    return stub_->RevokeCredential(c, request, r);
  });
}

absl::StatusOr<v1::SignedTrustRoot> RegistryClient::AddSigningKey(
    const v1::AddSigningKeyRequest& request) {
  return Unary<v1::SignedTrustRoot>([&](grpc::ClientContext* c, v1::SignedTrustRoot* r) {
    return stub_->AddSigningKey(c, request, r);
  });
}

absl::StatusOr<v1::SignedTrustRoot> RegistryClient::RevokeSigningKey(
    const v1::RevokeSigningKeyRequest& request) {
  return Unary<v1::SignedTrustRoot>([&](grpc::ClientContext* c, v1::SignedTrustRoot* r) {
    return stub_->RevokeSigningKey(c, request, r);
  });
}

absl::StatusOr<v1::SignedTrustRoot> RegistryClient::RotateSigningKeys(
    const v1::RotateSigningKeysRequest& request) {
  return Unary<v1::SignedTrustRoot>([&](grpc::ClientContext* c, v1::SignedTrustRoot* r) {
    return stub_->RotateSigningKeys(c, request, r);
  });
}

absl::StatusOr<v1::SignedTrustRoot> RegistryClient::UploadTrustRoot(
    const v1::UploadTrustRootRequest& request) {
  return Unary<v1::SignedTrustRoot>([&](grpc::ClientContext* c, v1::SignedTrustRoot* r) {
    return stub_->UploadTrustRoot(c, request, r);
  });
}

absl::StatusOr<v1::Version> RegistryClient::AttachRelease(const v1::AttachReleaseRequest& request) {
  return Unary<v1::Version>(
      [&](grpc::ClientContext* c, v1::Version* r) { return stub_->AttachRelease(c, request, r); });
}

absl::StatusOr<v1::ListOriginsResponse> RegistryClient::ListOrigins(
    const v1::ListOriginsRequest& request) {
  return Unary<v1::ListOriginsResponse>([&](grpc::ClientContext* c, v1::ListOriginsResponse* r) {
    return stub_->ListOrigins(c, request, r);
  });
}

absl::StatusOr<v1::CheckOriginResponse> RegistryClient::CheckOrigin(
    const v1::CheckOriginRequest& request) {
  return Unary<v1::CheckOriginResponse>([&](grpc::ClientContext* c, v1::CheckOriginResponse* r) {
    return stub_->CheckOrigin(c, request, r);
  });
}

}  // namespace modeldist::ctl
