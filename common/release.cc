#include "common/release.h"

#include <string>

#include "absl/strings/str_cat.h"
#include "common/digest.h"
#include "common/limits.h"
#include "common/names.h"
#include "common/status.h"
#include "common/trust.h"

namespace modeldist {
namespace {

absl::Status Malformed(absl::string_view message) {
  return MakeError(absl::StatusCode::kInvalidArgument, kReasonMalformedRelease,
                   absl::StrCat("the release statement is malformed: ", message));
}

absl::Status Mismatch(absl::string_view message) {
  return MakeError(absl::StatusCode::kPermissionDenied, kReasonReleaseMismatch, message);
}

// "sha256:... (macos/arm64 coreml-zip)" for messages.
std::string Describe(const v1::ReleasedArtifact& artifact) {
  return absl::StrCat(artifact.digest(), " (", v1::Platform_Name(artifact.platform()), "/",
                      v1::Arch_Name(artifact.arch()), " ", v1::Format_Name(artifact.format()), ")");
}

absl::Status CheckReleasedArtifact(int index, const v1::ReleasedArtifact& artifact) {
  absl::StatusOr<std::string> digest = ParseDigest("digest", artifact.digest());
  if (!digest.ok()) {
    return Malformed(absl::StrCat("artifact ", index, ": ", digest.status().message()));
  }
  if (artifact.size_bytes() < 0 || artifact.chunk_size() <= 0 ||
      artifact.chunk_chain_sha256().size() != Sha256::kStateBytes) {
    return Malformed(absl::StrCat("artifact ", index, " (", artifact.digest(),
                                  ") needs a size >= 0, a chunk size > 0 and a 32-byte "
                                  "chunk_chain_sha256"));
  }
  return absl::OkStatus();
}

}  // namespace

std::string ChunkChainSha256(const google::protobuf::RepeatedPtrField<std::string>& chain) {
  Sha256 hash;
  for (const std::string& entry : chain) hash.Update(entry);
  return hash.FinishRaw();
}

v1::ReleasedArtifact ReleasedArtifactFor(const v1::ManifestArtifact& artifact) {
  v1::ReleasedArtifact out;
  out.set_digest(artifact.digest());
  out.set_size_bytes(artifact.size_bytes());
  out.set_format(artifact.format());
  out.set_platform(artifact.platform());
  out.set_arch(artifact.arch());
  out.set_chunk_size(artifact.chunk_size());
  out.set_chunk_chain_sha256(ChunkChainSha256(artifact.chunk_chain()));
  return out;
}

v1::ReleasedArtifact ReleasedArtifactOf(const ChunkChainBuilder& chain, int64_t chunk_size,
                                        v1::Platform platform, v1::Arch arch, v1::Format format) {
  v1::ReleasedArtifact out;
  out.set_digest(FormatDigest(chain.DigestHex()));
  out.set_size_bytes(chain.bytes());
  out.set_format(format);
  out.set_platform(platform);
  out.set_arch(arch);
  out.set_chunk_size(chunk_size);
  // Chain() is the entries concatenated: what ChunkChainSha256 hashes.
  Sha256 chain_hash;
  chain_hash.Update(chain.Chain());
  out.set_chunk_chain_sha256(chain_hash.FinishRaw());
  return out;
}

v1::SignedRelease SignRelease(const v1::Release& release,
                              const std::vector<const Ed25519PrivateKey*>& signers) {
  v1::SignedRelease out;
  release.SerializeToString(out.mutable_release());
  for (const Ed25519PrivateKey* signer : signers) AddReleaseSignature(*signer, &out);
  return out;
}

void AddReleaseSignature(const Ed25519PrivateKey& signer, v1::SignedRelease* signed_release) {
  const std::string key_id = signer.public_key().KeyId();
  v1::Signature* sig = nullptr;
  for (v1::Signature& existing : *signed_release->mutable_signatures()) {
    if (existing.key_id() == key_id) sig = &existing;
  }
  if (sig == nullptr) sig = signed_release->add_signatures();
  sig->set_key_id(key_id);
  sig->set_signature(signer.Sign(kReleaseSignatureContext, signed_release->release()));
}

absl::StatusOr<v1::Release> VerifyRelease(const v1::TrustRoot& root,
                                          const v1::SignedRelease& signed_release,
                                          absl::string_view version) {
  if (!root.has_release_keys()) {
    return MakeError(absl::StatusCode::kFailedPrecondition, kReasonReleaseKeysNotSet,
                     absl::StrCat("trust root ", root.version(), " has no release keys"));
  }
  const v1::RoleKeys& role = root.release_keys();
  const int valid = CountValidSigners(role.keys(), kReleaseSignatureContext,
                                      signed_release.release(), signed_release.signatures());
  if (valid < role.threshold()) {
    return MakeError(absl::StatusCode::kPermissionDenied, kReasonReleaseSignatureThresholdNotMet,
                     absl::StrCat("the release statement has ", valid,
                                  " valid signatures by distinct release keys of trust root ",
                                  root.version(), ", needs ", role.threshold()),
                     {{"valid", absl::StrCat(valid)},
                      {"required", absl::StrCat(role.threshold())},
                      {"root_version", absl::StrCat(root.version())}});
  }
  v1::Release release;
  if (!release.ParseFromString(signed_release.release())) {
    return Malformed("the signed bytes are not a Release");
  }
  if (!ParseVersionName("release.version", release.version()).ok()) {
    return Malformed(absl::StrCat("'", release.version(), "' is not a version name"));
  }
  if (release.version() != version) {
    return Malformed(absl::StrCat("it releases ", release.version(), ", not ", version));
  }
  if (release.artifacts_size() > kMaxArtifactsPerVersion) {
    return Malformed(absl::StrCat("it lists ", release.artifacts_size(), " artifacts, at most ",
                                  kMaxArtifactsPerVersion));
  }
  for (int i = 0; i < release.artifacts_size(); ++i) {
    MD_RETURN_IF_ERROR(CheckReleasedArtifact(i, release.artifacts(i)));
  }
  return release;
}

absl::Status CheckArtifactReleased(const v1::Release& release,
                                   const v1::ReleasedArtifact& artifact) {
  for (const v1::ReleasedArtifact& released : release.artifacts()) {
    if (released.digest() != artifact.digest() || released.platform() != artifact.platform() ||
        released.arch() != artifact.arch() || released.format() != artifact.format()) {
      continue;
    }
    if (released.size_bytes() != artifact.size_bytes() ||
        released.chunk_size() != artifact.chunk_size() ||
        released.chunk_chain_sha256() != artifact.chunk_chain_sha256()) {
      return Mismatch(absl::StrCat(release.version(), " releases ", Describe(artifact),
                                   " with another size, chunk size or chunk chain"));
    }
    return absl::OkStatus();
  }
  return Mismatch(absl::StrCat(release.version(), " does not release ", Describe(artifact)));
}

absl::Status CheckManifestReleased(const v1::TrustRoot& root, const v1::Manifest& manifest,
                                   const v1::SignedRelease& signed_release) {
  if (signed_release.release().empty()) {
    return MakeError(absl::StatusCode::kPermissionDenied, kReasonReleaseRequired,
                     absl::StrCat("trust root ", root.version(),
                                  " requires a release statement and the manifest for ",
                                  manifest.version(), " carries none"));
  }
  MD_ASSIGN_OR_RETURN(v1::Release release, VerifyRelease(root, signed_release, manifest.version()));
  return CheckArtifactReleased(release, ReleasedArtifactFor(manifest.artifact()));
}

}  // namespace modeldist
