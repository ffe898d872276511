// Issue-3 behaviour end to end through a real server: staged rollouts and pins decide which
// pre-signed answer a device gets, device constraints filter artifacts, every change bumps the
// sequence, and key rotations produce a root chain that devices can follow and verify
// manifests against (common/trust.h, the code devices run).
#include <google/protobuf/util/time_util.h>

#include <map>
#include <set>

#include "common/digest.h"
#include "common/trust.h"
#include "gtest/gtest.h"
#include "tests/testing/test_server.h"

namespace modeldist::testing {
namespace {

using ::testing::HasSubstr;

class TrustRolloutTest : public ::testing::Test {
 protected:
  void SetUp() override {
    digest_a_ = server_.PublishBlob("llama", "a", v1::PLATFORM_MACOS, v1::ARCH_ARM64,
                                    v1::FORMAT_COREML_ZIP, RandomBytes(5000, 1));
    digest_b_ = server_.PublishBlob("llama", "b", v1::PLATFORM_MACOS, v1::ARCH_ARM64,
                                    v1::FORMAT_COREML_ZIP, RandomBytes(6000, 2));
    server_.SetTier("llama8b", "", kA);
  }

  // The manifest a device gets, verified against the newest root.
  absl::StatusOr<v1::Manifest> Fetch(const std::string& device_id,
                                     v1::SignedManifest* raw = nullptr,
                                     const v1::DeviceInfo& device = {}) {
    v1::GetManifestRequest request;
    request.set_tier("llama8b");
    request.set_platform(v1::PLATFORM_MACOS);
    request.set_arch(v1::ARCH_ARM64);
    request.set_device_id(device_id);
    *request.mutable_device() = device;
    v1::SignedManifest signed_manifest;
    grpc::ClientContext context;
    grpc::Status s = server_.manifests().GetManifest(&context, request, &signed_manifest);
    if (!s.ok()) {
      return absl::Status(static_cast<absl::StatusCode>(s.error_code()), s.error_message());
    }
    if (raw != nullptr) *raw = signed_manifest;
    return VerifyManifest(NewestRoot(), signed_manifest);
  }

  v1::TrustRoot NewestRoot() {
    v1::GetTrustRootRequest request;
    v1::SignedTrustRoot signed_root;
    grpc::ClientContext context;
    EXPECT_TRUE(server_.manifests().GetTrustRoot(&context, request, &signed_root).ok());
    v1::TrustRoot root;
    EXPECT_TRUE(root.ParseFromString(signed_root.root()));
    return root;
  }

  v1::Rollout Rollout(const std::string& rpc, int32_t basis_points = 0) {
    v1::Rollout out;
    grpc::Status s;
    if (rpc == "start") {
      v1::StartRolloutRequest r;
      r.set_tier("llama8b");
      r.set_to_version(kB);
      r.set_basis_points(basis_points);
      s = server_.registry().StartRollout(server_.Admin().get(), r, &out);
    } else if (rpc == "advance") {
      v1::AdvanceRolloutRequest r;
      r.set_tier("llama8b");
      r.set_basis_points(basis_points);
      s = server_.registry().AdvanceRollout(server_.Admin().get(), r, &out);
    } else {
      v1::RolloutRequest r;
      r.set_tier("llama8b");
      auto& reg = server_.registry();
      auto ctx = server_.Admin();
      if (rpc == "pause") s = reg.PauseRollout(ctx.get(), r, &out);
      if (rpc == "resume") s = reg.ResumeRollout(ctx.get(), r, &out);
      if (rpc == "complete") s = reg.CompleteRollout(ctx.get(), r, &out);
      if (rpc == "abort") s = reg.AbortRollout(ctx.get(), r, &out);
    }
    EXPECT_TRUE(s.ok()) << rpc << ": " << s.error_message();
    return out;
  }

