// File: manifest_cache.h
//
// Pre-signed manifests for every (tier, channel, platform, arch) the catalog can answer.
//
// Signing happens when the catalog changes (Rebuild, called by the registry after each
// successful write) and when answers near expiry (a background refresher re-signs at half the
// TTL), never on the request path: Lookup is a map find under a reader lock.
//
// Thread-safe.
#ifndef MODELDIST_SERVICES_MANIFEST_CACHE_H_
#define MODELDIST_SERVICES_MANIFEST_CACHE_H_

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <tuple>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/ed25519.h"
#include "modeldist/v1/manifest.pb.h"
#include "storage/catalog.h"

namespace modeldist::services {

class ManifestCache {
 public:
  struct Options {
    // How long a signed manifest is valid.
    absl::Duration ttl = absl::Hours(24);
    // Chunk size announced for ArtifactService reads.
    int64_t chunk_size = 256 * 1024;
    // Value of the artifact_service source; empty means "the server you asked".
    std::string public_address;
    std::function<absl::Time()> now = [] { return absl::Now(); };
    // Start the background refresher thread (tests drive Rebuild by hand).
    bool refresh_in_background = true;
  };

  ManifestCache(storage::Catalog* catalog, Ed25519PrivateKey key, Options options);
  ~ManifestCache();  // stops the refresher

  // Re-reads the catalog and re-signs every answer. On error the previous answers stay.
  absl::Status Rebuild() ABSL_LOCKS_EXCLUDED(rebuild_mu_);

  // The signed answer for one device class. INVALID_ARGUMENT for unspecified platform/arch;
  // NOT_FOUND when the tier/channel is unbound or has nothing for this platform/arch (the
  // message lists what the bound version offers).
  absl::StatusOr<std::shared_ptr<const v1::SignedManifest>> Lookup(const std::string& tier,
                                                                   const std::string& channel,
                                                                   v1::Platform platform,
                                                                   v1::Arch arch) const;

  const Ed25519PublicKey& public_key() const { return key_.public_key(); }

 private:
  using Key = std::tuple<std::string, std::string, int, int>;  // tier, channel, platform, arch
  struct Snapshot {
    std::map<Key, std::shared_ptr<const v1::SignedManifest>> answers;
    // For NOT_FOUND messages: tier/channel -> {version name, "macos/arm64 COREML_ZIP, ..."}.
    std::map<std::pair<std::string, std::string>, std::pair<std::string, std::string>> offers;
    absl::Time refresh_after = absl::InfiniteFuture();
  };

  std::shared_ptr<const v1::SignedManifest> Sign(const v1::Manifest& manifest) const;
  void RefreshLoop();

  storage::Catalog* catalog_;
  Ed25519PrivateKey key_;
  Options options_;

  absl::Mutex rebuild_mu_;  // serializes Rebuild so snapshots are installed in order
  mutable absl::Mutex mu_;
  std::shared_ptr<const Snapshot> snapshot_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::thread refresher_;
};

}  // namespace modeldist::services

#endif  // MODELDIST_SERVICES_MANIFEST_CACHE_H_
