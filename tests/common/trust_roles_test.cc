// Trust roles (root keys and release keys kept offline) and release statements: the rules of
// common/trust.h and common/release.h that make a stolen online key unable to change what
// devices trust or install.
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "common/digest.h"
#include "common/ed25519.h"
#include "common/release.h"
#include "common/status.h"
#include "common/trust.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/test_util.h"

namespace modeldist {
namespace {

using ::modeldist::testing::HasReason;
using ::modeldist::testing::IsOk;
using ::testing::HasSubstr;

constexpr absl::StatusCode kDenied = absl::StatusCode::kPermissionDenied;
constexpr absl::StatusCode kInvalid = absl::StatusCode::kInvalidArgument;
constexpr char kVersion[] = "models/llama/versions/1";

Ed25519PrivateKey NewKey() {
  auto key = Ed25519PrivateKey::Generate();
  EXPECT_THAT(key, IsOk());
  return std::move(key).value();
}

v1::RoleKeys Role(const std::vector<const Ed25519PrivateKey*>& keys, int threshold) {
  v1::RoleKeys role;
  for (const Ed25519PrivateKey* key : keys) *role.add_keys() = RootKeyFor(key->public_key());
  role.set_threshold(threshold);
  return role;
}

v1::Manifest MakeManifest(const std::string& digest_char = "a") {
  v1::Manifest m;
  m.set_tier("llama8b");
  m.set_channel("stable");
  m.set_platform(v1::PLATFORM_MACOS);
  m.set_arch(v1::ARCH_ARM64);
  m.set_model("models/llama");
  m.set_version(kVersion);
  v1::ManifestArtifact* a = m.mutable_artifact();
  std::string digest_hex;
  for (int i = 0; i < 64; ++i) digest_hex += digest_char;
  a->set_digest("sha256:" + digest_hex);
  a->set_size_bytes(100);
  a->set_format(v1::FORMAT_GGUF);
  a->set_platform(v1::PLATFORM_MACOS);
  a->set_arch(v1::ARCH_ARM64);
  a->set_chunk_size(4 << 20);
  a->add_chunk_chain(std::string(32, 'x'));
  m.mutable_expires_at()->set_seconds(1'900'000'000);
  return m;
}

v1::SignedManifest SignManifest(const v1::Manifest& manifest, const Ed25519PrivateKey& key) {
  v1::SignedManifest out;
  manifest.SerializeToString(out.mutable_manifest());
  v1::Signature* sig = out.add_signatures();
  sig->set_key_id(key.public_key().KeyId());
  sig->set_signature(key.Sign(kManifestSignatureContext, out.manifest()));
  return out;
}

v1::Release ReleaseOf(const std::vector<v1::ManifestArtifact>& artifacts,
                      const std::string& version = kVersion) {
  v1::Release release;
  release.set_version(version);
  for (const v1::ManifestArtifact& a : artifacts) *release.add_artifacts() = ReleasedArtifactFor(a);
  return release;
}

// online_ signs manifests; root1_, root2_ are the offline root keys (2 of 2); rel1_, rel2_
// the release keys (1 of 2 unless a test raises it).
class TrustRolesTest : public ::testing::Test {
 protected:
  v1::TrustRoot SingleRole(int64_t version) {
    v1::TrustRoot root;
    root.set_version(version);
    *root.add_keys() = RootKeyFor(online_.public_key());
    root.set_threshold(1);
    return root;
  }
  v1::TrustRoot WithRoles(int64_t version, int release_threshold = 1) {
    v1::TrustRoot root = SingleRole(version);
    *root.mutable_root_keys() = Role({&root1_, &root2_}, 2);
    *root.mutable_release_keys() = Role({&rel1_, &rel2_}, release_threshold);
    return root;
  }

  Ed25519PrivateKey online_ = NewKey();
  Ed25519PrivateKey root1_ = NewKey();
  Ed25519PrivateKey root2_ = NewKey();
  Ed25519PrivateKey rel1_ = NewKey();
  Ed25519PrivateKey rel2_ = NewKey();
};

TEST_F(TrustRolesTest, MigrationFromASingleRoleRootNeedsTheOnlineKeyAndTheNewRootKeys) {
  const v1::TrustRoot v1_root = SingleRole(1);
  const v1::TrustRoot v2 = WithRoles(2);
  // The single-role root's keys (the online key) vouch for the change; the new root keys
  // vouch for themselves.
  auto next = VerifyNextRoot(v1_root, SignRoot(v2, {&online_, &root1_, &root2_}));
  ASSERT_THAT(next, IsOk());
  EXPECT_TRUE(next->has_root_keys());

  auto own = VerifyNextRoot(v1_root, SignRoot(v2, {&online_, &root1_}));
  EXPECT_THAT(own, HasReason(kDenied, kReasonRootSignatureThresholdNotMet));
  EXPECT_EQ(ErrorMetadataValue(own.status(), "by"), "new_root");
  EXPECT_THAT(VerifyNextRoot(v1_root, SignRoot(v2, {&root1_, &root2_})),
              HasReason(kDenied, kReasonRootSignatureThresholdNotMet));
}

TEST_F(TrustRolesTest, OnceRootKeysExistTheOnlineKeyCannotChangeTheRoot) {
  const v1::TrustRoot trusted = WithRoles(2);
  // The thief's root: the release role dropped, signed by the online key it stole.
  v1::TrustRoot stolen = SingleRole(3);
  auto status = VerifyNextRoot(trusted, SignRoot(stolen, {&online_}));
  EXPECT_THAT(status, HasReason(kDenied, kReasonRootSignatureThresholdNotMet));
  EXPECT_EQ(ErrorMetadataValue(status.status(), "by"), "trusted_root");
  EXPECT_THAT(status.status().message(), HasSubstr("root keys"));
  // One root key is not enough (2 of 2); both are.
  EXPECT_THAT(VerifyNextRoot(trusted, SignRoot(stolen, {&online_, &root1_})),
              HasReason(kDenied, kReasonRootSignatureThresholdNotMet));
  EXPECT_THAT(VerifyNextRoot(trusted, SignRoot(WithRoles(3), {&root1_, &root2_})), IsOk());
}

TEST_F(TrustRolesTest, OfflineRolesMustBeWellFormedAndNotOnline) {
  struct Case {
    const char* name;
    v1::TrustRoot root;
  };
  std::vector<Case> cases;
  {
    v1::TrustRoot r = WithRoles(2);
    r.mutable_root_keys()->set_threshold(3);
    cases.push_back({"root threshold above key count", r});
  }
  {
    v1::TrustRoot r = WithRoles(2);
    r.mutable_release_keys()->set_threshold(0);
    cases.push_back({"release threshold 0", r});
  }
  {
    v1::TrustRoot r = WithRoles(2);
    r.mutable_root_keys()->clear_keys();
    cases.push_back({"root role without keys", r});
  }
  {
    v1::TrustRoot r = WithRoles(2);
    *r.mutable_release_keys()->add_keys() = r.release_keys().keys(0);
    cases.push_back({"release key twice", r});
  }
  {
    v1::TrustRoot r = WithRoles(2);
    r.mutable_root_keys()->mutable_keys(0)->set_key_id("0000000000000000");
    cases.push_back({"root key id not its key's", r});
  }
  {
    v1::TrustRoot r = WithRoles(2);
    *r.mutable_root_keys()->add_keys() = RootKeyFor(online_.public_key());
    cases.push_back({"online key as a root key", r});
  }
  {
    v1::TrustRoot r = WithRoles(2);
    *r.mutable_release_keys()->add_keys() = RootKeyFor(online_.public_key());
    cases.push_back({"online key as a release key", r});
  }
  {
    v1::TrustRoot r = WithRoles(2);
    r.clear_root_keys();
    cases.push_back({"release keys without root keys", r});
  }
  for (const Case& c : cases) {
    EXPECT_THAT(CheckRootWellFormed(c.root), HasReason(kInvalid, kReasonMalformedRoot)) << c.name;
  }
  // A key in both offline roles is allowed (small teams): both stay offline.
  v1::TrustRoot shared = WithRoles(2);
  *shared.mutable_release_keys()->add_keys() = RootKeyFor(root1_.public_key());
  EXPECT_THAT(CheckRootWellFormed(shared), IsOk());
}

TEST_F(TrustRolesTest, ReleasedManifestVerifies) {
  const v1::TrustRoot root = WithRoles(2);
  const v1::Manifest manifest = MakeManifest();
  v1::SignedManifest signed_manifest = SignManifest(manifest, online_);
  *signed_manifest.mutable_release() = SignRelease(ReleaseOf({manifest.artifact()}), {&rel2_});
  auto verified = VerifyManifest(root, signed_manifest);
  ASSERT_THAT(verified, IsOk());
  EXPECT_EQ(verified->artifact().digest(), manifest.artifact().digest());
}

TEST_F(TrustRolesTest, TheOnlineKeyAloneCannotMakeADeviceInstallAnything) {
  const v1::TrustRoot root = WithRoles(2);
  const v1::Manifest released = MakeManifest("a");
  const v1::Manifest unreleased = MakeManifest("b");
  const v1::SignedRelease release = SignRelease(ReleaseOf({released.artifact()}), {&rel1_});

  // No statement at all.
  EXPECT_THAT(VerifyManifest(root, SignManifest(unreleased, online_)),
              HasReason(kDenied, kReasonReleaseRequired));
  // A real statement of this version, for other bytes.
  v1::SignedManifest swapped = SignManifest(unreleased, online_);
  *swapped.mutable_release() = release;
  EXPECT_THAT(VerifyManifest(root, swapped), HasReason(kDenied, kReasonReleaseMismatch));
  // A statement the online key signed itself.
  v1::SignedManifest self_released = SignManifest(unreleased, online_);
  *self_released.mutable_release() = SignRelease(ReleaseOf({unreleased.artifact()}), {&online_});
  EXPECT_THAT(VerifyManifest(root, self_released),
              HasReason(kDenied, kReasonReleaseSignatureThresholdNotMet));
  // A real statement of another version, replayed for this one.
  v1::SignedManifest replayed = SignManifest(released, online_);
  *replayed.mutable_release() =
      SignRelease(ReleaseOf({released.artifact()}, "models/llama/versions/0"), {&rel1_});
  EXPECT_THAT(VerifyManifest(root, replayed), HasReason(kInvalid, kReasonMalformedRelease));
  // The released digest with another chunk chain (bytes it could craft chunk by chunk).
  v1::Manifest rechained = released;
  rechained.mutable_artifact()->set_chunk_chain(0, std::string(32, 'y'));
  v1::SignedManifest other_chain = SignManifest(rechained, online_);
  *other_chain.mutable_release() = release;
  auto status = VerifyManifest(root, other_chain);
  EXPECT_THAT(status, HasReason(kDenied, kReasonReleaseMismatch));
  EXPECT_THAT(status.status().message(), HasSubstr("chunk chain"));
  // The released artifact sent for another platform.
  v1::Manifest moved = released;
  moved.mutable_artifact()->set_arch(v1::ARCH_ANY);
  v1::SignedManifest other_arch = SignManifest(moved, online_);
  *other_arch.mutable_release() = release;
  EXPECT_THAT(VerifyManifest(root, other_arch), HasReason(kDenied, kReasonReleaseMismatch));
}

TEST_F(TrustRolesTest, ReleaseThresholdCountsDistinctReleaseKeys) {
  const v1::TrustRoot root = WithRoles(2, /*release_threshold=*/2);
  const v1::Manifest manifest = MakeManifest();
  v1::SignedManifest signed_manifest = SignManifest(manifest, online_);
  v1::SignedRelease release = SignRelease(ReleaseOf({manifest.artifact()}), {&rel1_, &rel1_});
  EXPECT_EQ(release.signatures_size(), 1) << "a second signature by one key replaces the first";
  *signed_manifest.mutable_release() = release;
  EXPECT_THAT(VerifyManifest(root, signed_manifest),
              HasReason(kDenied, kReasonReleaseSignatureThresholdNotMet));
  AddReleaseSignature(rel2_, signed_manifest.mutable_release());
  EXPECT_THAT(VerifyManifest(root, signed_manifest), IsOk());
}

TEST_F(TrustRolesTest, AReleaseSignatureIsNotAManifestOrRootSignature) {
  const v1::TrustRoot root = WithRoles(2);
  const v1::Manifest manifest = MakeManifest();
  const std::string release_bytes = ReleaseOf({manifest.artifact()}).SerializeAsString();
  v1::SignedRelease wrong_context;
  wrong_context.set_release(release_bytes);
  v1::Signature* sig = wrong_context.add_signatures();
  sig->set_key_id(rel1_.public_key().KeyId());
  sig->set_signature(rel1_.Sign(kManifestSignatureContext, release_bytes));
  EXPECT_THAT(VerifyRelease(root, wrong_context, kVersion),
              HasReason(kDenied, kReasonReleaseSignatureThresholdNotMet));
}

TEST_F(TrustRolesTest, WithoutReleaseKeysNoStatementIsNeeded) {
  v1::TrustRoot root = WithRoles(2);
  root.clear_release_keys();
  EXPECT_THAT(VerifyManifest(root, SignManifest(MakeManifest(), online_)), IsOk());
  EXPECT_THAT(VerifyRelease(root, v1::SignedRelease(), kVersion),
              HasReason(absl::StatusCode::kFailedPrecondition, kReasonReleaseKeysNotSet));
}

TEST_F(TrustRolesTest, MalformedStatementsAreRefusedAfterTheirSignatures) {
  const v1::TrustRoot root = WithRoles(2);
  v1::SignedRelease garbage;
  garbage.set_release(std::string("\xff\xff\xff", 3));
  AddReleaseSignature(rel1_, &garbage);
  EXPECT_THAT(VerifyRelease(root, garbage, kVersion), HasReason(kInvalid, kReasonMalformedRelease));

  v1::Release bad = ReleaseOf({MakeManifest().artifact()});
  bad.mutable_artifacts(0)->set_chunk_chain_sha256("short");
  EXPECT_THAT(VerifyRelease(root, SignRelease(bad, {&rel1_}), kVersion),
              HasReason(kInvalid, kReasonMalformedRelease));
  v1::Release many;
  many.set_version(kVersion);
  for (int i = 0; i < 65; ++i)
    *many.add_artifacts() = ReleasedArtifactFor(MakeManifest().artifact());
  EXPECT_THAT(VerifyRelease(root, SignRelease(many, {&rel1_}), kVersion),
              HasReason(kInvalid, kReasonMalformedRelease));
  // Unsigned garbage is refused for its signatures first: nothing unsigned is parsed.
  v1::SignedRelease unsigned_garbage;
  unsigned_garbage.set_release("x");
  EXPECT_THAT(VerifyRelease(root, unsigned_garbage, kVersion),
              HasReason(kDenied, kReasonReleaseSignatureThresholdNotMet));
}

TEST(ChunkChainSha256Test, IsTheHashOfTheConcatenatedEntries) {
  v1::ManifestArtifact a;
  a.add_chunk_chain(std::string(32, '1'));
  a.add_chunk_chain(std::string(32, '2'));
  EXPECT_EQ(HexEncode(ChunkChainSha256(a.chunk_chain())),
            Sha256::HexOf(std::string(32, '1') + std::string(32, '2')));
}

}  // namespace
}  // namespace modeldist