  // Share of 2000 devices on version b, and the highest sequence seen.
  double ShareOnB(int64_t* sequence = nullptr) {
    int on_b = 0;
    for (int i = 0; i < 2000; ++i) {
      auto m = Fetch("device-" + std::to_string(i));
      EXPECT_TRUE(m.ok()) << m.status();
      if (!m.ok()) return -1;
      on_b += m->version() == kB;
      if (sequence != nullptr) *sequence = m->sequence();
    }
    return on_b / 20.0;
  }

  static constexpr char kA[] = "models/llama/versions/a";
  static constexpr char kB[] = "models/llama/versions/b";
  TestServer server_;
  std::string digest_a_, digest_b_;
};

TEST_F(TrustRolloutTest, StagedRolloutMovesAGrowingCohortAndAbortMovesEveryoneBack) {
  int64_t seq0 = 0;
  EXPECT_EQ(ShareOnB(&seq0), 0.0);

  Rollout("start", 1000);  // 10 %
  int64_t seq1 = 0;
  const double ten = ShareOnB(&seq1);
  EXPECT_NEAR(ten, 10.0, 2.5);
  EXPECT_GT(seq1, seq0);

  // Devices on b stay on b as the share grows.
  std::set<std::string> on_b_at_10;
  for (int i = 0; i < 2000; ++i) {
    if (Fetch("device-" + std::to_string(i))->version() == kB) {
      on_b_at_10.insert("device-" + std::to_string(i));
    }
  }
  Rollout("advance", 5000);
  for (const std::string& id : on_b_at_10) EXPECT_EQ(Fetch(id)->version(), kB) << id;
  EXPECT_NEAR(ShareOnB(), 50.0, 4.0);

  // The answer says why.
  v1::SignedManifest raw;
  ASSERT_TRUE(Fetch(*on_b_at_10.begin(), &raw).ok());
  EXPECT_THAT(raw.selection_reason(), HasSubstr("in cohort"));

  Rollout("pause");
  Rollout("resume");
  v1::Rollout aborted = Rollout("abort");
  EXPECT_EQ(aborted.state(), v1::Rollout::ABORTED);
  int64_t seq2 = 0;
  EXPECT_EQ(ShareOnB(&seq2), 0.0);
  EXPECT_GT(seq2, seq1);
}

TEST_F(TrustRolloutTest, CompleteRolloutBindsTheTier) {
  Rollout("start", 100);
  v1::Rollout done = Rollout("complete");
  EXPECT_EQ(done.state(), v1::Rollout::COMPLETED);
  EXPECT_EQ(ShareOnB(), 100.0);
  v1::ListTiersResponse tiers;
  ASSERT_TRUE(server_.registry().ListTiers(server_.Admin().get(), {}, &tiers).ok());
  EXPECT_EQ(tiers.tiers(0).version(), kB);
}

TEST_F(TrustRolloutTest, RolloutErrors) {
  v1::AdvanceRolloutRequest advance;
  advance.set_tier("llama8b");
  advance.set_basis_points(10);
  v1::Rollout out;
  EXPECT_EQ(server_.registry().AdvanceRollout(server_.Admin().get(), advance, &out).error_code(),
            grpc::StatusCode::NOT_FOUND);
  v1::StartRolloutRequest start;
  start.set_tier("llama8b");
  start.set_to_version(kB);
  start.set_basis_points(10001);
  grpc::Status s = server_.registry().StartRollout(server_.Admin().get(), start, &out);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("basis_points"));
  Rollout("start", 5000);
  advance.set_basis_points(1000);  // lower than now
  s = server_.registry().AdvanceRollout(server_.Admin().get(), advance, &out);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("basis_points"));
}

TEST_F(TrustRolloutTest, YankingTheTargetMovesItsDevicesBack) {
  Rollout("start", 10000);
  EXPECT_EQ(ShareOnB(), 100.0);
  v1::YankVersionRequest yank;
  yank.set_name(kB);
  v1::Version v;
  ASSERT_TRUE(server_.registry().YankVersion(server_.Admin().get(), yank, &v).ok());
  EXPECT_EQ(ShareOnB(), 0.0);
}

