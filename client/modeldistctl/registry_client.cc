#include "client/modeldistctl/registry_client.h"

#include <grpc/grpc.h>
#include <grpcpp/create_channel.h>
#include <grpcpp/security/credentials.h>
#include <grpcpp/support/channel_arguments.h>

#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/cord.h"
#include "absl/strings/str_cat.h"
#include "client/modeldistctl/errors.h"
#include "common/file_util.h"
#include "common/status.h"
#include "modeldist/v1/resources.pb.h"

namespace modeldist::ctl {
namespace {

// Keepalive finds a dead connection under an upload that has no deadline. The interval stays
// above gRPC servers' default minimum ping interval (5 minutes), below which a server counts
// pings as abuse and closes the connection.
constexpr int kKeepaliveTimeMs = 330 * 1000;
constexpr int kKeepaliveTimeoutMs = 20 * 1000;

}  // namespace

absl::Status FromGrpcStatus(const grpc::Status& status) {
  if (status.ok()) return absl::OkStatus();
  absl::Status out(static_cast<absl::StatusCode>(status.error_code()), status.error_message());
  v1::RpcStatus details;
  if (!status.error_details().empty() && details.ParseFromString(status.error_details())) {
    for (const auto& any : details.details()) {
      // The type URL names google.rpc.ErrorInfo, which v1::ErrorInfo mirrors on the wire;
      // Any::UnpackTo would refuse it for the different message name.
      v1::ErrorInfo info;
      if (any.type_url() == kErrorInfoPayload && info.ParseFromString(any.value())) {
        out.SetPayload(kErrorInfoPayload, absl::Cord(any.value()));
        break;
      }
    }
  }
  return out;
}

absl::StatusOr<std::shared_ptr<grpc::Channel>> CreateRegistryChannel(
    const std::string& server, const std::string& tls_ca_file) {
  if (server.empty()) return UsageError("--server must be HOST:PORT");
  std::shared_ptr<grpc::ChannelCredentials> credentials;
  if (tls_ca_file.empty()) {
    credentials = grpc::InsecureChannelCredentials();
  } else {
    absl::StatusOr<std::string> ca = ReadFileToString(tls_ca_file);
    if (!ca.ok()) {
      return LocalError(
          absl::Status(ca.status().code(), absl::StrCat("--tls-ca: ", ca.status().message())));
    }
    grpc::SslCredentialsOptions options;
    options.pem_root_certs = *std::move(ca);
    credentials = grpc::SslCredentials(options);
  }
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, kKeepaliveTimeMs);
  args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, kKeepaliveTimeoutMs);
  return grpc::CreateCustomChannel(server, credentials, args);
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

}  // namespace modeldist::ctl
