// File: release.h
//
// Release statements: what the release keys of a trust root (kept offline) signed about one
// version's files, so that a server which holds only the online manifest keys cannot make a
// device install bytes nobody released. `modeldistctl release sign` makes them where the files
// are; the server refuses to publish a version whose statement does not list exactly its
// artifacts; VerifyManifest (common/trust.h) makes every device check the artifact it is told
// to install against the statement the manifest carries. Pure functions, like trust.h.
//
//   reason                              code                 when
//   RELEASE_REQUIRED                    PERMISSION_DENIED    the root has release keys and no
//                                                            statement came with the manifest
//                                                            (FAILED_PRECONDITION on publish)
//   MALFORMED_RELEASE                   INVALID_ARGUMENT     signed bytes that do not parse, a
//                                                            malformed version name, more than
//                                                            kMaxArtifactsPerVersion artifacts
//                                                            or one that is not well formed, or
//                                                            a statement for another version
//   RELEASE_SIGNATURE_THRESHOLD_NOT_MET PERMISSION_DENIED    fewer than the threshold of the
//                                                            root's release keys signed it
//   RELEASE_MISMATCH                    PERMISSION_DENIED    the artifact is not in it
//   RELEASE_KEYS_NOT_SET                FAILED_PRECONDITION  the root has no release keys
#ifndef MODELDIST_COMMON_RELEASE_H_
#define MODELDIST_COMMON_RELEASE_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/chunk_chain.h"
#include "common/ed25519.h"
#include "modeldist/v1/manifest.pb.h"

namespace modeldist {

// The context of release signatures (see SignedBytes in common/ed25519.h).
inline constexpr absl::string_view kReleaseSignatureContext = "modeldist-release-v1";

inline constexpr absl::string_view kReasonReleaseRequired = "RELEASE_REQUIRED";
inline constexpr absl::string_view kReasonMalformedRelease = "MALFORMED_RELEASE";
inline constexpr absl::string_view kReasonReleaseSignatureThresholdNotMet =
    "RELEASE_SIGNATURE_THRESHOLD_NOT_MET";
inline constexpr absl::string_view kReasonReleaseMismatch = "RELEASE_MISMATCH";
inline constexpr absl::string_view kReasonReleaseKeysNotSet = "RELEASE_KEYS_NOT_SET";

// What a release lists for `artifact`: its digest, size, format, platform, arch, chunk size
// and the SHA-256 of its chunk chain.
v1::ReleasedArtifact ReleasedArtifactFor(const v1::ManifestArtifact& artifact);

// What a release lists for the whole file `chain` was fed, built with `chunk_size`: where
// the files are (modeldistctl release sign), without a manifest.
v1::ReleasedArtifact ReleasedArtifactOf(const ChunkChainBuilder& chain, int64_t chunk_size,
                                        v1::Platform platform, v1::Arch arch, v1::Format format);

// The SHA-256 (32 raw bytes) of chain entries concatenated in order.
std::string ChunkChainSha256(const google::protobuf::RepeatedPtrField<std::string>& chain);

// Serializes `release` once and signs those bytes with each of `signers`.
v1::SignedRelease SignRelease(const v1::Release& release,
                              const std::vector<const Ed25519PrivateKey*>& signers);

// Adds `signer`'s signature to `signed_release` (for k-of-n ceremonies: each holder signs the
// same bytes in turn). A second signature by the same key replaces the first.
void AddReleaseSignature(const Ed25519PrivateKey& signer, v1::SignedRelease* signed_release);

// Verifies `signed_release` against the release keys of `root` and parses it: the threshold
// of distinct release keys signed the exact bytes, they parse as a well-formed Release, and
// it is for `version` (`models/{model}/versions/{version}`). Errors: RELEASE_KEYS_NOT_SET,
// RELEASE_SIGNATURE_THRESHOLD_NOT_MET, MALFORMED_RELEASE.
absl::StatusOr<v1::Release> VerifyRelease(const v1::TrustRoot& root,
                                          const v1::SignedRelease& signed_release,
                                          absl::string_view version);

// OK when `release` lists `artifact` (every field of ReleasedArtifactFor equal);
// RELEASE_MISMATCH saying what differs otherwise.
absl::Status CheckArtifactReleased(const v1::Release& release,
                                   const v1::ReleasedArtifact& artifact);

// What VerifyManifest runs when `root` has release keys: `signed_release` is present
// (RELEASE_REQUIRED), verifies for `manifest.version()` and lists `manifest.artifact()`.
absl::Status CheckManifestReleased(const v1::TrustRoot& root, const v1::Manifest& manifest,
                                   const v1::SignedRelease& signed_release);

}  // namespace modeldist

#endif  // MODELDIST_COMMON_RELEASE_H_
