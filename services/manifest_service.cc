#include "services/manifest_service.h"

#include <algorithm>
#include <chrono>

#include "common/ed25519.h"
#include "common/grpc_status.h"
#include "common/limits.h"
#include "services/blob_endpoint.h"
#include "services/request_validation.h"

namespace modeldist::services {
namespace {

absl::Status Validate(const v1::GetManifestRequest& r) {
  const v1::DeviceInfo& d = r.device();
  return RequestCheck()
      .Id("tier", r.tier())
      .OptionalId("channel", r.channel())
      .Platform("platform", r.platform())
      .DeviceArch("arch", r.arch())
      .Text("device_id", r.device_id(), kMaxDeviceIdBytes)
      .Text("app_version", r.app_version(), kMaxAppVersionBytes)
      .OsVersion("device.os_version", d.os_version())
      .NotNegative("device.ram_bytes", d.ram_bytes(), "INVALID_SIZE")
      .NotNegative("device.free_disk_bytes", d.free_disk_bytes(), "INVALID_SIZE")
      .Accelerators("device.accelerators", d.accelerators(), /*allow_unspecified=*/true)
      .status();
}

absl::Status ValidateTrustRoot(const v1::GetTrustRootRequest& request) {
  return RequestCheck()
      .NotNegative("version", request.version(), "INVALID_VERSION", " (0 means the newest root)")
      .status();
}

// The longest a forwarded call waits for the upstream.
constexpr std::chrono::seconds kUpstreamDeadline(30);

grpc::ServerUnaryReactor* Finish(grpc::CallbackServerContext* context, grpc::Status status) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  reactor->Finish(std::move(status));
  return reactor;
}

// Runs `call` (a blocking call of the upstream) on its pool and finishes with its status. The
// upstream gets the caller's deadline, at most 30 seconds.
template <typename Call>
grpc::ServerUnaryReactor* Forward(grpc::CallbackServerContext* context, UpstreamManifests* upstream,
                                  Call call) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  const auto deadline =
      std::min(context->deadline(), std::chrono::system_clock::now() + kUpstreamDeadline);
  upstream->Run([reactor, deadline, call = std::move(call)] { reactor->Finish(call(deadline)); });
  return reactor;
}

}  // namespace

grpc::ServerUnaryReactor* ManifestServiceImpl::GetManifest(grpc::CallbackServerContext* context,
                                                           const v1::GetManifestRequest* request,
                                                           v1::SignedManifest* response) {
  if (upstream_ == nullptr) return Finish(context, DoGetManifest(*request, response));
  if (absl::Status s = Validate(*request); !s.ok()) return Finish(context, ToGrpcStatus(s));
  return Forward(context, upstream_, [this, request, response](auto deadline) {
    return upstream_->GetManifest(*request, deadline, response);
  });
}

grpc::Status ManifestServiceImpl::Answer(const v1::GetManifestRequest& request,
                                         v1::SignedManifest* response) const {
  if (upstream_ == nullptr) return DoGetManifest(request, response);
  if (absl::Status s = Validate(request); !s.ok()) return ToGrpcStatus(s);
  return upstream_->GetManifest(request, std::chrono::system_clock::now() + kUpstreamDeadline,
                                response);
}

grpc::ServerUnaryReactor* ManifestServiceImpl::GetSigningKeys(
    grpc::CallbackServerContext* context, const v1::GetSigningKeysRequest* request,
    v1::GetSigningKeysResponse* response) {
  if (upstream_ == nullptr) return Finish(context, DoGetSigningKeys(response));
  return Forward(context, upstream_, [this, response](auto deadline) {
    return upstream_->GetSigningKeys(deadline, response);
  });
}

grpc::ServerUnaryReactor* ManifestServiceImpl::GetTrustRoot(grpc::CallbackServerContext* context,
                                                            const v1::GetTrustRootRequest* request,
                                                            v1::SignedTrustRoot* response) {
  if (upstream_ == nullptr) return Finish(context, DoGetTrustRoot(*request, response));
  if (absl::Status s = ValidateTrustRoot(*request); !s.ok()) {
    return Finish(context, ToGrpcStatus(s));
  }
  return Forward(context, upstream_, [this, request, response](auto deadline) {
    return upstream_->GetTrustRoot(*request, deadline, response);
  });
}

grpc::Status ManifestServiceImpl::DoGetManifest(const v1::GetManifestRequest& request,
                                                v1::SignedManifest* response) const {
  if (absl::Status s = Validate(request); !s.ok()) return ToGrpcStatus(s);
  auto answer = cache_->Lookup(request);
  if (!answer.ok()) return ToGrpcStatus(answer.status());
  // One copy of the pre-signed answer; the signatures were made when the catalog changed.
  *response = *answer->signed_manifest;
  response->set_selection_reason(std::move(answer->reason));
  if (!cdn_url_.empty()) {
    response->add_mirrors()->set_http_url(BlobUrl(cdn_url_, answer->digest));
  }
  if (mirrors_ != nullptr) {
    for (std::string& url : mirrors_->For(answer->digest, answer->expires)) {
      response->add_mirrors()->set_http_url(std::move(url));
    }
  }
  return grpc::Status::OK;
}

grpc::Status ManifestServiceImpl::DoGetSigningKeys(v1::GetSigningKeysResponse* response) const {
  const KeyRing::VerifiedRoot newest = keys_->NewestRoot();  // a snapshot, kept alive
  for (const v1::SigningKey& key : newest.root.keys()) {
    v1::SigningKey* out = response->add_keys();
    *out = key;
    if (auto parsed = Ed25519PublicKey::FromRaw(key.public_key()); parsed.ok()) {
      out->set_public_key_pem(parsed->ToPem());
    }
  }
  return grpc::Status::OK;
}

grpc::Status ManifestServiceImpl::DoGetTrustRoot(const v1::GetTrustRootRequest& request,
                                                 v1::SignedTrustRoot* response) const {
  if (absl::Status s = ValidateTrustRoot(request); !s.ok()) return ToGrpcStatus(s);
  auto root = keys_->Root(request.version());
  if (!root.ok()) return ToGrpcStatus(root.status());
  *response = *std::move(root);
  return grpc::Status::OK;
}

}  // namespace modeldist::services
