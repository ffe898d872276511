// File: key_ring.h
//
// The server's manifest-signing keys and the chain of trust roots that publishes them.
//
// Private keys live in `keys_dir` as `<key_id>.pem` (PKCS#8, mode 0600; the pre-KeyRing file
// `manifest-signing.pem` is read too; every `*.pem` there must be an Ed25519 private key),
// revoked ones are moved to `keys_dir/revoked/`. Each
// trust root is stored, serialized and signed, in a TrustRootStore (the catalog in the server,
// an in-memory fake in tests). Key material is never logged or put in a status message; only
// key ids and paths are.
//
// Once the newest root has root keys (roles, common/trust.h) they are offline: AddKey,
// RevokeKey and RotateKeys refuse (FAILED_PRECONDITION, ROOT_KEYS_OFFLINE) and only UploadRoot
// changes the root. Every change (AddKey, RevokeKey, RotateKeys) builds root N+1, signs it with the
// keys of root N the ring holds and with the keys of root N+1, checks it with VerifyNextRoot (the
// same function devices run), and only then persists, in this order:
//   1. new private keys are written (atomically, 0600, directory fsynced);
//   2. the root is appended to the store;
//   3. revoked private keys are moved to `revoked/`.
// A crash after 1 leaves unused key files (ignored: only keys of the newest root sign); a
// crash after 2 leaves a revoked key file in place (ignored for the same reason). No crash
// can leave a root whose private keys were never written.
//
// Thread-safe: SignManifest takes a reader lock; changes are serialized by a writer lock.
#ifndef MODELDIST_SERVICES_KEY_RING_H_
#define MODELDIST_SERVICES_KEY_RING_H_

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/ed25519.h"
#include "modeldist/v1/manifest.pb.h"
#include "services/manifest_signer.h"

namespace modeldist::services {

// Where the serialized SignedTrustRoots are kept. Implementations must be safe to call from
// several threads (KeyRing serializes its Appends but reads old versions without a lock).
class TrustRootStore {
 public:
  virtual ~TrustRootStore() = default;
  // Durably stores root `version`, recording `actor` (the authenticated caller's name) in the
  // audit log. FAILED_PRECONDITION unless `version` is the newest stored + 1 (1 for the
  // first), so the chain has no gaps.
  virtual absl::Status Append(int64_t version, absl::string_view signed_root,
                              absl::string_view actor) = 0;
  // Root `version`; 0 means the newest. NOT_FOUND when absent (or when none is stored).
  virtual absl::StatusOr<std::string> Get(int64_t version) = 0;
};

// The name the server used before key rings; read from keys_dir for backward compatibility.
inline constexpr absl::string_view kLegacySigningKeyFile = "manifest-signing.pem";
// RotateKeys creates 1..kMaxRotateKeys keys.
inline constexpr int kMaxRotateKeys = 16;
// The audit actor of root 1, which the server makes on its own at first start.
inline constexpr absl::string_view kFirstRootActor = "modeldist-server";

struct KeyRingOptions {
  // A private key file outside `keys_dir` (the server's --signing-key). With an empty store it
  // becomes the only key of root 1; otherwise it is one more key the ring may hold. Never
  // moved or deleted, not even when revoked.
  std::string signing_key_file;
  // The clock for `TrustRoot.issued_at`; tests inject a fake.
  std::function<absl::Time()> now = [] { return absl::Now(); };
};

class KeyRing : public ManifestSigner {
 public:
  using Options = KeyRingOptions;

  // A root as stored and as parsed (the parsed one verified).
  struct VerifiedRoot {
    v1::SignedTrustRoot signed_root;
    v1::TrustRoot root;
  };

  // Loads the private keys in `keys_dir` (created 0700 if missing) and the chain of roots in
  // `store`, verifying it from root 1 to the newest. With no root stored, creates root 1
  // (threshold 1) from the --signing-key file if given, else from the keys in `keys_dir`,
  // else from a newly generated key, and appends it (actor kFirstRootActor). `store` must
  // outlive the ring.
  // Errors:
  // * FAILED_PRECONDITION: a key file is readable or writable by group or others (the message
  //   names it and says `chmod 600`), a `<key_id>.pem` file holds another key, or the ring
  //   holds fewer than `threshold` private keys of the newest root (the message names the
  //   missing key ids).
  // * INVALID_ARGUMENT: a key file is not an Ed25519 PEM private key.
  // * DATA_LOSS: a stored root does not parse or does not chain (reason
  //   TRUST_ROOT_CHAIN_BROKEN); the message carries the verifier's error.
  // * Errors of the store and of the file system, as they are.
  static absl::StatusOr<std::unique_ptr<KeyRing>> Open(const std::string& keys_dir,
                                                       TrustRootStore* store, Options options = {});

  // Signatures over `manifest` (the serialized Manifest bytes) by every private key the ring
  // holds that is in the newest root: at least its threshold, as Open and every change check.
  std::vector<v1::Signature> SignManifest(absl::string_view manifest) const override
      ABSL_LOCKS_EXCLUDED(mu_);