TEST_F(TrustRolloutTest, PinsWinOverBindingAndRollout) {
  v1::PinDevicesRequest pin;
  pin.set_tier("llama8b");
  pin.add_device_ids("mac-pinned");
  pin.set_version(kB);
  v1::PinDevicesResponse pinned;
  ASSERT_TRUE(server_.registry().PinDevices(server_.Admin().get(), pin, &pinned).ok());
  EXPECT_EQ(pinned.changed(), 1);
  v1::SignedManifest raw;
  auto m = Fetch("mac-pinned", &raw);
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ(m->version(), kB);
  EXPECT_EQ(m->sequence(), pinned.sequence());
  EXPECT_THAT(raw.selection_reason(), HasSubstr("pinned"));
  EXPECT_EQ(Fetch("mac-other")->version(), kA);

  v1::UnpinDevicesRequest unpin;
  unpin.set_tier("llama8b");
  unpin.add_device_ids("mac-pinned");
  ASSERT_TRUE(server_.registry().UnpinDevices(server_.Admin().get(), unpin, &pinned).ok());
  EXPECT_EQ(Fetch("mac-pinned")->version(), kA);
}

TEST_F(TrustRolloutTest, ConstraintsPickTheBestFitOrSayWhatIsMissing) {
  // Version c: a CoreML zip that needs the Neural Engine and macOS 14, and a GGUF for any Mac.
  const std::string zip = RandomBytes(3000, 3), gguf = RandomBytes(4000, 4);
  v1::Artifact coreml =
      MakeArtifact(v1::PLATFORM_MACOS, v1::ARCH_ARM64, v1::FORMAT_COREML_ZIP, zip);
  coreml.mutable_constraints()->set_min_os_version("14.0");
  coreml.mutable_constraints()->add_required_accelerators(v1::ACCELERATOR_ANE);
  v1::Artifact fallback = MakeArtifact(v1::PLATFORM_MACOS, v1::ARCH_ANY, v1::FORMAT_GGUF, gguf);
  fallback.mutable_constraints()->set_min_ram_bytes(8LL << 30);
  v1::CreateVersionRequest create;
  create.set_parent("models/llama");
  create.set_version_id("c");
  *create.add_artifacts() = coreml;
  *create.add_artifacts() = fallback;
  v1::Version v;
  ASSERT_TRUE(server_.registry().CreateVersion(server_.Admin().get(), create, &v).ok());
  ASSERT_TRUE(server_.Upload(coreml.digest(), zip).ok());
  ASSERT_TRUE(server_.Upload(fallback.digest(), gguf).ok());
  v1::PublishVersionRequest publish;
  publish.set_name("models/llama/versions/c");
  ASSERT_TRUE(server_.registry().PublishVersion(server_.Admin().get(), publish, &v).ok());
  server_.SetTier("llama8b", "", "models/llama/versions/c");

  v1::DeviceInfo m3;
  m3.set_os_version("14.4");
  m3.set_ram_bytes(16LL << 30);
  m3.add_accelerators(v1::ACCELERATOR_ANE);
  v1::SignedManifest raw;
  auto m = Fetch("m3", &raw, m3);
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ(m->artifact().digest(), coreml.digest());
  EXPECT_EQ(m->artifact().constraints().min_os_version(), "14.0");

  v1::DeviceInfo old_mac = m3;
  old_mac.set_os_version("13.6");
  m = Fetch("old", &raw, old_mac);
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ(m->artifact().digest(), fallback.digest());
  EXPECT_THAT(raw.selection_reason(), HasSubstr("needs OS >= 14.0 (device has 13.6)"));

  v1::DeviceInfo tiny;
  tiny.set_os_version("13.0");
  tiny.set_ram_bytes(4LL << 30);
  m = Fetch("tiny", &raw, tiny);
  EXPECT_EQ(m.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(m.status().message()), HasSubstr("needs ACCELERATOR_ANE"));
  EXPECT_THAT(std::string(m.status().message()), HasSubstr("needs RAM >= 8192 MiB"));
}

