#include "services/manifest_service.h"

#include "absl/strings/str_cat.h"
#include "common/ed25519.h"
#include "common/names.h"
#include "common/status.h"
#include "common/grpc_status.h"

namespace modeldist::services {
namespace {

constexpr size_t kMaxDeviceIdBytes = 128;
constexpr size_t kMaxAppVersionBytes = 64;

absl::Status Validate(const v1::GetManifestRequest& r) {
  MD_RETURN_IF_ERROR(ValidateId("tier", r.tier()));
  if (!r.channel().empty()) MD_RETURN_IF_ERROR(ValidateId("channel", r.channel()));
  if (r.platform() == v1::PLATFORM_UNSPECIFIED || !v1::Platform_IsValid(r.platform())) {
    return InvalidArgument("platform", "MISSING_PLATFORM",
                           "platform is required (PLATFORM_MACOS, PLATFORM_LINUX, ...)");
  }
  if (r.arch() != v1::ARCH_ARM64 && r.arch() != v1::ARCH_X86_64) {
    return InvalidArgument("arch", "INVALID_ARCH",
                           "arch must be the device's architecture: ARCH_ARM64 or ARCH_X86_64");
  }
  if (r.device_id().size() > kMaxDeviceIdBytes) {
    return InvalidArgument("device_id", "TEXT_TOO_LONG",
                           absl::StrCat("device_id is at most ", kMaxDeviceIdBytes, " bytes"));
  }
  if (r.app_version().size() > kMaxAppVersionBytes) {
    return InvalidArgument("app_version", "TEXT_TOO_LONG",
                           absl::StrCat("app_version is at most ", kMaxAppVersionBytes, " bytes"));
  }
  const v1::DeviceInfo& d = r.device();
  if (d.os_version().size() > 32 ||
      d.os_version().find_first_not_of("0123456789.") != std::string::npos) {
    return InvalidArgument("device.os_version", "INVALID_OS_VERSION",
                           "device.os_version must be dotted numbers like \"14.4.1\"");
  }
  if (d.ram_bytes() < 0 || d.free_disk_bytes() < 0) {
    return InvalidArgument(d.ram_bytes() < 0 ? "device.ram_bytes" : "device.free_disk_bytes",
                           "INVALID_SIZE", "device sizes must not be negative");
  }
  for (int a : d.accelerators()) {
    if (!v1::Accelerator_IsValid(a)) {
      return InvalidArgument("device.accelerators", "INVALID_ACCELERATOR",
                             absl::StrCat("device.accelerators has an unknown value ", a));
    }
  }
  return absl::OkStatus();
}

}  // namespace

namespace {
grpc::ServerUnaryReactor* Finish(grpc::CallbackServerContext* context, grpc::Status status) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  reactor->Finish(std::move(status));
  return reactor;
}
}  // namespace

grpc::ServerUnaryReactor* ManifestServiceImpl::GetManifest(grpc::CallbackServerContext* context,
                                                           const v1::GetManifestRequest* request,
                                                           v1::SignedManifest* response) {
  return Finish(context, DoGetManifest(*request, response));
}

grpc::ServerUnaryReactor* ManifestServiceImpl::GetSigningKeys(
    grpc::CallbackServerContext* context, const v1::GetSigningKeysRequest* request,
    v1::GetSigningKeysResponse* response) {
  return Finish(context, DoGetSigningKeys(response));
}

grpc::ServerUnaryReactor* ManifestServiceImpl::GetTrustRoot(grpc::CallbackServerContext* context,
                                                            const v1::GetTrustRootRequest* request,
                                                            v1::SignedTrustRoot* response) {
  return Finish(context, DoGetTrustRoot(*request, response));
}

grpc::Status ManifestServiceImpl::DoGetManifest(const v1::GetManifestRequest& request,
                                                v1::SignedManifest* response) const {
  if (absl::Status s = Validate(request); !s.ok()) return ToGrpcStatus(s);
  auto answer = cache_->Lookup(request);
  if (!answer.ok()) return ToGrpcStatus(answer.status());
  // One copy of the pre-signed answer; the signatures were made when the catalog changed.
  *response = *answer->signed_manifest;
  response->set_selection_reason(std::move(answer->reason));
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
  if (request.version() < 0) {
    return ToGrpcStatus(InvalidArgument("version", "INVALID_VERSION",
                                        "version must be >= 0 (0 = the newest root)"));
  }
  auto root = keys_->Root(request.version());
  if (!root.ok()) return ToGrpcStatus(root.status());
  *response = *std::move(root);
  return grpc::Status::OK;
}

}  // namespace modeldist::services
