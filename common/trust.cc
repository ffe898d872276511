#include "common/trust.h"

#include <algorithm>
#include <map>
#include <set>
#include <string>

#include "absl/strings/str_cat.h"
#include "common/digest.h"
#include "common/names.h"
#include "common/release.h"
#include "common/status.h"

namespace modeldist {
namespace {

// Bounded even though the manifest is signed, so that a bad signer cannot make a refetch of
// one failed chunk (or a re-verification on resume) arbitrarily expensive.
constexpr int64_t kMaxChunkSize = 64 << 20;
// Keeps (k + 1) * chunk_size and size + chunk_size far from overflowing int64.
constexpr int64_t kMaxArtifactSize = int64_t{1} << 56;

absl::Status MalformedRoot(absl::string_view which, absl::string_view message) {
  return MakeError(absl::StatusCode::kInvalidArgument, kReasonMalformedRoot,
                   absl::StrCat(which, " trust root is malformed: ", message),
                   {{"root", std::string(which)}});
}

// Keys of a well-formed role by key id.
std::map<std::string, Ed25519PublicKey> KeysById(
    const google::protobuf::RepeatedPtrField<v1::SigningKey>& role_keys) {
  std::map<std::string, Ed25519PublicKey> keys;
  for (const v1::SigningKey& key : role_keys) {
    auto public_key = Ed25519PublicKey::FromRaw(key.public_key());
    if (public_key.ok()) keys.emplace(key.key_id(), *std::move(public_key));
  }
  return keys;
}

// OK when the root keys of `signers` (RootSigners) signed `signed_root`, root `root_version`.
absl::Status RootThreshold(const v1::TrustRoot& signers, absl::string_view by, int64_t root_version,
                           const v1::SignedTrustRoot& signed_root) {
  const v1::RoleKeys role = RootSigners(signers);
  const int valid = CountValidSigners(role.keys(), kRootSignatureContext, signed_root.root(),
                                      signed_root.signatures());
  if (valid >= role.threshold()) return absl::OkStatus();
  const std::string whose = by == "trusted_root"
                                ? absl::StrCat("the trusted root (version ", signers.version(), ")")
                                : std::string("its own");
  return MakeError(absl::StatusCode::kPermissionDenied, kReasonRootSignatureThresholdNotMet,
                   absl::StrCat("trust root ", root_version, " has ", valid,
                                " valid signatures by distinct root keys of ", whose, ", needs ",
                                role.threshold()),
                   {{"by", std::string(by)},
                    {"valid", absl::StrCat(valid)},
                    {"required", absl::StrCat(role.threshold())}});
}

// OK when `keys` with `threshold` form a well-formed role (see trust.h) of `root_version`,
// named `role` in messages.
absl::Status CheckRoleWellFormed(int64_t root_version, absl::string_view role,
                                 const google::protobuf::RepeatedPtrField<v1::SigningKey>& keys,
                                 int threshold) {
  auto malformed = [&](absl::string_view message) {
    return MakeError(absl::StatusCode::kInvalidArgument, kReasonMalformedRoot,
                     absl::StrCat("version ", root_version, ": ", message));
  };
  if (keys.empty()) return malformed(absl::StrCat("it has no ", role));
  if (keys.size() > kMaxRootKeys) {
    return malformed(absl::StrCat("it has ", keys.size(), " ", role, ", at most ", kMaxRootKeys,
                                  " are allowed"));
  }
  if (threshold < 1 || threshold > keys.size()) {
    return malformed(absl::StrCat("the threshold of its ", role, ", ", threshold, ", is not in 1..",
                                  keys.size()));
  }
  std::set<std::string> ids;
  for (const v1::SigningKey& key : keys) {
    if (key.algorithm() != kEd25519Algorithm) {
      return malformed(
          absl::StrCat("key ", key.key_id(), " has algorithm '", key.algorithm(), "'"));
    }
    auto public_key = Ed25519PublicKey::FromRaw(key.public_key());
    if (!public_key.ok()) {
      return malformed(absl::StrCat("key ", key.key_id(), ": ", public_key.status().message()));
    }
    if (public_key->KeyId() != key.key_id()) {
      return malformed(absl::StrCat("key id '", key.key_id(), "' does not match its public key (",
                                    public_key->KeyId(), ")"));
    }
    if (!ids.insert(key.key_id()).second) {
      return malformed(absl::StrCat("key ", key.key_id(), " is listed twice in its ", role));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<v1::TrustRoot> ParseRoot(const v1::SignedTrustRoot& signed_root) {
  v1::TrustRoot root;
  if (!root.ParseFromString(signed_root.root())) {
    return MalformedRoot("new", "the signed bytes are not a TrustRoot");
  }
  absl::Status well_formed = CheckRootWellFormed(root);
  if (!well_formed.ok()) return MalformedRoot("new", well_formed.message());
  return root;
}

absl::Status CheckTrusted(const v1::TrustRoot& trusted) {
  absl::Status well_formed = CheckRootWellFormed(trusted);
  if (!well_formed.ok()) return MalformedRoot("trusted", well_formed.message());
  return absl::OkStatus();
}

std::string ChannelOrDefault(absl::string_view channel) {
  return std::string(channel.empty() ? kDefaultChannel : channel);
}

absl::Status WrongTarget(absl::string_view field, absl::string_view want, absl::string_view got) {
  return MakeError(absl::StatusCode::kFailedPrecondition, kReasonWrongTarget,
                   absl::StrCat("the manifest answers ", field, " ", got, ", not ", want),
                   {{"field", std::string(field)}});
}

}  // namespace

v1::SigningKey RootKeyFor(const Ed25519PublicKey& key) {
  v1::SigningKey out;
  out.set_key_id(key.KeyId());
  out.set_algorithm(std::string(kEd25519Algorithm));
  out.set_public_key(key.raw());
  return out;
}

absl::Status CheckRootWellFormed(const v1::TrustRoot& root) {
  if (root.version() < 1) {
    return MakeError(absl::StatusCode::kInvalidArgument, kReasonMalformedRoot,
                     absl::StrCat("version ", root.version(), ": version must be at least 1"));
  }
  MD_RETURN_IF_ERROR(CheckRoleWellFormed(root.version(), "keys", root.keys(), root.threshold()));
  std::set<std::string> online;
  for (const v1::SigningKey& key : root.keys()) online.insert(key.key_id());
  if (root.has_root_keys()) {
    MD_RETURN_IF_ERROR(CheckRoleWellFormed(root.version(), "root keys", root.root_keys().keys(),
                                           root.root_keys().threshold()));
  }
  if (root.has_release_keys() && !root.has_root_keys()) {
    // The online keys would sign the next root, so whoever holds them could drop the role.
    return MakeError(
        absl::StatusCode::kInvalidArgument, kReasonMalformedRoot,
        absl::StrCat("version ", root.version(), ": release keys need root keys (offline) too"));
  }
  if (root.has_release_keys()) {
    MD_RETURN_IF_ERROR(CheckRoleWellFormed(root.version(), "release keys",
                                           root.release_keys().keys(),
                                           root.release_keys().threshold()));
  }
  // An offline key that the server also holds would be online after all.
  for (const v1::RoleKeys* role : {&root.root_keys(), &root.release_keys()}) {
    for (const v1::SigningKey& key : role->keys()) {
      if (online.count(key.key_id()) != 0) {
        return MakeError(absl::StatusCode::kInvalidArgument, kReasonMalformedRoot,
                         absl::StrCat("version ", root.version(), ": key ", key.key_id(),
                                      " is an online key and also a ",
                                      role == &root.root_keys() ? "root" : "release",
                                      " key; offline roles need keys of their own"));
      }
    }
  }
  return absl::OkStatus();
}

v1::RoleKeys RootSigners(const v1::TrustRoot& root) {
  if (root.has_root_keys()) return root.root_keys();
  v1::RoleKeys role;
  *role.mutable_keys() = root.keys();
  role.set_threshold(root.threshold());
  return role;
}

int CountValidSigners(const google::protobuf::RepeatedPtrField<v1::SigningKey>& keys,
                      absl::string_view context, absl::string_view message,
                      const google::protobuf::RepeatedPtrField<v1::Signature>& signatures) {
  const std::map<std::string, Ed25519PublicKey> by_id = KeysById(keys);
  std::set<std::string> tried;
  int valid = 0;
  for (const v1::Signature& sig : signatures) {
    auto it = by_id.find(sig.key_id());
    if (it == by_id.end()) continue;                   // unknown or revoked key: ignored
    if (!tried.insert(sig.key_id()).second) continue;  // one key counts once
    if (it->second.Verify(context, message, sig.signature())) ++valid;
  }
  return valid;
}

v1::SignedTrustRoot SignRoot(const v1::TrustRoot& root,
                             const std::vector<const Ed25519PrivateKey*>& signers) {
  v1::SignedTrustRoot out;
  root.SerializeToString(out.mutable_root());
  for (const Ed25519PrivateKey* signer : signers) {
    v1::Signature* sig = out.add_signatures();
    sig->set_key_id(signer->public_key().KeyId());
    sig->set_signature(signer->Sign(kRootSignatureContext, out.root()));
  }
  return out;
}

absl::StatusOr<v1::TrustRoot> VerifyFirstRoot(const v1::SignedTrustRoot& signed_root) {
  MD_ASSIGN_OR_RETURN(v1::TrustRoot root, ParseRoot(signed_root));
  MD_RETURN_IF_ERROR(RootThreshold(root, "new_root", root.version(), signed_root));
  return root;
}

absl::StatusOr<v1::TrustRoot> VerifyNextRoot(const v1::TrustRoot& trusted,
                                             const v1::SignedTrustRoot& next) {
  MD_RETURN_IF_ERROR(CheckTrusted(trusted));
  // The trusted keys vouch for the bytes before anything in them is believed.
  MD_RETURN_IF_ERROR(RootThreshold(trusted, "trusted_root", trusted.version() + 1, next));
  MD_ASSIGN_OR_RETURN(v1::TrustRoot root, ParseRoot(next));
  if (root.version() != trusted.version() + 1) {
    return MakeError(
        absl::StatusCode::kFailedPrecondition, kReasonRootVersionNotNext,
        absl::StrCat("the trusted root is version ", trusted.version(), "; the next must be ",
                     trusted.version() + 1, ", got ", root.version()),
        {{"expected", absl::StrCat(trusted.version() + 1)}, {"got", absl::StrCat(root.version())}});
  }
  MD_RETURN_IF_ERROR(RootThreshold(root, "new_root", root.version(), next));
  return root;
}

absl::StatusOr<v1::Manifest> VerifyManifest(const v1::TrustRoot& root,
                                            const v1::SignedManifest& signed_manifest) {
  MD_RETURN_IF_ERROR(CheckTrusted(root));
  const int valid = CountValidSigners(root.keys(), kManifestSignatureContext,
                                      signed_manifest.manifest(), signed_manifest.signatures());
  if (valid < root.threshold()) {
    return MakeError(absl::StatusCode::kPermissionDenied, kReasonSignatureThresholdNotMet,
                     absl::StrCat("the manifest has ", valid,
                                  " valid signatures by distinct keys of trust root ",
                                  root.version(), ", needs ", root.threshold()),
                     {{"valid", absl::StrCat(valid)},
                      {"required", absl::StrCat(root.threshold())},
                      {"root_version", absl::StrCat(root.version())}});
  }
  v1::Manifest manifest;
  if (!manifest.ParseFromString(signed_manifest.manifest())) {
    return MakeError(absl::StatusCode::kInvalidArgument, kReasonMalformedManifest,
                     "the signed bytes are not a Manifest");
  }
  if (root.has_release_keys() && manifest.has_artifact()) {
    MD_RETURN_IF_ERROR(CheckManifestReleased(root, manifest, signed_manifest.release()));
  }
  return manifest;
}

absl::Status CheckManifestFreshness(const v1::Manifest& manifest, absl::Time now,
                                    absl::Duration allowed_skew, int64_t highest_seen_sequence) {
  if (!manifest.has_expires_at()) {
    return MakeError(absl::StatusCode::kInvalidArgument, kReasonMalformedManifest,
                     "the manifest has no expires_at");
  }
  // Not TimeUtil: its nanosecond arithmetic overflows for far-future seconds.
  const absl::Time expires_at = absl::FromUnixSeconds(manifest.expires_at().seconds()) +
                                absl::Nanoseconds(manifest.expires_at().nanos());
  const absl::Duration skew = std::max(allowed_skew, absl::ZeroDuration());
  if (now >= expires_at + skew) {
    return MakeError(
        absl::StatusCode::kFailedPrecondition, kReasonManifestExpired,
        absl::StrCat("the manifest expired at ", absl::FormatTime(expires_at), "; now is ",
                     absl::FormatTime(now), " (allowed skew ", absl::FormatDuration(skew), ")"),
        {{"expires_at", absl::FormatTime(expires_at)}});
  }
  if (manifest.sequence() < highest_seen_sequence) {
    return MakeError(absl::StatusCode::kFailedPrecondition, kReasonSequenceRollback,
                     absl::StrCat("the manifest has sequence ", manifest.sequence(),
                                  ", lower than ", highest_seen_sequence, " seen before"),
                     {{"sequence", absl::StrCat(manifest.sequence())},
                      {"highest_seen", absl::StrCat(highest_seen_sequence)}});
  }
  return absl::OkStatus();
}

absl::Status CheckManifestTarget(const v1::Manifest& manifest, absl::string_view tier,
                                 absl::string_view channel, v1::Platform platform, v1::Arch arch) {
  if (platform == v1::PLATFORM_UNSPECIFIED) {
    return InvalidArgument("platform", "UNSPECIFIED_PLATFORM", "the requested platform is unset");
  }
  if (arch == v1::ARCH_UNSPECIFIED || arch == v1::ARCH_ANY) {
    return InvalidArgument("arch", "UNSPECIFIED_ARCH",
                           "the requested arch must be a device arch (not unset or ARCH_ANY)");
  }
  if (manifest.tier() != tier) return WrongTarget("tier", tier, manifest.tier());
  if (ChannelOrDefault(manifest.channel()) != ChannelOrDefault(channel)) {
    return WrongTarget("channel", ChannelOrDefault(channel), ChannelOrDefault(manifest.channel()));
  }
  if (manifest.platform() != platform) {
    return WrongTarget("platform", v1::Platform_Name(platform),
                       v1::Platform_Name(manifest.platform()));
  }
  if (manifest.arch() != arch) {
    return WrongTarget("arch", v1::Arch_Name(arch), v1::Arch_Name(manifest.arch()));
  }
  if (manifest.has_artifact()) {
    const v1::ManifestArtifact& artifact = manifest.artifact();
    if (artifact.platform() != platform) {
      return WrongTarget("artifact.platform", v1::Platform_Name(platform),
                         v1::Platform_Name(artifact.platform()));
    }
    if (artifact.arch() != arch && artifact.arch() != v1::ARCH_ANY) {
      return WrongTarget("artifact.arch", v1::Arch_Name(arch), v1::Arch_Name(artifact.arch()));
    }
  }
  return absl::OkStatus();
}

absl::Status CheckManifestArtifact(const v1::ManifestArtifact& artifact) {
  MD_ASSIGN_OR_RETURN(std::string digest_hex, ParseDigest("digest", artifact.digest()));
  if (artifact.size_bytes() < 0 || artifact.size_bytes() > kMaxArtifactSize) {
    return InvalidArgument("size_bytes", "INVALID_SIZE",
                           absl::StrCat("size_bytes ", artifact.size_bytes(), " is out of range"));
  }
  if (artifact.chunk_size() <= 0 || artifact.chunk_size() > kMaxChunkSize ||
      artifact.chunk_size() % static_cast<int64_t>(Sha256::kBlockBytes) != 0) {
    return InvalidArgument("chunk_size", "INVALID_CHUNK_SIZE",
                           absl::StrCat("chunk_size ", artifact.chunk_size(),
                                        " must be a multiple of 64 in (0, ", kMaxChunkSize, "]"));
  }
  const int64_t want = artifact.size_bytes() / artifact.chunk_size() +
                       (artifact.size_bytes() % artifact.chunk_size() != 0 ? 1 : 0);
  if (artifact.chunk_chain_size() != want) {
    return InvalidArgument(
        "chunk_chain", "CHUNK_COUNT_MISMATCH",
        absl::StrCat("the manifest's chunk chain has ", artifact.chunk_chain_size(), " entries; ",
                     artifact.size_bytes(), " bytes in ", artifact.chunk_size(),
                     "-byte chunks need ", want));
  }
  for (int i = 0; i < artifact.chunk_chain_size(); ++i) {
    if (artifact.chunk_chain(i).size() != Sha256::kStateBytes) {
      return InvalidArgument("chunk_chain", "INVALID_CHUNK_DIGEST",
                             absl::StrCat("chunk chain entry ", i, " has ",
                                          artifact.chunk_chain(i).size(), " bytes, not 32"));
    }
  }
  // The last entry is the file's digest; with that, verifying the last chunk checks the whole
  // file. A manifest that contradicts itself is refused before any byte is fetched.
  const std::string file_digest =
      want == 0 ? Sha256::HexOf("") : HexEncode(artifact.chunk_chain(static_cast<int>(want - 1)));
  if (file_digest != digest_hex) {
    return InvalidArgument(
        "chunk_chain", "CHAIN_DIGEST_MISMATCH",
        absl::StrCat("the manifest's chunk chain ends in sha256:", file_digest, ", its digest is ",
                     artifact.digest(), "; the manifest contradicts itself"));
  }
  return absl::OkStatus();
}

}  // namespace modeldist
