// File: trust_files.h
//
// The files of the offline trust ceremony (docs/trust.md), shared by `modeldistctl root` and
// `modeldistctl release`:
//   - root files: a SignedTrustRoot as protobuf JSON (`root` base64, `signatures`), so a person
//     can check what they carry between machines; `root` stays the exact signed bytes. The
//     binary SignedTrustRoot of `keys root --out` is read too;
//   - release files: a SignedRelease, the same way;
//   - key files: PKCS#8 PEM private keys (mode 0600) and SubjectPublicKeyInfo PEM public keys;
//     the keys that sign are opened as a Signer (signer.h), from a file or a PKCS#11 token.
// Every failure here is a local error (exit 3) naming the file.
#ifndef MODELDIST_CLIENT_MODELDISTCTL_TRUST_FILES_H_
#define MODELDIST_CLIENT_MODELDISTCTL_TRUST_FILES_H_

#include <set>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "client/modeldistctl/signer.h"
#include "common/ed25519.h"
#include "modeldist/v1/manifest.pb.h"

namespace modeldist::ctl {

// A signed root file, JSON or binary. A local error when it is missing or neither parses.
absl::StatusOr<v1::SignedTrustRoot> ReadRootFile(const std::string& path);
// Writes `signed_root` as JSON (mode 0644, atomically). With overwrite=false an existing file
// is a local error that says so.
absl::Status WriteRootFile(const std::string& path, const v1::SignedTrustRoot& signed_root,
                           bool overwrite);
// The root inside a root file, parsed but not verified; a local error naming `path`.
absl::StatusOr<v1::TrustRoot> RootOf(const std::string& path,
                                     const v1::SignedTrustRoot& signed_root);

// A release file (JSON or binary SignedRelease), and the same for writing.
absl::StatusOr<v1::SignedRelease> ReadReleaseFile(const std::string& path);
absl::Status WriteReleaseFile(const std::string& path, const v1::SignedRelease& signed_release,
                              bool overwrite);
// The release inside a release file, parsed but not verified.
absl::StatusOr<v1::Release> ReleaseOf(const std::string& path,
                                      const v1::SignedRelease& signed_release);

// A public key file (`root keygen`'s NAME.pub.pem). A private key file is refused with a
// message pointing at its .pub.pem: public keys go into roots, private ones never travel.
absl::StatusOr<Ed25519PublicKey> ReadPublicKeyFile(const std::string& path);

// Adds `signer`'s signature of SignedBytes(context, message) to `signatures` (the signers of
// a root or a release file sign the exact `root` or `release` bytes); a second signature by
// the same key replaces the first, so signing twice is harmless. Fails only when a token does.
absl::Status AddSignature(const Signer& signer, absl::string_view context,
                          absl::string_view message,
                          google::protobuf::RepeatedPtrField<v1::Signature>* signatures);

// The key ids of `keys` with a valid signature in `signatures` over SignedBytes(context,
// message), counting, like CountValidSigners, only the first signature of each key id.
std::set<std::string> ValidSigners(const google::protobuf::RepeatedPtrField<v1::SigningKey>& keys,
                                   absl::string_view context, absl::string_view message,
                                   const google::protobuf::RepeatedPtrField<v1::Signature>& sigs);

// The key ids of `keys`, in order.
std::vector<std::string> KeyIds(const google::protobuf::RepeatedPtrField<v1::SigningKey>& keys);

// `root` for people: version, issue time, each role's threshold and key ids, and, when
// `signed_root` is given, each signature and whether it is by a root key of `root` itself.
std::string DescribeRoot(const v1::TrustRoot& root, const v1::SignedTrustRoot* signed_root);

// One line for the root keys of `signers` (RootSigners) as signers of `next`: which signed,
// and how many are missing (saying so when they are online keys, which the server adds at
// UploadTrustRoot). `whose` names them.
std::string DescribeRootSigners(absl::string_view whose, const v1::TrustRoot& signers,
                                const v1::SignedTrustRoot& next);

// What a release lists for the file at `path`: its digest, size, and chunk chain for the
// server's chunk size (storage::kChunkDigestBytes), from one read of the file; a local error
// when it cannot be read or changes while it is read.
absl::StatusOr<v1::ReleasedArtifact> ReleasedArtifactOfFile(const std::string& path,
                                                            v1::Platform platform, v1::Arch arch,
                                                            v1::Format format);

}  // namespace modeldist::ctl

#endif  // MODELDIST_CLIENT_MODELDISTCTL_TRUST_FILES_H_
