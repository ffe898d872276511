// File: trust.h
//
// The trust model as pure functions (no I/O, no clock): building and signing trust roots,
// walking the root chain, and verifying signed manifests (release statements: release.h). The
// server uses them before it publishes anything, tests use them as the oracle, and the device agent
// uses them before it trusts a byte.
//
// Rules (as TUF teaches):
// * Signatures cover the exact serialized bytes (`SignedTrustRoot.root`,
//   `SignedManifest.manifest`), never a re-serialization. A manifest or a next root is parsed
//   only after the trusted root's threshold of signatures verified (a pinned first root must
//   be parsed to find its own keys).
// * A root's signatures use the context kRootSignatureContext and a manifest's use
//   kManifestSignatureContext, so one can never be replayed as the other.
// * A threshold counts DISTINCT keys of the root: a key that signs twice counts once, and
//   signatures by keys the root does not list (unknown or revoked keys) are ignored. Only the
//   first signature carrying a given key id is checked, which bounds the work an attacker can
//   cause to one verification per key of the root.
//
// Errors carry an ErrorInfo reason (common/status.h) so an agent can say which attack or fault
// it saw:
//
//   reason                              code                 when
//   MALFORMED_ROOT                      INVALID_ARGUMENT     unparsable root, version < 1,
//                                                            threshold not in 1..keys, more
//                                                            than kMaxRootKeys keys, a key
//                                                            that is not ed25519 / not 32
//                                                            bytes / whose key_id is not
//                                                            KeyId(public_key), duplicate ids
//   ROOT_SIGNATURE_THRESHOLD_NOT_MET    PERMISSION_DENIED    a root lacks `threshold` valid
//                                                            signatures of the trusted root
//                                                            (metadata by=trusted_root) or
//                                                            of its own keys (by=new_root)
//   ROOT_VERSION_NOT_NEXT               FAILED_PRECONDITION  next.version != trusted.version+1
//                                                            (rollback, replay or a gap)
//   SIGNATURE_THRESHOLD_NOT_MET         PERMISSION_DENIED    a manifest lacks `threshold`
//                                                            valid signatures of the root
//   RELEASE_REQUIRED, MALFORMED_RELEASE,                     the root has release keys and
//   RELEASE_SIGNATURE_THRESHOLD_NOT_MET,                     the manifest's artifact is not
//   RELEASE_MISMATCH                                         released (common/release.h)
//   MALFORMED_MANIFEST                  INVALID_ARGUMENT     signed bytes that do not parse,
//                                                            or no expires_at
//   MANIFEST_EXPIRED                    FAILED_PRECONDITION  now >= expires_at + allowed skew
//   SEQUENCE_ROLLBACK                   FAILED_PRECONDITION  sequence < the highest seen
//   WRONG_TARGET                        FAILED_PRECONDITION  tier/channel/platform/arch differ
//                                                            from the request (metadata
//                                                            field=the first that differs)
//
// Roles (TUF-style, docs/trust.md): `TrustRoot.keys` are the online keys and sign manifests.
// The next root is signed by the root keys, RootSigners(): `root_keys` when set (offline), else
// `keys` (a single-role root, as every root before roles). With `release_keys` set,
// VerifyManifest also requires the manifest's artifact to be in a release statement those
// keys signed (common/release.h), so that the online keys alone can make a device install
// nothing. A root is well formed only when each role is (keys 1..kMaxRootKeys, ed25519, ids
// matching, none twice, threshold in 1..keys) and no offline key is also an online key.
//
// Signature failures are PERMISSION_DENIED: the bytes are not authorized by the trust root.
// Expiry, rollback and target failures are FAILED_PRECONDITION: the document is authentic
// but not acceptable in the device's current state.
#ifndef MODELDIST_COMMON_TRUST_H_
#define MODELDIST_COMMON_TRUST_H_

#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "common/ed25519.h"
#include "modeldist/v1/manifest.pb.h"

