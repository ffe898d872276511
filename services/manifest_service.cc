#include "services/manifest_service.h"

#include "absl/strings/str_cat.h"
#include "common/names.h"
#include "common/status.h"
#include "services/grpc_status.h"

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
  return absl::OkStatus();
}

}  // namespace

grpc::Status ManifestServiceImpl::GetManifest(grpc::ServerContext* context,
                                              const v1::GetManifestRequest* request,
                                              v1::SignedManifest* response) {
  if (absl::Status s = Validate(*request); !s.ok()) return ToGrpcStatus(s);
  const std::string channel =
      request->channel().empty() ? std::string(kDefaultChannel) : request->channel();
  auto answer = cache_->Lookup(request->tier(), channel, request->platform(), request->arch());
  if (!answer.ok()) return ToGrpcStatus(answer.status());
  // One copy of a few hundred bytes; the signature was made when the catalog changed.
  *response = **answer;
  return grpc::Status::OK;
}

grpc::Status ManifestServiceImpl::GetSigningKeys(grpc::ServerContext* context,
                                                 const v1::GetSigningKeysRequest* request,
                                                 v1::GetSigningKeysResponse* response) {
  const Ed25519PublicKey& key = cache_->public_key();
  v1::SigningKey* out = response->add_keys();
  out->set_key_id(key.KeyId());
  out->set_algorithm("ed25519");
  out->set_public_key(key.raw());
  out->set_public_key_pem(key.ToPem());
  return grpc::Status::OK;
}

}  // namespace modeldist::services
