#include "common/trust.h"

#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "common/ed25519.h"
#include "common/status.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/test_util.h"

namespace modeldist {
namespace {

using ::modeldist::testing::HasReason;
using ::modeldist::testing::IsOk;
using ::testing::HasSubstr;

const absl::Time kIssued = absl::FromUnixSeconds(1'800'000'000);
const absl::Duration kTtl = absl::Hours(24);

Ed25519PrivateKey NewKey() {
  auto key = Ed25519PrivateKey::Generate();
  EXPECT_THAT(key, IsOk());
  return std::move(key).value();
}

v1::TrustRoot MakeRoot(int64_t version, const std::vector<const Ed25519PrivateKey*>& keys,
                       int threshold) {
  v1::TrustRoot root;
  root.set_version(version);
  root.set_threshold(threshold);
  for (const Ed25519PrivateKey* key : keys) *root.add_keys() = RootKeyFor(key->public_key());
  root.mutable_issued_at()->set_seconds(absl::ToUnixSeconds(kIssued));
  return root;
}

google::protobuf::Timestamp ToProto(absl::Time t) {
  google::protobuf::Timestamp out;
  out.set_seconds(absl::ToUnixSeconds(t));
  return out;
}

// A small but complete manifest, so the byte-flip loops stay fast.
v1::Manifest MakeManifest(int64_t sequence = 7) {
  v1::Manifest m;
  m.set_tier("llama8b");
  m.set_channel("stable");
  m.set_platform(v1::PLATFORM_MACOS);
  m.set_arch(v1::ARCH_ARM64);
  m.set_model("models/llama");
  m.set_version("models/llama/versions/1");
  v1::ManifestArtifact* a = m.mutable_artifact();
  a->set_digest("sha256:" + std::string(64, 'a'));
  a->set_size_bytes(1234);
  a->set_format(v1::FORMAT_COREML_ZIP);
  a->set_platform(v1::PLATFORM_MACOS);
  a->set_arch(v1::ARCH_ARM64);
  *m.mutable_issued_at() = ToProto(kIssued);
  *m.mutable_expires_at() = ToProto(kIssued + kTtl);
  m.set_sequence(sequence);
  return m;
}

v1::SignedManifest SignManifestWith(const std::string& bytes,
                                    const std::vector<const Ed25519PrivateKey*>& signers,
                                    absl::string_view context = kManifestSignatureContext) {
  v1::SignedManifest out;
  out.set_manifest(bytes);
  for (const Ed25519PrivateKey* key : signers) {
    v1::Signature* sig = out.add_signatures();
    sig->set_key_id(key->public_key().KeyId());
    sig->set_signature(key->Sign(context, bytes));
  }
  return out;
}

v1::SignedManifest SignManifestWith(const v1::Manifest& manifest,
                                    const std::vector<const Ed25519PrivateKey*>& signers) {
  return SignManifestWith(manifest.SerializeAsString(), signers);
}

constexpr absl::StatusCode kDenied = absl::StatusCode::kPermissionDenied;
constexpr absl::StatusCode kPrecondition = absl::StatusCode::kFailedPrecondition;
constexpr absl::StatusCode kInvalid = absl::StatusCode::kInvalidArgument;

class TrustTest : public ::testing::Test {
 protected:
  Ed25519PrivateKey a_ = NewKey();
  Ed25519PrivateKey b_ = NewKey();
  Ed25519PrivateKey c_ = NewKey();
  Ed25519PrivateKey d_ = NewKey();
  Ed25519PrivateKey e_ = NewKey();
};

// --- Manifests ---

TEST_F(TrustTest, SignedManifestVerifies) {
  v1::TrustRoot root = MakeRoot(1, {&a_}, 1);
  v1::Manifest manifest = MakeManifest();
  auto verified = VerifyManifest(root, SignManifestWith(manifest, {&a_}));
  ASSERT_THAT(verified, IsOk());
  EXPECT_EQ(verified->SerializeAsString(), manifest.SerializeAsString());
}

TEST_F(TrustTest, EveryFlippedByteOfManifestOrSignatureIsRejected) {
  v1::TrustRoot root = MakeRoot(1, {&a_, &b_, &c_}, 2);
  const v1::SignedManifest good = SignManifestWith(MakeManifest(), {&a_, &b_});
  ASSERT_THAT(VerifyManifest(root, good), IsOk());
  ASSERT_LT(good.manifest().size(), 200u);  // keeps the loops below small

  for (unsigned char mask : {0x01, 0x80, 0xff}) {
    for (size_t i = 0; i < good.manifest().size(); ++i) {
      v1::SignedManifest bad = good;
      (*bad.mutable_manifest())[i] ^= mask;
      EXPECT_THAT(VerifyManifest(root, bad), HasReason(kDenied, kReasonSignatureThresholdNotMet))
          << "manifest byte " << i << " mask " << int{mask};
    }
    for (int s = 0; s < good.signatures_size(); ++s) {
      for (size_t i = 0; i < good.signatures(s).signature().size(); ++i) {
        v1::SignedManifest bad = good;
        (*bad.mutable_signatures(s)->mutable_signature())[i] ^= mask;
        EXPECT_THAT(VerifyManifest(root, bad), HasReason(kDenied, kReasonSignatureThresholdNotMet))
            << "signature " << s << " byte " << i << " mask " << int{mask};
      }
      for (size_t i = 0; i < good.signatures(s).key_id().size(); ++i) {
        v1::SignedManifest bad = good;
        (*bad.mutable_signatures(s)->mutable_key_id())[i] ^= mask;
        EXPECT_THAT(VerifyManifest(root, bad), HasReason(kDenied, kReasonSignatureThresholdNotMet))
            << "key id " << s << " byte " << i << " mask " << int{mask};
      }
    }
  }
}

TEST_F(TrustTest, EveryFlippedByteOfTheWireMessageIsRejected) {
  // What a device receives: one serialized SignedManifest, no unsigned reason. Each flip
  // either breaks parsing or fails verification; none yields an accepted manifest.
  v1::TrustRoot root = MakeRoot(1, {&a_}, 1);
  const std::string wire = SignManifestWith(MakeManifest(), {&a_}).SerializeAsString();
  for (unsigned char mask : {0x01, 0x80, 0xff}) {
    for (size_t i = 0; i < wire.size(); ++i) {
      std::string flipped = wire;
      flipped[i] ^= mask;
      v1::SignedManifest bad;
      if (!bad.ParseFromString(flipped)) continue;
      EXPECT_THAT(VerifyManifest(root, bad), HasReason(kDenied, kReasonSignatureThresholdNotMet))
          << "wire byte " << i << " mask " << int{mask};
    }
  }
}

TEST_F(TrustTest, TruncatedOrMissingSignaturesAreRejected) {
  v1::TrustRoot root = MakeRoot(1, {&a_}, 1);
  v1::SignedManifest good = SignManifestWith(MakeManifest(), {&a_});
  v1::SignedManifest truncated = good;
  truncated.mutable_signatures(0)->mutable_signature()->pop_back();
  EXPECT_THAT(VerifyManifest(root, truncated), HasReason(kDenied, kReasonSignatureThresholdNotMet));
  v1::SignedManifest none = good;
  none.clear_signatures();
  EXPECT_THAT(VerifyManifest(root, none), HasReason(kDenied, kReasonSignatureThresholdNotMet));
  v1::SignedManifest longer = good;
  longer.mutable_manifest()->push_back('\0');
  EXPECT_THAT(VerifyManifest(root, longer), HasReason(kDenied, kReasonSignatureThresholdNotMet));
}

TEST_F(TrustTest, WrongKeyIsRejected) {
  v1::TrustRoot root = MakeRoot(1, {&a_}, 1);
  EXPECT_THAT(VerifyManifest(root, SignManifestWith(MakeManifest(), {&b_})),
              HasReason(kDenied, kReasonSignatureThresholdNotMet));

  // B's signature under A's key id: the root's key for that id does not verify it.
  v1::SignedManifest spoofed = SignManifestWith(MakeManifest(), {&b_});
  spoofed.mutable_signatures(0)->set_key_id(a_.public_key().KeyId());
  EXPECT_THAT(VerifyManifest(root, spoofed), HasReason(kDenied, kReasonSignatureThresholdNotMet));
}

TEST_F(TrustTest, RevokedKeyIsRejectedByTheNewRoot) {
  v1::TrustRoot v1_root = MakeRoot(1, {&a_, &b_}, 1);
  // v2 drops A; signed by v1's keys (A is still in v1, so it may sign the transition).
  v1::SignedTrustRoot signed_v2 = SignRoot(MakeRoot(2, {&b_}, 1), {&a_, &b_});
  auto v2_root = VerifyNextRoot(v1_root, signed_v2);
  ASSERT_THAT(v2_root, IsOk());

  v1::SignedManifest by_a = SignManifestWith(MakeManifest(), {&a_});
  EXPECT_THAT(VerifyManifest(v1_root, by_a), IsOk());
  EXPECT_THAT(VerifyManifest(*v2_root, by_a), HasReason(kDenied, kReasonSignatureThresholdNotMet));
  EXPECT_THAT(VerifyManifest(*v2_root, SignManifestWith(MakeManifest(), {&b_})), IsOk());
}

TEST_F(TrustTest, ThresholdCountsDistinctKeys) {
  v1::TrustRoot root = MakeRoot(1, {&a_, &b_, &c_}, 2);
  const v1::Manifest manifest = MakeManifest();

  auto one = VerifyManifest(root, SignManifestWith(manifest, {&a_}));
  EXPECT_THAT(one, HasReason(kDenied, kReasonSignatureThresholdNotMet));
  EXPECT_EQ(ErrorMetadataValue(one.status(), "valid"), "1");
  EXPECT_EQ(ErrorMetadataValue(one.status(), "required"), "2");

  // The same key twice (even with the identical valid signature) counts once.
  v1::SignedManifest twice = SignManifestWith(manifest, {&a_, &a_});
  auto twice_result = VerifyManifest(root, twice);
  EXPECT_THAT(twice_result, HasReason(kDenied, kReasonSignatureThresholdNotMet));
  EXPECT_EQ(ErrorMetadataValue(twice_result.status(), "valid"), "1");

  // A key outside the root adds nothing.
  EXPECT_THAT(VerifyManifest(root, SignManifestWith(manifest, {&a_, &d_})),
              HasReason(kDenied, kReasonSignatureThresholdNotMet));

  EXPECT_THAT(VerifyManifest(root, SignManifestWith(manifest, {&a_, &c_})), IsOk());
  EXPECT_THAT(VerifyManifest(root, SignManifestWith(manifest, {&d_, &c_, &a_, &b_})), IsOk());
}

TEST_F(TrustTest, OnlyTheFirstSignaturePerKeyIdIsChecked) {
  // Bounds the work per key; a valid second copy after a bad first one does not count.
  v1::TrustRoot root = MakeRoot(1, {&a_}, 1);
  v1::SignedManifest signed_manifest = SignManifestWith(MakeManifest(), {&a_, &a_});
  (*signed_manifest.mutable_signatures(0)->mutable_signature())[0] ^= 1;
  EXPECT_THAT(VerifyManifest(root, signed_manifest),
              HasReason(kDenied, kReasonSignatureThresholdNotMet));
}

TEST_F(TrustTest, ValidlySignedGarbageIsMalformed) {
  v1::TrustRoot root = MakeRoot(1, {&a_}, 1);
  EXPECT_THAT(VerifyManifest(root, SignManifestWith(std::string("\xff\xff\xff", 3), {&a_})),
              HasReason(kInvalid, kReasonMalformedManifest));
}

TEST_F(TrustTest, MalformedTrustedRootAcceptsNothing) {
  // A default TrustRoot (threshold 0) must not make "0 valid signatures" enough.
  v1::SignedManifest unsigned_manifest = SignManifestWith(MakeManifest(), {});
  EXPECT_THAT(VerifyManifest(v1::TrustRoot(), unsigned_manifest),
              HasReason(kInvalid, kReasonMalformedRoot));
  v1::TrustRoot zero = MakeRoot(1, {&a_}, 1);
  zero.set_threshold(0);
  EXPECT_THAT(VerifyManifest(zero, unsigned_manifest), HasReason(kInvalid, kReasonMalformedRoot));
  EXPECT_THAT(VerifyNextRoot(zero, SignRoot(MakeRoot(2, {&b_}, 1), {&b_})),
              HasReason(kInvalid, kReasonMalformedRoot));
}

TEST_F(TrustTest, RootSignatureCannotBeReplayedAsManifestSignature) {
  v1::TrustRoot root = MakeRoot(1, {&a_}, 1);
  const std::string manifest = MakeManifest().SerializeAsString();

  // The same bytes and key, signed in the root context: not a manifest signature.
  EXPECT_THAT(VerifyManifest(root, SignManifestWith(manifest, {&a_}, kRootSignatureContext)),
              HasReason(kDenied, kReasonSignatureThresholdNotMet));

  // A real signed root presented as a manifest.
  v1::SignedTrustRoot signed_root = SignRoot(root, {&a_});
  v1::SignedManifest replayed;
  replayed.set_manifest(signed_root.root());
  *replayed.mutable_signatures() = signed_root.signatures();
  EXPECT_THAT(VerifyManifest(root, replayed), HasReason(kDenied, kReasonSignatureThresholdNotMet));

  // And the other way: a manifest signature presented as a root signature.
  v1::SignedTrustRoot from_manifest;
  from_manifest.set_root(signed_root.root());
  *from_manifest.mutable_signatures() = SignManifestWith(signed_root.root(), {&a_}).signatures();
  EXPECT_THAT(VerifyFirstRoot(from_manifest),
              HasReason(kDenied, kReasonRootSignatureThresholdNotMet));
  EXPECT_THAT(VerifyFirstRoot(signed_root), IsOk());
}

// --- Roots ---

TEST_F(TrustTest, FirstRootMustBeSelfSignedByThreshold) {
  v1::TrustRoot root = MakeRoot(1, {&a_, &b_, &c_}, 2);
  auto verified = VerifyFirstRoot(SignRoot(root, {&a_, &b_}));
  ASSERT_THAT(verified, IsOk());
  EXPECT_EQ(verified->SerializeAsString(), root.SerializeAsString());

  EXPECT_THAT(VerifyFirstRoot(SignRoot(root, {&a_})),
              HasReason(kDenied, kReasonRootSignatureThresholdNotMet));
  EXPECT_THAT(VerifyFirstRoot(SignRoot(root, {&a_, &a_})),
              HasReason(kDenied, kReasonRootSignatureThresholdNotMet));
  EXPECT_THAT(VerifyFirstRoot(SignRoot(root, {&a_, &d_})),
              HasReason(kDenied, kReasonRootSignatureThresholdNotMet));
  // A device may pin a later root too.
  EXPECT_THAT(VerifyFirstRoot(SignRoot(MakeRoot(5, {&a_}, 1), {&a_})), IsOk());
}

TEST_F(TrustTest, EveryFlippedByteOfARootIsRejected) {
  v1::TrustRoot trusted = MakeRoot(1, {&a_}, 1);
  const v1::SignedTrustRoot good = SignRoot(MakeRoot(2, {&a_, &b_}, 1), {&a_, &b_});
  ASSERT_THAT(VerifyNextRoot(trusted, good), IsOk());
  for (size_t i = 0; i < good.root().size(); ++i) {
    v1::SignedTrustRoot bad = good;
    (*bad.mutable_root())[i] ^= 0x01;
    EXPECT_THAT(VerifyNextRoot(trusted, bad),
                HasReason(kDenied, kReasonRootSignatureThresholdNotMet))
        << "root byte " << i;
  }
  for (size_t i = 0; i < good.signatures(0).signature().size(); ++i) {
    v1::SignedTrustRoot bad = good;
    (*bad.mutable_signatures(0)->mutable_signature())[i] ^= 0x01;
    EXPECT_THAT(VerifyNextRoot(trusted, bad),
                HasReason(kDenied, kReasonRootSignatureThresholdNotMet))
        << "signature byte " << i;
  }
}

TEST_F(TrustTest, ChainWalksFromV1ToNewest) {
  std::vector<v1::SignedTrustRoot> chain = {
      SignRoot(MakeRoot(1, {&a_}, 1), {&a_}),
      SignRoot(MakeRoot(2, {&a_, &b_}, 2), {&a_, &b_}),            // add B
      SignRoot(MakeRoot(3, {&b_, &c_, &d_}, 2), {&a_, &b_, &c_}),  // rotate A out, add C, D
      SignRoot(MakeRoot(4, {&e_}, 1), {&b_, &d_, &e_}),            // rotate everything
  };
  auto trusted = VerifyFirstRoot(chain[0]);
  ASSERT_THAT(trusted, IsOk());
  for (size_t i = 1; i < chain.size(); ++i) {
    auto next = VerifyNextRoot(*trusted, chain[i]);
    ASSERT_THAT(next, IsOk()) << "root " << i + 1;
    trusted = std::move(next);
  }
  EXPECT_EQ(trusted->version(), 4);
  EXPECT_THAT(VerifyManifest(*trusted, SignManifestWith(MakeManifest(), {&e_})), IsOk());
}

TEST_F(TrustTest, NextRootNeedsThePreviousRootsThreshold) {
  v1::TrustRoot trusted = MakeRoot(1, {&a_, &b_, &c_}, 2);
  v1::TrustRoot next = MakeRoot(2, {&d_}, 1);

  auto status = VerifyNextRoot(trusted, SignRoot(next, {&a_, &d_}));
  EXPECT_THAT(status, HasReason(kDenied, kReasonRootSignatureThresholdNotMet));
  EXPECT_EQ(ErrorMetadataValue(status.status(), "by"), "trusted_root");
  // Only new keys: an attacker who holds fresh keys cannot mint a root.
  EXPECT_THAT(VerifyNextRoot(trusted, SignRoot(next, {&d_})),
              HasReason(kDenied, kReasonRootSignatureThresholdNotMet));
  // A doubled signature by one old key counts once.
  EXPECT_THAT(VerifyNextRoot(trusted, SignRoot(next, {&a_, &a_, &d_})),
              HasReason(kDenied, kReasonRootSignatureThresholdNotMet));
  EXPECT_THAT(VerifyNextRoot(trusted, SignRoot(next, {&a_, &c_, &d_})), IsOk());
}

TEST_F(TrustTest, NextRootNeedsItsOwnThreshold) {
  v1::TrustRoot trusted = MakeRoot(1, {&a_}, 1);
  v1::TrustRoot next = MakeRoot(2, {&d_, &e_}, 2);

  auto status = VerifyNextRoot(trusted, SignRoot(next, {&a_, &d_}));
  EXPECT_THAT(status, HasReason(kDenied, kReasonRootSignatureThresholdNotMet));
  EXPECT_EQ(ErrorMetadataValue(status.status(), "by"), "new_root");
  EXPECT_THAT(VerifyNextRoot(trusted, SignRoot(next, {&a_})),
              HasReason(kDenied, kReasonRootSignatureThresholdNotMet));
  EXPECT_THAT(VerifyNextRoot(trusted, SignRoot(next, {&a_, &d_, &e_})), IsOk());
}

TEST_F(TrustTest, NextRootMustBeExactlyOneVersionHigher) {
  v1::TrustRoot trusted = MakeRoot(2, {&a_}, 1);
  for (int64_t version : {1, 2, 4, 100}) {
    auto status = VerifyNextRoot(trusted, SignRoot(MakeRoot(version, {&a_}, 1), {&a_}));
    EXPECT_THAT(status, HasReason(kPrecondition, kReasonRootVersionNotNext)) << version;
    EXPECT_EQ(ErrorMetadataValue(status.status(), "expected"), "3");
  }
  EXPECT_THAT(VerifyNextRoot(trusted, SignRoot(MakeRoot(3, {&a_}, 1), {&a_})), IsOk());
}

TEST_F(TrustTest, MalformedRootsAreRejected) {
  struct Case {
    const char* name;
    v1::TrustRoot root;
  };
  std::vector<Case> cases;
  auto base = [&] { return MakeRoot(1, {&a_, &b_}, 1); };
  {
    v1::TrustRoot r = base();
    r.set_version(0);
    cases.push_back({"version 0", r});
  }
  {
    v1::TrustRoot r = base();
    r.set_threshold(0);
    cases.push_back({"threshold 0", r});
  }
  {
    v1::TrustRoot r = base();
    r.set_threshold(3);
    cases.push_back({"threshold above key count", r});
  }
  {
    v1::TrustRoot r = base();
    r.clear_keys();
    cases.push_back({"no keys", r});
  }
  {
    v1::TrustRoot r = base();
    *r.add_keys() = r.keys(0);
    cases.push_back({"duplicate key", r});
  }
  {
    v1::TrustRoot r = base();
    r.mutable_keys(1)->set_key_id(a_.public_key().KeyId());
    cases.push_back({"key id of another key", r});
  }
  {
    v1::TrustRoot r = base();
    r.mutable_keys(0)->set_algorithm("rsa");
    cases.push_back({"algorithm", r});
  }
  {
    v1::TrustRoot r = base();
    r.mutable_keys(0)->mutable_public_key()->pop_back();
    cases.push_back({"short public key", r});
  }
  for (const Case& c : cases) {
    EXPECT_THAT(CheckRootWellFormed(c.root), HasReason(kInvalid, kReasonMalformedRoot)) << c.name;
    // Even signed by all the keys involved.
    EXPECT_THAT(VerifyFirstRoot(SignRoot(c.root, {&a_, &b_})),
                HasReason(kInvalid, kReasonMalformedRoot))
        << c.name;
  }
  v1::SignedTrustRoot garbage;
  garbage.set_root(std::string("\xff\xff\xff", 3));
  EXPECT_THAT(VerifyFirstRoot(garbage), HasReason(kInvalid, kReasonMalformedRoot));
  EXPECT_THAT(CheckRootWellFormed(base()), IsOk());
}

TEST_F(TrustTest, SignRootSerializesOnceAndSignsInOrder) {
  v1::TrustRoot root = MakeRoot(1, {&a_, &b_}, 2);
  v1::SignedTrustRoot signed_root = SignRoot(root, {&b_, &a_});
  EXPECT_EQ(signed_root.root(), root.SerializeAsString());
  ASSERT_EQ(signed_root.signatures_size(), 2);
  EXPECT_EQ(signed_root.signatures(0).key_id(), b_.public_key().KeyId());
  EXPECT_EQ(signed_root.signatures(1).key_id(), a_.public_key().KeyId());
  EXPECT_TRUE(b_.public_key().Verify(kRootSignatureContext, signed_root.root(),
                                     signed_root.signatures(0).signature()));
  EXPECT_TRUE(root.keys(0).public_key_pem().empty());
  EXPECT_EQ(root.keys(0).algorithm(), "ed25519");
}

// --- Freshness and target ---

TEST(ManifestFreshnessTest, ExpiryWithInjectedTime) {
  v1::Manifest m = MakeManifest();
  const absl::Time expires = kIssued + kTtl;
  EXPECT_THAT(CheckManifestFreshness(m, kIssued, absl::ZeroDuration(), 0), IsOk());
  EXPECT_THAT(CheckManifestFreshness(m, expires - absl::Seconds(1), absl::ZeroDuration(), 0),
              IsOk());
  EXPECT_THAT(CheckManifestFreshness(m, expires, absl::ZeroDuration(), 0),
              HasReason(kPrecondition, kReasonManifestExpired));
  EXPECT_THAT(CheckManifestFreshness(m, expires + absl::Hours(1000), absl::ZeroDuration(), 0),
              HasReason(kPrecondition, kReasonManifestExpired));
}

TEST(ManifestFreshnessTest, SkewAllowance) {
  v1::Manifest m = MakeManifest();
  const absl::Time expires = kIssued + kTtl;
  const absl::Duration skew = absl::Minutes(5);
  EXPECT_THAT(CheckManifestFreshness(m, expires + absl::Minutes(4), skew, 0), IsOk());
  EXPECT_THAT(CheckManifestFreshness(m, expires + skew, skew, 0),
              HasReason(kPrecondition, kReasonManifestExpired));
  // A negative skew is no skew; it never shortens nor extends validity.
  EXPECT_THAT(CheckManifestFreshness(m, expires - absl::Seconds(1), -absl::Hours(1), 0), IsOk());
  EXPECT_THAT(CheckManifestFreshness(m, expires, -absl::Hours(1), 0),
              HasReason(kPrecondition, kReasonManifestExpired));
}

TEST(ManifestFreshnessTest, MissingOrFarExpiry) {
  v1::Manifest m = MakeManifest();
  m.clear_expires_at();
  EXPECT_THAT(CheckManifestFreshness(m, kIssued, absl::ZeroDuration(), 0),
              HasReason(kInvalid, kReasonMalformedManifest));
  // Far-future seconds do not overflow into the past.
  m.mutable_expires_at()->set_seconds(INT64_MAX);
  EXPECT_THAT(CheckManifestFreshness(m, kIssued, absl::ZeroDuration(), 0), IsOk());
  m.mutable_expires_at()->set_seconds(INT64_MIN);
  EXPECT_THAT(CheckManifestFreshness(m, kIssued, absl::ZeroDuration(), 0),
              HasReason(kPrecondition, kReasonManifestExpired));
}

TEST(ManifestFreshnessTest, SequenceRollback) {
  v1::Manifest m = MakeManifest(/*sequence=*/7);
  EXPECT_THAT(CheckManifestFreshness(m, kIssued, absl::ZeroDuration(), 6), IsOk());
  EXPECT_THAT(CheckManifestFreshness(m, kIssued, absl::ZeroDuration(), 7), IsOk());  // re-sign
  auto status = CheckManifestFreshness(m, kIssued, absl::ZeroDuration(), 8);
  EXPECT_THAT(status, HasReason(kPrecondition, kReasonSequenceRollback));
  EXPECT_EQ(ErrorMetadataValue(status, "highest_seen"), "8");
  EXPECT_THAT(CheckManifestFreshness(m, kIssued, absl::ZeroDuration(), INT64_MAX),
              HasReason(kPrecondition, kReasonSequenceRollback));
}

TEST(ManifestTargetTest, MatchesTheRequest) {
  v1::Manifest m = MakeManifest();
  EXPECT_THAT(CheckManifestTarget(m, "llama8b", "stable", v1::PLATFORM_MACOS, v1::ARCH_ARM64),
              IsOk());
  // An empty channel means stable, on either side.
  EXPECT_THAT(CheckManifestTarget(m, "llama8b", "", v1::PLATFORM_MACOS, v1::ARCH_ARM64), IsOk());
  v1::Manifest empty_channel = m;
  empty_channel.clear_channel();
  EXPECT_THAT(
      CheckManifestTarget(empty_channel, "llama8b", "stable", v1::PLATFORM_MACOS, v1::ARCH_ARM64),
      IsOk());
  // An ARCH_ANY artifact answers an arm64 request.
  v1::Manifest any = m;
  any.mutable_artifact()->set_arch(v1::ARCH_ANY);
  EXPECT_THAT(CheckManifestTarget(any, "llama8b", "stable", v1::PLATFORM_MACOS, v1::ARCH_ARM64),
              IsOk());
}

TEST(ManifestTargetTest, WrongTargetNamesTheField) {
  v1::Manifest m = MakeManifest();
  struct Case {
    std::string tier, channel;
    v1::Platform platform;
    v1::Arch arch;
    std::string field;
  };
  const Case cases[] = {
      {"llama3b", "stable", v1::PLATFORM_MACOS, v1::ARCH_ARM64, "tier"},
      {"llama8b", "beta", v1::PLATFORM_MACOS, v1::ARCH_ARM64, "channel"},
      {"llama8b", "stable", v1::PLATFORM_IOS, v1::ARCH_ARM64, "platform"},
      {"llama8b", "stable", v1::PLATFORM_MACOS, v1::ARCH_X86_64, "arch"},
  };
  for (const Case& c : cases) {
    auto status = CheckManifestTarget(m, c.tier, c.channel, c.platform, c.arch);
    EXPECT_THAT(status, HasReason(kPrecondition, kReasonWrongTarget)) << c.field;
    EXPECT_EQ(ErrorMetadataValue(status, "field"), c.field);
  }
  // The manifest says arm64 but carries an x86_64 artifact (mix and match).
  v1::Manifest mixed = m;
  mixed.mutable_artifact()->set_arch(v1::ARCH_X86_64);
  auto status = CheckManifestTarget(mixed, "llama8b", "stable", v1::PLATFORM_MACOS, v1::ARCH_ARM64);
  EXPECT_THAT(status, HasReason(kPrecondition, kReasonWrongTarget));
  EXPECT_EQ(ErrorMetadataValue(status, "field"), "artifact.arch");
  mixed = m;
  mixed.mutable_artifact()->set_platform(v1::PLATFORM_LINUX);
  EXPECT_THAT(CheckManifestTarget(mixed, "llama8b", "stable", v1::PLATFORM_MACOS, v1::ARCH_ARM64),
              HasReason(kPrecondition, kReasonWrongTarget));

  EXPECT_THAT(CheckManifestTarget(m, "llama8b", "stable", v1::PLATFORM_UNSPECIFIED, v1::ARCH_ARM64),
              ::modeldist::testing::StatusIs(kInvalid, HasSubstr("platform")));
  EXPECT_THAT(CheckManifestTarget(m, "llama8b", "stable", v1::PLATFORM_MACOS, v1::ARCH_ANY),
              ::modeldist::testing::StatusIs(kInvalid, HasSubstr("arch")));
}

}  // namespace
}  // namespace modeldist