namespace modeldist {

// The context of trust root signatures (see SignedBytes in common/ed25519.h).
inline constexpr absl::string_view kRootSignatureContext = "modeldist-root-v1";
// The only value of `SigningKey.algorithm`.
inline constexpr absl::string_view kEd25519Algorithm = "ed25519";
// A root with more keys is malformed (bounds verification work and message size).
inline constexpr int kMaxRootKeys = 64;

inline constexpr absl::string_view kReasonMalformedRoot = "MALFORMED_ROOT";
inline constexpr absl::string_view kReasonRootSignatureThresholdNotMet =
    "ROOT_SIGNATURE_THRESHOLD_NOT_MET";
inline constexpr absl::string_view kReasonRootVersionNotNext = "ROOT_VERSION_NOT_NEXT";
inline constexpr absl::string_view kReasonSignatureThresholdNotMet = "SIGNATURE_THRESHOLD_NOT_MET";
inline constexpr absl::string_view kReasonMalformedManifest = "MALFORMED_MANIFEST";
inline constexpr absl::string_view kReasonManifestExpired = "MANIFEST_EXPIRED";
inline constexpr absl::string_view kReasonSequenceRollback = "SEQUENCE_ROLLBACK";
inline constexpr absl::string_view kReasonWrongTarget = "WRONG_TARGET";

// The keys that sign the root after `root`: its root_keys when set, else its keys and
// threshold (a single-role root).
v1::RoleKeys RootSigners(const v1::TrustRoot& root);

// How many distinct keys of `keys` made a valid signature of SignedBytes(context, message).
// Only the first signature with a given key id is checked; unknown key ids are ignored.
int CountValidSigners(const google::protobuf::RepeatedPtrField<v1::SigningKey>& keys,
                      absl::string_view context, absl::string_view message,
                      const google::protobuf::RepeatedPtrField<v1::Signature>& signatures);

// The TrustRoot entry for `key`: key_id, algorithm and raw public_key (no PEM).
v1::SigningKey RootKeyFor(const Ed25519PublicKey& key);

// OK when `root` is well formed (see MALFORMED_ROOT above); INVALID_ARGUMENT with reason
// MALFORMED_ROOT otherwise. Says nothing about signatures.
absl::Status CheckRootWellFormed(const v1::TrustRoot& root);

// Serializes `root` once and signs those bytes with each of `signers` (context
// kRootSignatureContext), one {key_id, signature} per signer, in order. Signers need not be in
// `root` (the previous root's keys sign a rotation). Never fails; checking the result is the
// caller's job (VerifyFirstRoot / VerifyNextRoot).
v1::SignedTrustRoot SignRoot(const v1::TrustRoot& root,
                             const std::vector<const Ed25519PrivateKey*>& signers);

// Verifies a root a device pinned out of band (usually version 1, but any version it chose to
// trust): it parses, is well formed, and the threshold of its own RootSigners signed it. Returns
// the parsed root on success; MALFORMED_ROOT or ROOT_SIGNATURE_THRESHOLD_NOT_MET otherwise.
absl::StatusOr<v1::TrustRoot> VerifyFirstRoot(const v1::SignedTrustRoot& signed_root);

// Verifies `next` against the root the caller already trusts: the threshold of
// RootSigners(trusted) signed it, it parses and is well formed, its version is exactly
// trusted.version + 1, and the threshold of its own RootSigners signed it. Returns the parsed
// root on success (the caller then trusts it instead of `trusted`). Errors:
// ROOT_SIGNATURE_THRESHOLD_NOT_MET, MALFORMED_ROOT (also for a malformed `trusted`),
// ROOT_VERSION_NOT_NEXT.
absl::StatusOr<v1::TrustRoot> VerifyNextRoot(const v1::TrustRoot& trusted,
                                             const v1::SignedTrustRoot& next);

// Verifies that `root.threshold` distinct keys of `root` signed the exact manifest bytes
// (context kManifestSignatureContext), then parses them, and, when the root has release keys
// and the manifest an artifact, that `signed_manifest.release` releases that artifact
// (CheckManifestReleased). Returns the manifest on success; SIGNATURE_THRESHOLD_NOT_MET,
// MALFORMED_MANIFEST, the release errors, or MALFORMED_ROOT for a malformed `root`.
// Does NOT check expiry, sequence or target: the caller does, with CheckManifestFreshness and
// CheckManifestTarget, because only it knows its clock, state and request.
absl::StatusOr<v1::Manifest> VerifyManifest(const v1::TrustRoot& root,
                                            const v1::SignedManifest& signed_manifest);

// OK when the manifest is still valid at `now` and does not go back in sequence:
// now < expires_at + allowed_skew (a negative skew counts as zero) and
// sequence >= highest_seen_sequence (equal is fine: a re-sign keeps the sequence).
// MALFORMED_MANIFEST without expires_at; MANIFEST_EXPIRED; SEQUENCE_ROLLBACK. `issued_at` is
// informational and not checked. Callers should take `now` once, at the start of an update.
absl::Status CheckManifestFreshness(const v1::Manifest& manifest, absl::Time now,
                                    absl::Duration allowed_skew, int64_t highest_seen_sequence);

// OK when the manifest answers this request: same tier, channel (empty means "stable" on both
// sides), platform and arch, and its artifact (when present) is for that platform and for
// that arch or ARCH_ANY. WRONG_TARGET otherwise; INVALID_ARGUMENT when `platform` or `arch`
// is unspecified.
absl::Status CheckManifestTarget(const v1::Manifest& manifest, absl::string_view tier,
                                 absl::string_view channel, v1::Platform platform, v1::Arch arch);

// OK when a manifest's artifact is consistent in itself, so that its chunk chain can check
// bytes: size_bytes in [0, 2^56], chunk_size a multiple of 64 in (0, 64 MiB],
// ceil(size_bytes / chunk_size) chain entries of 32 bytes, the last one the raw `digest`.
// INVALID_ARGUMENT naming the field otherwise (INVALID_DIGEST, INVALID_SIZE,
// INVALID_CHUNK_SIZE, CHUNK_COUNT_MISMATCH, INVALID_CHUNK_DIGEST, CHAIN_DIGEST_MISMATCH).
absl::Status CheckManifestArtifact(const v1::ManifestArtifact& artifact);

}  // namespace modeldist

#endif  // MODELDIST_COMMON_TRUST_H_
