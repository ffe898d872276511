// File: device_state.h
//
// What a device trusts, and the one place where a signed manifest becomes accepted: the trusted
// root (DIR/trust/root.bin, advanced along verified root chains), the highest manifest sequence
// seen per tier/channel (DIR/trust/sequence), and AcceptManifest, which checks a manifest
// against both. A network sync (agent.h) and a bundle install (bundle_install.h) use the same
// functions, so a bundle passes exactly the checks a download does; the only rule a bundle may
// relax (expiry) is a named option.
#ifndef MODELDIST_CLIENT_AGENT_DEVICE_STATE_H_
#define MODELDIST_CLIENT_AGENT_DEVICE_STATE_H_

#include <cstdint>
#include <map>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "modeldist/v1/manifest.grpc.pb.h"

namespace modeldist::agent {

// The trusted root, advanced along a chain of roots and persisted in DIR/trust/root.bin.
//
// DIR/trust/root.bin, when present, is the root and the pinned --trust-root file is not read:
// the stored root is at least as trusted (it is the pinned root itself or a root chained from
// it) and usually newer. To pin another root, delete DIR/trust/root.bin.
//
// A pinned root read from --trust-root is kept in DIR/trust/root.bin once it has vouched for a
// manifest of this server (PersistIfPinned, called by AcceptManifest), so later syncs need no
// --trust-root. Not earlier: a self-signed root of another server (a wrong file) verifies on
// its own too, and keeping it would make every later sync use it even after the right file is
// passed.
class TrustState {
 public:
  // NO_TRUST_ROOT (FAILED_PRECONDITION) when `dir` has no root and `trust_root_file` is empty;
  // MALFORMED_ROOT / ROOT_SIGNATURE_THRESHOLD_NOT_MET for a root that does not verify.
  static absl::StatusOr<TrustState> Load(const std::string& dir,
                                         const std::string& trust_root_file);

  // Walks the server's GetTrustRoot(N+1), N+2, ... verifying each against the one before, and
  // persists the newest (chained from the trusted root, so as trusted as it).
  absl::Status Advance(v1::ManifestService::Stub& stub);

  // Takes `next` when it verifies as the next root (VerifyNextRoot: version N+1, signed by the
  // threshold of root N and of its own keys), and persists it. The errors of VerifyNextRoot.
  absl::Status AdvanceTo(const v1::SignedTrustRoot& next);

  // Keeps the root read from --trust-root: call once a manifest verified under it.
  absl::Status PersistIfPinned() { return persisted_ ? absl::OkStatus() : Persist(); }

  const v1::TrustRoot& root() const { return root_; }

 private:
  absl::Status Persist();

  std::string path_;
  v1::SignedTrustRoot signed_;
  v1::TrustRoot root_;
  bool persisted_ = false;  // signed_ is what root.bin holds
};

// Which tier, channel, platform and arch the manifest must be for.
struct ManifestTarget {
  std::string tier;
  std::string channel;
  v1::Platform platform = v1::PLATFORM_UNSPECIFIED;
  v1::Arch arch = v1::ARCH_UNSPECIFIED;
};

struct AcceptRules {
  absl::Time now;  // one reading for the whole update
  absl::Duration clock_skew = absl::Minutes(5);
  // Accept an expired manifest (AcceptedManifest::expiry_waived says it was). For bundles: a
  // bundle proves authenticity, not freshness, and is installed long after it was signed.
  bool waive_expiry = false;
  // Return a manifest whose sequence is lower than the highest seen as `older` (recording
  // nothing) instead of refusing it, so that the caller can tell "already have something newer"
  // from an attack. The caller must not install an older manifest.
  bool report_older = false;
  // A bundle: refuse a manifest of another tier/channel than the dir has followed. The store
  // holds one active model, and sequences are per tier/channel, so an old (expiry waived)
  // manifest of a tier the dir never saw would otherwise replace a newer active version. A
  // network sync may move the dir: the device asked for that tier, and the manifest is fresh.
  bool same_target_only = false;
};

struct AcceptedManifest {
  v1::Manifest manifest;
  bool expiry_waived = false;
  bool older = false;        // only with report_older
  int64_t highest_seen = 0;  // before this manifest
  std::string seen_version;  // the version accepted with highest_seen, "" when not recorded
};

// Verifies `signed_manifest` under the trusted root (persisting a pinned root once it vouched
// for it), checks its target, expiry and sequence, and records its sequence and install
// fingerprint in DIR/trust/sequence before anything is installed. With same_target_only,
// `target` must be the tier/channel the dir has followed (the only one it recorded), if any.
// Errors (common/trust.h): SIGNATURE_THRESHOLD_NOT_MET, MALFORMED_MANIFEST, WRONG_TARGET (for
// another target than the manifest's, or than the dir's recorded one), MANIFEST_EXPIRED (unless
// waived), SEQUENCE_ROLLBACK (lower, unless report_older; or equal for other content),
// STATE_CORRUPT (DATA_LOSS) for a sequence file that does not parse.
absl::StatusOr<AcceptedManifest> AcceptManifest(TrustState& trust, const std::string& dir,
                                                const v1::SignedManifest& signed_manifest,
                                                const ManifestTarget& target,
                                                const AcceptRules& rules);

// RESOURCE_EXHAUSTED (INSUFFICIENT_DISK) when `dir` cannot hold the artifact (and, for a
// CoreML zip, its unpacked copy).
absl::Status CheckDisk(const std::string& dir, const v1::ManifestArtifact& artifact);

}  // namespace modeldist::agent

#endif  // MODELDIST_CLIENT_AGENT_DEVICE_STATE_H_
