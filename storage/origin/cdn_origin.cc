#include "storage/origin/cdn_origin.h"

#include "absl/strings/str_cat.h"

namespace modeldist::origin {

absl::StatusOr<std::string> CdnOrigin::DeviceUrl(const std::string& key, int64_t expires_unix) {
  const std::string url = absl::StrCat(cdn_base_url_, "/", key);
  if (signer_ == nullptr) return url;
  return signer_->Sign(url, CloudFrontPolicy{.date_less_than = expires_unix});
}

}  // namespace modeldist::origin