  // The newest root.
  VerifiedRoot NewestRoot() const ABSL_LOCKS_EXCLUDED(mu_);

  // Root `version`, as stored; 0 means the newest. INVALID_ARGUMENT for a negative version,
  // NOT_FOUND above the newest (the message gives the newest), DATA_LOSS if it does not parse.
  absl::StatusOr<v1::SignedTrustRoot> Root(int64_t version) const ABSL_LOCKS_EXCLUDED(mu_);

  // Every change below records `actor`, the authenticated caller's name, as the audit actor
  // of the root it appends.

  // Publishes root N+1 = root N plus one new key (written to keys_dir). `threshold` is the
  // new root's threshold; 0 keeps the current one. Returns the new root.
  // INVALID_ARGUMENT: `threshold` not in 0..key count, or the root would exceed kMaxRootKeys.
  absl::StatusOr<VerifiedRoot> AddKey(int threshold, absl::string_view actor)
      ABSL_LOCKS_EXCLUDED(mu_);

  // Publishes root N+1 = root N without `key_id`; the revoked key still signs this transition
  // (it is in root N) but nothing after it. `threshold` 0 keeps the current one, lowered to
  // the new key count. Returns the new root.
  // * INVALID_ARGUMENT: `key_id` is not 16 lowercase hex digits, or `threshold` out of range.
  // * NOT_FOUND: no such key in the newest root.
  // * FAILED_PRECONDITION: it is the last key, or the ring would hold fewer than `threshold`
  //   private keys of the new root (it could not sign manifests any more).
  absl::StatusOr<VerifiedRoot> RevokeKey(absl::string_view key_id, int threshold,
                                         absl::string_view actor) ABSL_LOCKS_EXCLUDED(mu_);

  // Publishes root N+1 with `count` new keys replacing all keys of root N (signed by both).
  // `count` 0 means as many as now; `threshold` 0 keeps the current one, lowered to `count`.
  // INVALID_ARGUMENT: `count` not in 0..kMaxRotateKeys or `threshold` out of range.
  absl::StatusOr<VerifiedRoot> RotateKeys(int count, int threshold, absl::string_view actor)
      ABSL_LOCKS_EXCLUDED(mu_);

  // Publishes `next`, a root made offline (services/key_ring_upload.cc): adds the signatures
  // of every held private key that is an online key (`keys`) of the newest root or of `next`
  // (agents that predate roles check next roots with `keys`), checks it with VerifyNextRoot
  // and that the ring holds the private key of every one of its online keys (the error names
  // every missing one), then appends it. Errors: MALFORMED_ROOT,
  // ROOT_SIGNATURE_THRESHOLD_NOT_MET, ROOT_VERSION_NOT_NEXT (as devices answer),
  // FAILED_PRECONDITION SIGNING_KEYS_MISSING, and the store's.
  absl::StatusOr<VerifiedRoot> UploadRoot(const v1::SignedTrustRoot& next, absl::string_view actor)
      ABSL_LOCKS_EXCLUDED(mu_);

 private:
  // One private key the ring holds.
  struct HeldKey {
    Ed25519PrivateKey key;
    std::string path;
    bool in_keys_dir;  // false for the --signing-key file, which is never moved
  };

  KeyRing(std::string keys_dir, TrustRootStore* store, Options options);

  // Loads every key file of keys_dir plus options_.signing_key_file into held_.
  absl::Status LoadKeys() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status LoadKeyFile(const std::string& path, bool in_keys_dir)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Reads and verifies the stored chain, or creates root 1 when there is none.
  absl::Status LoadOrCreateRoots() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // FAILED_PRECONDITION unless held_ has `root.threshold` keys of `root`.
  absl::Status CheckHoldThreshold(const v1::TrustRoot& root) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Generates a key and writes it to keys_dir/<key_id>.pem; returns its key id.
  absl::StatusOr<std::string> GenerateKey() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Publishes root newest+1 holding `kept` plus `new_keys` generated keys with `threshold`
  // (already range-checked): generates and writes the new keys, signs, verifies, appends,
  // then moves the private keys of `revoked` to revoked/ (see the order in the file comment).
  absl::StatusOr<VerifiedRoot> Publish(std::vector<v1::SigningKey> kept, int new_keys,
                                       int threshold, const std::vector<std::string>& revoked,
                                       absl::string_view actor) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Makes `root` the newest and recomputes signers_.
  void SetNewest(VerifiedRoot root) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const std::string keys_dir_;
  TrustRootStore* const store_;
  const Options options_;

  mutable absl::Mutex mu_;
  std::map<std::string, std::unique_ptr<HeldKey>> held_ ABSL_GUARDED_BY(mu_);  // by key id
  std::string explicit_key_id_ ABSL_GUARDED_BY(mu_);  // of options_.signing_key_file
  VerifiedRoot newest_ ABSL_GUARDED_BY(mu_);
  // The held keys of newest_, in root order: the manifest signers.
  std::vector<const Ed25519PrivateKey*> signers_ ABSL_GUARDED_BY(mu_);
};

}  // namespace modeldist::services

#endif  // MODELDIST_SERVICES_KEY_RING_H_
