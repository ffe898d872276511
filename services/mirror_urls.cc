#include "services/mirror_urls.h"

#include <iostream>

#include "absl/strings/strip.h"
#include "common/status.h"
#include "storage/origin/origin_config.h"

namespace modeldist::services {
namespace {

// Made URLs kept at most; far above (blobs in live manifests) x (origins).
constexpr size_t kMaxMadeUrls = 10000;

}  // namespace

absl::Status MirrorUrls::Refresh() {
  MD_ASSIGN_OR_RETURN(auto rows, catalog_->ListConfirmedReplicas());
  std::set<std::pair<std::string, std::string>> confirmed(rows.begin(), rows.end());
  absl::MutexLock lock(&mu_);
  confirmed_ = std::move(confirmed);
  return absl::OkStatus();
}

void MirrorUrls::Confirmed(const std::string& digest, const std::string& origin) {
  absl::MutexLock lock(&mu_);
  confirmed_.emplace(digest, origin);
}

std::vector<std::string> MirrorUrls::For(const std::string& digest, absl::Time expires) {
  std::vector<std::string> urls;
  absl::string_view hex = digest;
  if (!absl::ConsumePrefix(&hex, "sha256:")) return urls;
  const std::vector<origin::ConfiguredOrigin>& all = origins_->origins();
  absl::MutexLock lock(&mu_);
  for (size_t i = 0; i < all.size(); ++i) {
    const v1::Origin& config = all[i].config;
    if (config.hide_from_devices() || !confirmed_.count({digest, config.name()})) continue;
    auto [it, fresh] = made_.try_emplace({i, digest});
    if (fresh || it->second.expires != expires) {
      if (made_.size() > kMaxMadeUrls) {
        made_.clear();
        it = made_.try_emplace({i, digest}).first;
      }
      absl::StatusOr<std::string> url = all[i].origin->DeviceUrl(
          origin::BlobKey(config, std::string(hex)), absl::ToUnixSeconds(expires));
      if (!url.ok()) {
        std::cerr << "modeldist-server: no device URL from origin " << config.name() << " for "
                  << digest << ": " << url.status() << "\n";
      }
      it->second = Made{expires, url.ok() ? *std::move(url) : std::string()};
    }
    if (!it->second.url.empty()) urls.push_back(it->second.url);
  }
  return urls;
}

}  // namespace modeldist::services
