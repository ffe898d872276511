// File: manifest_cache.h
//
// Pre-signed manifests for every answer the catalog can give: per tier/channel, the bound
// version, the target version of its rollout and every pinned version, each for every
// (platform, arch) and candidate artifact.
//
// Signing happens when the catalog or the keys change (Rebuild, called by the registry after
// each committed change) and when answers near expiry (a background refresher re-signs at
// half the TTL), never on the request path: Lookup picks among pre-signed answers with a
// hash for the rollout cohort and a few comparisons for device constraints.
//
// Thread-safe.
#ifndef MODELDIST_SERVICES_MANIFEST_CACHE_H_
#define MODELDIST_SERVICES_MANIFEST_CACHE_H_

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "modeldist/v1/manifest.pb.h"
#include "services/manifest_signer.h"
#include "services/metrics/metrics.h"
#include "storage/blob_store.h"
#include "storage/catalog.h"

namespace modeldist::services {

class ManifestCache {
 public:
  struct Options {
    // How long a signed manifest is valid.
    absl::Duration ttl = absl::Hours(24);
    // Value of the artifact_service source; empty means "the server you asked".
    std::string public_address;
    std::function<absl::Time()> now = [] { return absl::Now(); };
    // Start the background refresher thread (tests drive Rebuild by hand).
    bool refresh_in_background = true;
    // Told when Rebuild finds an artifact's blob gone or damaged (services/blob_health.h),
    // after the new answers are in place; may call Rebuild again.
    std::function<void(const std::string& hex, const absl::Status& problem)> on_damage;
    // The chain of a blob that is not stored here but is read through from the origins
    // (services/read_through.h); NOT_FOUND otherwise. Unset: every blob must be stored.
    std::function<absl::StatusOr<std::vector<std::string>>(const std::string& hex)> remote_chain;
    // Counts the rebuilds that put new answers in place; may be null.
    metrics::Counter* rebuilds = nullptr;
  };

  // The answer for one device: the pre-signed manifest and, unsigned, why it was chosen.
  struct Answer {
    std::shared_ptr<const v1::SignedManifest> signed_manifest;
    std::string reason;
    // What the signed manifest names and when it expires, for the unsigned mirrors
    // (services/mirror_urls.h) without parsing it again.
    std::string digest;
    absl::Time expires;
  };

  // `catalog`, `blobs` and `signer` must outlive the cache.
  ManifestCache(storage::Catalog* catalog, const storage::BlobStore* blobs,
                const ManifestSigner* signer, Options options);
  ~ManifestCache();  // stops the refresher

  // Re-reads the catalog and re-signs every answer. On error the previous answers stay. An
  // artifact whose bytes the catalog records as damaged, or whose blob is found missing or of
  // the wrong size, gets no signed answer (see Lookup); a new finding goes to on_damage.
  absl::Status Rebuild() ABSL_LOCKS_EXCLUDED(rebuild_mu_);

  // The answer for a device. `request` must be validated (tier/channel ids, platform, arch);
  // an empty channel means `stable`.
  // NOT_FOUND: tier/channel unbound, or its version has nothing for this platform/arch (the
  // message lists what it has). FAILED_PRECONDITION: candidates exist but the device meets
  // none of their constraints (the message says what each needs). UNAVAILABLE (reason
  // ARTIFACT_DAMAGED): the artifact the device would get has damaged bytes on the server.
  absl::StatusOr<Answer> Lookup(const v1::GetManifestRequest& request) const;

 private:
  // One pre-signed answer and what a device must have to get it.
  struct Offer {
    std::shared_ptr<const v1::SignedManifest> signed_manifest;  // null when `damaged`
    v1::ArtifactConstraints constraints;
    std::string description;  // e.g. "FORMAT_COREML_ZIP (PLATFORM_MACOS/ARCH_ARM64)"
    std::string damaged;      // why its bytes cannot be served; empty when they can
    std::string digest;
    absl::Time expires;  // the signed manifest's expires_at
  };
  // Every answer for one version of one tier/channel, by (platform, arch), best first.
  struct VersionAnswers {
    std::string version;
    std::map<std::pair<int, int>, std::vector<Offer>> offers;
    std::string inventory;  // for NOT_FOUND: "PLATFORM_MACOS/ARCH_ARM64 FORMAT_COREML_ZIP, ..."
  };
  struct TierAnswers {
    std::shared_ptr<const VersionAnswers> bound;
    std::optional<v1::Rollout> rollout;
    std::shared_ptr<const VersionAnswers> rollout_to;
    std::map<std::string, std::shared_ptr<const VersionAnswers>> pins;  // by device id
  };
  struct Snapshot {
    std::map<std::pair<std::string, std::string>, TierAnswers> tiers;
    absl::Time refresh_after = absl::InfiniteFuture();
  };

  // What one Rebuild knows of blob health: the catalog's damage records, and what it found.
  struct Damage {
    std::map<std::string, std::string> recorded;  // digest -> details
    std::map<std::string, absl::Status> found;    // hex -> problem, for on_damage
  };
  // Rebuild's work under rebuild_mu_; what it found goes to on_damage after the lock is gone.
  absl::Status RebuildLocked(Damage* damage) ABSL_EXCLUSIVE_LOCKS_REQUIRED(rebuild_mu_);
  absl::StatusOr<std::shared_ptr<const VersionAnswers>> SignVersion(const v1::TierBinding& binding,
                                                                    const v1::Version& version,
                                                                    absl::Time now, Damage* damage)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(rebuild_mu_);
  // The chain of `digest` once its blob is seen in place with its size (a stat); NOT_FOUND or
  // DATA_LOSS when not.
  absl::StatusOr<std::shared_ptr<const std::vector<std::string>>> ChunkChain(
      const std::string& digest) ABSL_EXCLUSIVE_LOCKS_REQUIRED(rebuild_mu_);
  void RefreshLoop();

  storage::Catalog* catalog_;
  const storage::BlobStore* blobs_;
  const ManifestSigner* signer_;
  Options options_;

  absl::Mutex rebuild_mu_;  // serializes Rebuild so snapshots are installed in order
  // A digest's chunk chain never changes, so it is read from the store once.
  std::map<std::string, std::shared_ptr<const std::vector<std::string>>> chunk_chains_
      ABSL_GUARDED_BY(rebuild_mu_);
  mutable absl::Mutex mu_;
  std::shared_ptr<const Snapshot> snapshot_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::thread refresher_;
};

}  // namespace modeldist::services

#endif  // MODELDIST_SERVICES_MANIFEST_CACHE_H_