TEST_F(TrustRolloutTest, KeyRotationChainsAndSequenceNeverDecreases) {
  // A device pins root 1 and follows every later root.
  v1::GetTrustRootRequest first;
  first.set_version(1);
  v1::SignedTrustRoot signed_root1;
  grpc::ClientContext c1;
  ASSERT_TRUE(server_.manifests().GetTrustRoot(&c1, first, &signed_root1).ok());
  auto trusted = VerifyFirstRoot(signed_root1);
  ASSERT_TRUE(trusted.ok()) << trusted.status();

  int64_t last_sequence = Fetch("d")->sequence();
  v1::SignedTrustRoot out;
  v1::AddSigningKeyRequest add;
  add.set_threshold(2);
  ASSERT_TRUE(server_.registry().AddSigningKey(server_.Admin().get(), add, &out).ok());
  v1::RotateSigningKeysRequest rotate;
  rotate.set_count(3);
  rotate.set_threshold(2);
  ASSERT_TRUE(server_.registry().RotateSigningKeys(server_.Admin().get(), rotate, &out).ok());

  for (int64_t version = 2;; ++version) {
    v1::GetTrustRootRequest request;
    request.set_version(version);
    v1::SignedTrustRoot next;
    grpc::ClientContext c;
    grpc::Status s = server_.manifests().GetTrustRoot(&c, request, &next);
    if (s.error_code() == grpc::StatusCode::NOT_FOUND) break;
    ASSERT_TRUE(s.ok()) << s.error_message();
    auto verified = VerifyNextRoot(*trusted, next);
    ASSERT_TRUE(verified.ok()) << "root " << version << ": " << verified.status();
    trusted = verified;
  }
  EXPECT_EQ(trusted->version(), 3);
  EXPECT_EQ(trusted->threshold(), 2);
  EXPECT_EQ(trusted->keys_size(), 3);

  // Manifests now carry a threshold of signatures by the new keys only, and the old root
  // cannot vouch for them.
  v1::SignedManifest raw;
  auto m = Fetch("d", &raw);
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_GE(raw.signatures_size(), 2);
  EXPECT_FALSE(VerifyManifest(*VerifyFirstRoot(signed_root1), raw).ok());
  EXPECT_GE(m->sequence(), last_sequence);

  // 100 changes and a restart: the sequence only grows.
  last_sequence = m->sequence();
  for (int i = 0; i < 100; ++i) {
    server_.SetTier("llama8b", "", i % 2 ? kA : kB);
    int64_t s = Fetch("d")->sequence();
    ASSERT_GT(s, last_sequence);
    last_sequence = s;
  }
  server_.Restart();
  auto after = Fetch("d");
  ASSERT_TRUE(after.ok()) << after.status();
  EXPECT_EQ(after->sequence(), last_sequence);
}

TEST_F(TrustRolloutTest, AuditLogRecordsWhoChangedWhat) {
  auto context = server_.Admin();
  // A name the client claims is ignored: the actor is the authenticated one (the bootstrap
  // token's here; credentials_test.cc has named credentials).
  context->AddMetadata("x-modeldist-actor", "alice@laptop");
  v1::SetTierRequest set;
  set.set_tier("llama8b");
  set.set_version(kB);
  v1::TierBinding binding;
  ASSERT_TRUE(server_.registry().SetTier(context.get(), set, &binding).ok());
  v1::ListAuditLogResponse log;
  ASSERT_TRUE(server_.registry().ListAuditLog(server_.Admin().get(), {}, &log).ok());
  ASSERT_GT(log.entries_size(), 0);
  EXPECT_EQ(log.entries(0).actor(), "admin");
  EXPECT_EQ(log.entries(0).action(), "SetTier");
  EXPECT_THAT(log.entries(0).details(), HasSubstr(kB));
}

}  // namespace
}  // namespace modeldist::testing
