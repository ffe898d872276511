// libFuzzer target for what a device verifies before it trusts a byte (common/trust.h,
// common/release.h): trust roots, signed manifests and release statements, from fuzzed bytes.
//
// Input: one mode byte, then the mode's bytes. Modes that fuzz the signed bytes themselves have
// the harness sign them with the fixed keys of the trusted root (fuzz_util.h), so that the
// parsing and checks after the signature check are reached too:
//   0  SignedTrustRoot            -> VerifyFirstRoot
//   1  SignedTrustRoot            -> VerifyNextRoot(trusted root)
//   2  TrustRoot bytes, signed by the trusted root's root key -> VerifyNextRoot, VerifyFirstRoot
//   3  SignedManifest             -> VerifyManifest (the root has release keys)
//   4  2-byte length, Manifest bytes, Release bytes; the manifest signed by the online key and
//      the release by the release key -> VerifyManifest, then the freshness, target and
//      artifact checks on what it accepted
//   5  SignedRelease              -> VerifyRelease
//   6  Release bytes, signed by the release key -> VerifyRelease
// Properties: no crash or sanitizer finding; every error is one a parser may give (fuzz_util.h);
// an accepted next root is well formed and one version up; an accepted manifest whose artifact
// is set is in the release that came with it; an accepted release is for the version asked.
#include <cstdint>
#include <string>

#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "common/digest.h"
#include "common/release.h"
#include "common/trust.h"
#include "tests/fuzz/fuzz_util.h"

