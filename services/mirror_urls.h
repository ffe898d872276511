// File: mirror_urls.h
//
// The origin URLs GetManifest hands a device next to the signed manifest
// (SignedManifest.mirrors): for the manifest's artifact, one URL per origin that serves devices
// (hide_from_devices unset) and holds a CONFIRMED copy of the blob (services/replicator.h), in
// the origins file's order. Each is the origin's DeviceUrl: public, presigned (S3/R2), or
// CloudFront-signed when a CDN is in front.
//
// Cost per request: a map lookup. Which copies are confirmed is loaded from the catalog by
// Refresh at start, and each copy the replicator confirms later is added by Confirmed; each
// URL is made once per
// (origin, blob, expiry) and reused: every device that gets the same pre-signed manifest gets
// the same expiry, so a signing origin signs once per manifest, not once per request.
//
// Thread-safe.
#ifndef MODELDIST_SERVICES_MIRROR_URLS_H_
#define MODELDIST_SERVICES_MIRROR_URLS_H_

#include <map>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "storage/catalog.h"
#include "storage/origin/origin_set.h"

namespace modeldist::services {

class MirrorUrls {
 public:
  // Both must outlive this.
  MirrorUrls(storage::Catalog* catalog, const origin::OriginSet* origins)
      : catalog_(catalog), origins_(origins) {}

  // Reloads which copies are confirmed. On error the previous set stays.
  absl::Status Refresh() ABSL_LOCKS_EXCLUDED(mu_);
  // The replicator confirmed the copy of blob `digest` on origin `origin`.
  void Confirmed(const std::string& digest, const std::string& origin) ABSL_LOCKS_EXCLUDED(mu_);

  // The URLs for blob `digest` (`sha256:<hex>`) in a manifest that expires at `expires`,
  // valid until then. An origin that cannot make a URL is left out (and logged once per
  // cache entry); the device still has the manifest's own sources.
  std::vector<std::string> For(const std::string& digest, absl::Time expires)
      ABSL_LOCKS_EXCLUDED(mu_);

 private:
  // A made URL: valid until `expires`.
  struct Made {
    absl::Time expires;
    std::string url;  // empty when DeviceUrl failed
  };

  storage::Catalog* catalog_;
  const origin::OriginSet* origins_;
  absl::Mutex mu_;
  // Confirmed copies: {digest, origin name}.
  std::set<std::pair<std::string, std::string>> confirmed_ ABSL_GUARDED_BY(mu_);
  // By {origin index, digest}; cleared when it grows past a bound (a new expiry replaces an
  // entry anyway).
  std::map<std::pair<size_t, std::string>, Made> made_ ABSL_GUARDED_BY(mu_);
};

}  // namespace modeldist::services

#endif  // MODELDIST_SERVICES_MIRROR_URLS_H_
