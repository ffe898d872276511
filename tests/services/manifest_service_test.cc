// ManifestService end to end: device-aware answers, signatures that verify against the
// published key, sequences that only grow (also across restarts), and NOT_FOUND messages that
// say what exists.
#include <google/protobuf/util/time_util.h>

#include <algorithm>
#include <string>

#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "common/digest.h"
#include "common/ed25519.h"
#include "gtest/gtest.h"
#include "storage/blob_store.h"
#include "tests/testing/test_server.h"

namespace modeldist::testing {
namespace {

using ::testing::HasSubstr;

class ManifestServiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    // One version with a CoreML zip for Apple Silicon and a GGUF for Intel Macs, as in the
    // hand-made flow this replaces.
    v1::CreateModelRequest model;
    model.set_model_id("llama-3.1-8b");
    v1::Model m;
    ASSERT_TRUE(server_.registry().CreateModel(server_.Admin().get(), model, &m).ok());
    coreml_ = MakeArtifact(v1::PLATFORM_MACOS, v1::ARCH_ARM64, v1::FORMAT_COREML_ZIP, zip_);
    gguf_ = MakeArtifact(v1::PLATFORM_MACOS, v1::ARCH_X86_64, v1::FORMAT_GGUF, gguf_bytes_);
    v1::CreateVersionRequest version;
    version.set_parent("models/llama-3.1-8b");
    version.set_version_id("2026.11.0");
    *version.add_artifacts() = coreml_;
    *version.add_artifacts() = gguf_;
    v1::Version v;
    ASSERT_TRUE(server_.registry().CreateVersion(server_.Admin().get(), version, &v).ok());
    ASSERT_TRUE(server_.Upload(coreml_.digest(), zip_).ok());
    ASSERT_TRUE(server_.Upload(gguf_.digest(), gguf_bytes_).ok());
    v1::PublishVersionRequest publish;
    publish.set_name(kVersion);
    ASSERT_TRUE(server_.registry().PublishVersion(server_.Admin().get(), publish, &v).ok());
  }

  grpc::Status Get(v1::Platform platform, v1::Arch arch, v1::SignedManifest* out,
                   const std::string& tier = "llama8b") {
    v1::GetManifestRequest request;
    request.set_tier(tier);
    request.set_platform(platform);
    request.set_arch(arch);
    request.set_device_id("device-1");
    grpc::ClientContext context;  // no token: the fleet API is open
    return server_.manifests().GetManifest(&context, request, out);
  }

  Ed25519PublicKey SigningKey() {
    grpc::ClientContext context;
    v1::GetSigningKeysResponse keys;
    EXPECT_TRUE(server_.manifests().GetSigningKeys(&context, {}, &keys).ok());
    EXPECT_EQ(keys.keys_size(), 1);
    auto key = Ed25519PublicKey::FromRaw(keys.keys(0).public_key());
    EXPECT_TRUE(key.ok());
    EXPECT_EQ(key->KeyId(), keys.keys(0).key_id());
    auto from_pem = Ed25519PublicKey::FromPem(keys.keys(0).public_key_pem());
    EXPECT_TRUE(from_pem.ok());
    EXPECT_EQ(from_pem->raw(), key->raw());
    return *key;
  }

  static constexpr char kVersion[] = "models/llama-3.1-8b/versions/2026.11.0";
  TestServer server_;
  const std::string zip_ = RandomBytes(200000, 11);
  const std::string gguf_bytes_ = RandomBytes(300000, 12);
  v1::Artifact coreml_, gguf_;
};

TEST_F(ManifestServiceTest, UnboundTierIsNotFound) {
  v1::SignedManifest m;
  grpc::Status s = Get(v1::PLATFORM_MACOS, v1::ARCH_ARM64, &m);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_THAT(s.error_message(), HasSubstr("llama8b"));
}

