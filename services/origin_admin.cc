#include "services/origin_admin.h"

#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/status.h"
#include "storage/blob_store_usage.h"
#include "storage/origin/origin_config.h"

namespace modeldist::services {

absl::Status ListOrigins(const origin::OriginSet* origins, v1::ListOriginsResponse* response) {
  if (origins == nullptr) return absl::OkStatus();
  for (const origin::ConfiguredOrigin& entry : origins->origins()) {
    const v1::Origin& config = entry.config;
    v1::OriginSummary* summary = response->add_origins();
    summary->set_name(config.name());
    summary->set_kind(origin::OriginKind(config));
    summary->set_location(origin::OriginLocation(config));
    summary->set_key_prefix(config.key_prefix());
    summary->set_replicate(config.replicate());
    summary->set_hide_from_devices(config.hide_from_devices());
    summary->set_cdn_base_url(config.cdn().base_url());
    summary->set_cdn_signed(config.cdn().has_cloudfront());
  }
  return absl::OkStatus();
}

absl::Status FillBlobStoreUsage(const storage::BlobStore& blobs, storage::Catalog& catalog,
                                v1::BlobStoreUsage* usage) {
  MD_ASSIGN_OR_RETURN(storage::BlobStoreUsage stored, storage::MeasureUsage(blobs));
  MD_ASSIGN_OR_RETURN(std::vector<storage::DamagedBlob> damaged, catalog.ListDamagedBlobs());
  usage->set_blob_count(stored.blobs);
  usage->set_total_bytes(stored.bytes);
  usage->set_damaged_count(static_cast<int64_t>(damaged.size()));
  return absl::OkStatus();
}

absl::Status CheckOrigin(const origin::OriginSet* origins, const v1::CheckOriginRequest& request,
                         v1::CheckOriginResponse* response) {
  MD_RETURN_IF_ERROR(origin::ValidateOriginName("name", request.name()));
  const origin::ConfiguredOrigin* entry =
      origins == nullptr ? nullptr : origins->Find(request.name());
  if (entry == nullptr) {
    return MakeError(absl::StatusCode::kNotFound, "ORIGIN_NOT_FOUND",
                     absl::StrCat("no origin is called \"", request.name(), "\"",
                                  origins == nullptr ? " (the server runs without --origins FILE)"
                                                     : "; `modeldistctl origins list` shows them"),
                     {{"field", "name"}});
  }
  MD_ASSIGN_OR_RETURN(std::vector<origin::CheckStep> steps, origin::CheckOrigin(*entry));
  response->set_name(request.name());
  bool ok = true;
  for (const origin::CheckStep& step : steps) {
    v1::OriginCheckStep* out = response->add_steps();
    out->set_step(step.step);
    out->set_object_key(step.key);
    out->set_duration_micros(absl::ToInt64Microseconds(step.took));
    if (!step.status.ok()) {
      ok = false;
      out->set_error_code(absl::StatusCodeToString(step.status.code()));
      out->set_error_reason(ErrorReason(step.status));
      out->set_error_message(std::string(step.status.message()));
    }
  }
  response->set_ok(ok);
  return absl::OkStatus();
}

}  // namespace modeldist::services