namespace modeldist {
namespace {

using fuzz::Require;
using fuzz::RequireParserError;

constexpr char kVersion[] = "models/llama/versions/1";

struct Keys {
  Ed25519PrivateKey online = fuzz::FixedKey(fuzz::kOnlineKeyPem);
  Ed25519PrivateKey root = fuzz::FixedKey(fuzz::kRootKeyPem);
  Ed25519PrivateKey release = fuzz::FixedKey(fuzz::kReleaseKeyPem);
  v1::TrustRoot trusted;  // version 1: all three roles, threshold 1 each
};

v1::RoleKeys Role(const Ed25519PrivateKey& key) {
  v1::RoleKeys role;
  *role.add_keys() = RootKeyFor(key.public_key());
  role.set_threshold(1);
  return role;
}

const Keys& TheKeys() {
  static const Keys* keys = [] {
    auto* k = new Keys;
    k->trusted.set_version(1);
    *k->trusted.add_keys() = RootKeyFor(k->online.public_key());
    k->trusted.set_threshold(1);
    *k->trusted.mutable_root_keys() = Role(k->root);
    *k->trusted.mutable_release_keys() = Role(k->release);
    return k;
  }();
  return *keys;
}

v1::Signature SignatureBy(const Ed25519PrivateKey& key, absl::string_view context,
                          absl::string_view message) {
  v1::Signature sig;
  sig.set_key_id(key.public_key().KeyId());
  sig.set_signature(key.Sign(context, message));
  return sig;
}

v1::SignedTrustRoot SignedRoot(absl::string_view root_bytes) {
  v1::SignedTrustRoot out;
  out.set_root(std::string(root_bytes));
  *out.add_signatures() = SignatureBy(TheKeys().root, kRootSignatureContext, root_bytes);
  return out;
}

v1::SignedRelease SignedReleaseOf(absl::string_view release_bytes) {
  v1::SignedRelease out;
  out.set_release(std::string(release_bytes));
  *out.add_signatures() = SignatureBy(TheKeys().release, kReleaseSignatureContext, release_bytes);
  return out;
}

v1::SignedManifest SignedManifestOf(absl::string_view manifest_bytes,
                                    absl::string_view release_bytes) {
  v1::SignedManifest out;
  out.set_manifest(std::string(manifest_bytes));
  *out.add_signatures() = SignatureBy(TheKeys().online, kManifestSignatureContext, manifest_bytes);
  *out.mutable_release() = SignedReleaseOf(release_bytes);
  return out;
}

void CheckNextRoot(const v1::SignedTrustRoot& next) {
  const auto root = VerifyNextRoot(TheKeys().trusted, next);
  RequireParserError(root.status(), "VerifyNextRoot");
  if (!root.ok()) return;
  Require(root->version() == TheKeys().trusted.version() + 1, "accepted root is not next");
  Require(CheckRootWellFormed(*root).ok(), "accepted root is malformed");
}

void CheckFirstRoot(const v1::SignedTrustRoot& root) {
  const auto first = VerifyFirstRoot(root);
  RequireParserError(first.status(), "VerifyFirstRoot");
  if (first.ok()) Require(CheckRootWellFormed(*first).ok(), "accepted first root is malformed");
}

// What a device does with a manifest VerifyManifest accepted.
void CheckAccepted(const v1::Manifest& manifest, const v1::SignedManifest& signed_manifest) {
  if (manifest.has_artifact()) {
    const auto release =
        VerifyRelease(TheKeys().trusted, signed_manifest.release(), manifest.version());
    Require(release.ok(), "manifest accepted without a valid release");
    Require(CheckArtifactReleased(*release, ReleasedArtifactFor(manifest.artifact())).ok(),
            "manifest accepted with an artifact its release does not list");
    RequireParserError(CheckManifestArtifact(manifest.artifact()), "CheckManifestArtifact");
  }
  RequireParserError(
      CheckManifestFreshness(manifest, absl::FromUnixSeconds(1'800'000'000), absl::Minutes(5), 7),
      "CheckManifestFreshness");
  RequireParserError(CheckManifestTarget(manifest, manifest.tier(), manifest.channel(),
                                         v1::PLATFORM_MACOS, v1::ARCH_ARM64),
                     "CheckManifestTarget");
}

void CheckManifest(const v1::SignedManifest& signed_manifest) {
  const auto manifest = VerifyManifest(TheKeys().trusted, signed_manifest);
  RequireParserError(manifest.status(), "VerifyManifest");
  if (manifest.ok()) CheckAccepted(*manifest, signed_manifest);
}

void CheckRelease(const v1::SignedRelease& signed_release) {
  const auto release = VerifyRelease(TheKeys().trusted, signed_release, kVersion);
  RequireParserError(release.status(), "VerifyRelease");
  if (!release.ok()) return;
  Require(release->version() == kVersion, "release accepted for another version");
  for (const v1::ReleasedArtifact& artifact : release->artifacts()) {
    Require(CheckArtifactReleased(*release, artifact).ok(), "a release does not list its own");
  }
}

// Seeds: one valid input per mode, and the trust roots and manifests they are made of.
void WriteSeeds(const std::string& dir) {
  const Keys& k = TheKeys();
  const std::string trusted_bytes = k.trusted.SerializeAsString();
  v1::TrustRoot next = k.trusted;
  next.set_version(2);
  const std::string next_bytes = next.SerializeAsString();

  const std::string bytes = "hello, fuzzer";
  v1::Manifest manifest;
  manifest.set_tier("llama8b");
  manifest.set_channel("stable");
  manifest.set_platform(v1::PLATFORM_MACOS);
  manifest.set_arch(v1::ARCH_ARM64);
  manifest.set_model("models/llama");
  manifest.set_version(kVersion);
  manifest.set_sequence(9);
  manifest.mutable_expires_at()->set_seconds(1'900'000'000);
  v1::ManifestArtifact* artifact = manifest.mutable_artifact();
  artifact->set_digest(FormatDigest(Sha256::HexOf(bytes)));
  artifact->set_size_bytes(static_cast<int64_t>(bytes.size()));
  artifact->set_format(v1::FORMAT_GGUF);
  artifact->set_platform(v1::PLATFORM_MACOS);
  artifact->set_arch(v1::ARCH_ARM64);
  artifact->set_chunk_size(4 << 20);
  Sha256 hash;
  hash.Update(bytes);
  artifact->add_chunk_chain(hash.FinishRaw());
  v1::Release release;
  release.set_version(kVersion);
  *release.add_artifacts() = ReleasedArtifactFor(*artifact);
  const std::string manifest_bytes = manifest.SerializeAsString();
  const std::string release_bytes = release.SerializeAsString();

  // The seeds must be accepted, or the fuzzer would start short of the checks after them.
  Require(VerifyNextRoot(k.trusted, SignedRoot(next_bytes)).ok(), "seed next root refused");
  Require(VerifyManifest(k.trusted, SignedManifestOf(manifest_bytes, release_bytes)).ok(),
          "seed manifest refused");
  v1::SignedTrustRoot first;
  first.set_root(trusted_bytes);
  *first.add_signatures() = SignatureBy(k.root, kRootSignatureContext, trusted_bytes);
  Require(VerifyFirstRoot(first).ok(), "seed first root refused");
  fuzz::WriteSeed(dir, "0-first-root", std::string(1, 0) + first.SerializeAsString());
  fuzz::WriteSeed(dir, "1-next-root",
                  std::string(1, 1) + SignedRoot(next_bytes).SerializeAsString());
  fuzz::WriteSeed(dir, "2-next-root-bytes", std::string(1, 2) + next_bytes);
  fuzz::WriteSeed(
      dir, "3-signed-manifest",
      std::string(1, 3) + SignedManifestOf(manifest_bytes, release_bytes).SerializeAsString());
  fuzz::WriteSeed(dir, "4-manifest-and-release",
                  std::string(1, 4) + fuzz::Join(manifest_bytes, release_bytes));
  manifest.clear_artifact();
  fuzz::WriteSeed(dir, "4-manifest-without-artifact",
                  std::string(1, 4) + fuzz::Join(manifest.SerializeAsString(), ""));
  fuzz::WriteSeed(dir, "5-signed-release",
                  std::string(1, 5) + SignedReleaseOf(release_bytes).SerializeAsString());
  fuzz::WriteSeed(dir, "6-release-bytes", std::string(1, 6) + release_bytes);
}

}  // namespace
}  // namespace modeldist

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  modeldist::fuzz::Initialize(modeldist::WriteSeeds);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace modeldist;
  if (size < 1) return 0;
  const absl::string_view rest(reinterpret_cast<const char*>(data) + 1, size - 1);
  switch (data[0] % 7) {
    case 0: {
      v1::SignedTrustRoot root;
      if (root.ParseFromString(std::string(rest))) CheckFirstRoot(root);
      break;
    }
    case 1: {
      v1::SignedTrustRoot root;
      if (root.ParseFromString(std::string(rest))) CheckNextRoot(root);
      break;
    }
    case 2: {
      const v1::SignedTrustRoot root = SignedRoot(rest);
      CheckNextRoot(root);
      CheckFirstRoot(root);
      break;
    }
    case 3: {
      v1::SignedManifest manifest;
      if (manifest.ParseFromString(std::string(rest))) CheckManifest(manifest);
      break;
    }
    case 4: {
      const auto [manifest_bytes, release_bytes] = fuzz::Split(rest);
      CheckManifest(SignedManifestOf(manifest_bytes, release_bytes));
      break;
    }
    case 5: {
      v1::SignedRelease release;
      if (release.ParseFromString(std::string(rest))) CheckRelease(release);
      break;
    }
    case 6:
      CheckRelease(SignedReleaseOf(rest));
      break;
  }
  return 0;
}