TEST_F(ManifestServiceTest, PicksTheArtifactForTheDeviceAndSignsIt) {
  v1::TierBinding binding = server_.SetTier("llama8b", "", kVersion);
  const Ed25519PublicKey key = SigningKey();

  struct Case {
    v1::Arch arch;
    const v1::Artifact* want;
  } cases[] = {{v1::ARCH_ARM64, &coreml_}, {v1::ARCH_X86_64, &gguf_}};
  for (const Case& c : cases) {
    v1::SignedManifest signed_manifest;
    grpc::Status s = Get(v1::PLATFORM_MACOS, c.arch, &signed_manifest);
    ASSERT_TRUE(s.ok()) << s.error_message();
    ASSERT_EQ(signed_manifest.signatures_size(), 1);
    const v1::Signature& sig = signed_manifest.signatures(0);
    EXPECT_EQ(sig.key_id(), key.KeyId());
    EXPECT_TRUE(key.Verify(kManifestSignatureContext, signed_manifest.manifest(), sig.signature()));

    v1::Manifest m;
    ASSERT_TRUE(m.ParseFromString(signed_manifest.manifest()));
    EXPECT_EQ(m.tier(), "llama8b");
    EXPECT_EQ(m.channel(), "stable");
    EXPECT_EQ(m.platform(), v1::PLATFORM_MACOS);
    EXPECT_EQ(m.arch(), c.arch);
    EXPECT_EQ(m.model(), "models/llama-3.1-8b");
    EXPECT_EQ(m.version(), kVersion);
    EXPECT_EQ(m.artifact().digest(), c.want->digest());
    EXPECT_EQ(m.artifact().size_bytes(), c.want->size_bytes());
    EXPECT_EQ(m.artifact().format(), c.want->format());
    EXPECT_EQ(m.artifact().chunk_size(), storage::kChunkDigestBytes);
    // A chain entry per 4 MiB chunk; these artifacts are smaller, so the one entry is the digest.
    const std::string& bytes = c.want == &coreml_ ? zip_ : gguf_bytes_;
    ASSERT_EQ(m.artifact().chunk_chain_size(), 1);
    EXPECT_EQ(HexEncode(m.artifact().chunk_chain(0)), Sha256::HexOf(bytes));
    EXPECT_THAT(signed_manifest.selection_reason(), HasSubstr("tier binding"));
    ASSERT_EQ(m.artifact().sources_size(), 1);
    EXPECT_TRUE(m.artifact().sources(0).has_artifact_service());
    EXPECT_EQ(m.sequence(), binding.sequence());
    using google::protobuf::util::TimeUtil;
    EXPECT_EQ(TimeUtil::DurationToSeconds(m.expires_at() - m.issued_at()), 24 * 3600);

    // A flipped bit anywhere in the signed bytes breaks the signature.
    std::string tampered = signed_manifest.manifest();
    tampered[tampered.size() / 2] ^= 0x01;
    EXPECT_FALSE(key.Verify(kManifestSignatureContext, tampered, sig.signature()));
  }
}

TEST_F(ManifestServiceTest, MissingPlatformNamesWhatExists) {
  server_.SetTier("llama8b", "", kVersion);
  v1::SignedManifest m;
  grpc::Status s = Get(v1::PLATFORM_LINUX, v1::ARCH_ARM64, &m);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_THAT(s.error_message(), HasSubstr("PLATFORM_LINUX/ARCH_ARM64"));
  EXPECT_THAT(s.error_message(), HasSubstr("PLATFORM_MACOS/ARCH_ARM64 FORMAT_COREML_ZIP"));
  EXPECT_THAT(s.error_message(), HasSubstr("PLATFORM_MACOS/ARCH_X86_64 FORMAT_GGUF"));
}

TEST_F(ManifestServiceTest, ValidatesTheRequest) {
  v1::SignedManifest m;
  grpc::Status s = Get(v1::PLATFORM_UNSPECIFIED, v1::ARCH_ARM64, &m);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("platform"));
  s = Get(v1::PLATFORM_MACOS, v1::ARCH_ANY, &m);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("arch"));
  s = Get(v1::PLATFORM_MACOS, v1::ARCH_ARM64, &m, "../x");
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("tier"));
}

// Each change's sequence is max(previous + 1, the server's clock in microseconds) (catalog.h,
// "Sequences"); with the real clock a test can bound it by the clock read around the call.
TEST_F(ManifestServiceTest, SequenceGrowsWithEveryChangeAndSurvivesRestart) {
  const std::string other = "models/llama-3.1-8b/versions/2026.11.1";
  server_.PublishBlob("llama-3.1-8b", "2026.11.1", v1::PLATFORM_MACOS, v1::ARCH_ARM64,
                      v1::FORMAT_COREML_ZIP, RandomBytes(1000, 13));
  int64_t last = 0;
  for (int i = 0; i < 20; ++i) {
    const int64_t before = absl::ToUnixMicros(absl::Now());
    v1::TierBinding b = server_.SetTier("llama8b", "beta", i % 2 == 0 ? kVersion : other);
    const int64_t after = absl::ToUnixMicros(absl::Now());
    EXPECT_GT(b.sequence(), last);
    EXPECT_GE(b.sequence(), before);
    EXPECT_LE(b.sequence(), std::max(last + 1, after));
    last = b.sequence();
  }
  // Binding the bound version again changes nothing: the same sequence comes back.
  EXPECT_EQ(server_.SetTier("llama8b", "beta", other).sequence(), last);
  server_.Restart();
  v1::SignedManifest signed_manifest;
  ASSERT_TRUE(
      server_.GetManifest("llama8b", v1::PLATFORM_MACOS, v1::ARCH_ARM64, &signed_manifest, "beta")
          .ok());
  v1::Manifest m;
  ASSERT_TRUE(m.ParseFromString(signed_manifest.manifest()));
  EXPECT_EQ(m.sequence(), last);
  EXPECT_GT(server_.SetTier("llama8b", "beta", kVersion).sequence(), last);
}

}  // namespace
}  // namespace modeldist::testing
