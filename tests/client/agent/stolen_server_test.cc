// The attacker holds the server's whole data directory (its online manifest key, catalog and
// blobs) and answers the fleet in its place. The trust root has root and release keys that
// were never on the server (common/trust.h roles). What it can do: replay or withhold what
// was signed within the expiry window. What it cannot: make a device install bytes no release
// key signed, or make a device trust a root the offline root keys did not sign. Each attack
// below is armed: its manifest carries a valid signature of the stolen key over an artifact
// the real server serves, so only the release check stands between it and the device.
#include <grpcpp/grpcpp.h>

#include <filesystem>
#include <string>
#include <vector>

#include "client/agent/agent.h"
#include "client/agent/model_store.h"
#include "common/chunk_chain.h"
#include "common/ed25519.h"
#include "common/release.h"
#include "common/status.h"
#include "common/trust.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "storage/blob_record.h"
#include "tests/client/agent/agent_fixture.h"
#include "tests/client/agent/hostile_manifest_proxy.h"
#include "tests/testing/test_server.h"
#include "tests/testing/test_util.h"

namespace modeldist::testing {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

Ed25519PrivateKey NewKey() {
  auto key = Ed25519PrivateKey::Generate();
  EXPECT_TRUE(key.ok()) << key.status();
  return std::move(key).value();
}

v1::RoleKeys Role(const std::vector<const Ed25519PrivateKey*>& keys, int threshold) {
  v1::RoleKeys role;
  for (const Ed25519PrivateKey* key : keys) *role.add_keys() = RootKeyFor(key->public_key());
  role.set_threshold(threshold);
  return role;
}

// What the release keys sign for `bytes`, computed from the file as `modeldistctl release
// sign` does where the files are: nothing taken from the server.
v1::ReleasedArtifact ReleasedFile(const std::string& bytes) {
  ChunkChainBuilder chain(storage::kChunkDigestBytes);
  chain.Update(bytes);
  return ReleasedArtifactOf(chain, storage::kChunkDigestBytes, v1::PLATFORM_LINUX, v1::ARCH_X86_64,
                            v1::FORMAT_GGUF);
}

class StolenServerTest : public AgentFixture {
 protected:
  void SetUp() override {
    // Before roles: version 1 for the fleet, and a version of another model that nobody
    // released (the attacker's bytes, served by the real server).
    server_.SetTier("llama8b", "", Publish("1", good_bytes_));
    server_.PublishBlob("evil", "1", v1::PLATFORM_LINUX, v1::ARCH_X86_64, v1::FORMAT_GGUF,
                        evil_bytes_);
    server_.SetTier("evil", "", "models/evil/versions/1");
    ASSERT_NO_FATAL_FAILURE(WriteShippedTrustRoot());  // devices pinned root 1 (single-role)

    // The offline ceremony: root 2 keeps the online key and adds root and release keys that
    // stay here, in the test, never on the server.
    v1::SignedTrustRoot current;
    {
      grpc::ClientContext context;
      ASSERT_TRUE(server_.manifests().GetTrustRoot(&context, {}, &current).ok());
    }
    v1::TrustRoot root1;
    ASSERT_TRUE(root1.ParseFromString(current.root()));
    v1::TrustRoot root2 = root1;
    root2.set_version(2);
    *root2.mutable_root_keys() = Role({&root_a_, &root_b_}, 2);
    *root2.mutable_release_keys() = Role({&release_}, 1);
    v1::UploadTrustRootRequest upload;
    *upload.mutable_root() = SignRoot(root2, {&root_a_, &root_b_});
    v1::SignedTrustRoot stored;
    grpc::Status uploaded =
        server_.registry().UploadTrustRoot(server_.Admin().get(), upload, &stored);
    ASSERT_TRUE(uploaded.ok()) << uploaded.error_message();

    // Version 1 is released (by the release key, from the file); the evil one never is.
    v1::Release release;
    release.set_version("models/llama/versions/1");
    *release.add_artifacts() = ReleasedFile(good_bytes_);
    v1::AttachReleaseRequest attach;
    attach.set_name("models/llama/versions/1");
    *attach.mutable_release() = SignRelease(release, {&release_});
    v1::Version version;
    grpc::Status attached =
        server_.registry().AttachRelease(server_.Admin().get(), attach, &version);
    ASSERT_TRUE(attached.ok()) << attached.error_message();
    ASSERT_TRUE(version.released());

    // A device that pinned root 1 walks to root 2 and installs the released version 1.
    auto first = agent::Sync(Options());
    ASSERT_TRUE(first.ok()) << first.status();
    installed_ = first->installed.path;
    honest_ = CurrentAnswer("llama8b");
    ASSERT_TRUE(honest_.has_release());

    // The theft: a copy of the whole data directory. The online key is all it can sign with.
    fs::copy(server_.config().data_dir, stolen_.path(), fs::copy_options::recursive);
    for (const auto& entry : fs::directory_iterator(stolen_.Join("keys"))) {
      if (entry.path().extension() != ".pem") continue;
      auto key = Ed25519PrivateKey::LoadPemFile(entry.path().string());
      ASSERT_TRUE(key.ok()) << key.status();
      stolen_keys_.push_back(std::move(key).value());
    }
    ASSERT_FALSE(stolen_keys_.empty());
    ASSERT_TRUE(VerifyManifest(UnreleasedRoot(), honest_).ok())
        << "the stolen keys are not the keys that sign manifests";
  }

  // What the real server answers a linux/x86_64 device on `tier`.
  v1::SignedManifest CurrentAnswer(const std::string& tier) {
    v1::SignedManifest answer;
    grpc::Status s = server_.GetManifest(tier, v1::PLATFORM_LINUX, v1::ARCH_X86_64, &answer);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return answer;
  }

  // Root 2 as a device without the release check would hold it: the stolen key's manifests
  // verify under it, which shows each attack is armed.
  v1::TrustRoot UnreleasedRoot() {
    v1::SignedTrustRoot newest;
    grpc::ClientContext context;
    EXPECT_TRUE(server_.manifests().GetTrustRoot(&context, {}, &newest).ok());
    v1::TrustRoot root;
    EXPECT_TRUE(root.ParseFromString(newest.root()));
    root.clear_release_keys();
    return root;
  }

  // A manifest for tier llama8b that installs the evil version's artifact, read from the real
  // server, with a sequence far above the honest one: signed with the stolen keys.
  v1::SignedManifest Forged() {
    v1::Manifest honest;
    EXPECT_TRUE(honest.ParseFromString(honest_.manifest()));
    v1::Manifest evil;
    EXPECT_TRUE(evil.ParseFromString(CurrentAnswer("evil").manifest()));
    v1::Manifest forged = honest;
    forged.set_model(evil.model());
    forged.set_version(evil.version());
    *forged.mutable_artifact() = evil.artifact();
    forged.mutable_artifact()->clear_sources();
    forged.mutable_artifact()->add_sources()->set_artifact_service(ServerAddress());
    forged.set_sequence(honest.sequence() + 1000);
    v1::SignedManifest out = SignedByThief(forged);
    EXPECT_TRUE(VerifyManifest(UnreleasedRoot(), out).ok()) << "the attack is not armed";
    return out;
  }

  // `manifest` signed with every stolen key, as the server signs.
  v1::SignedManifest SignedByThief(const v1::Manifest& manifest) const {
    v1::SignedManifest out;
    manifest.SerializeToString(out.mutable_manifest());
    for (const Ed25519PrivateKey& key : stolen_keys_) {
      v1::Signature* sig = out.add_signatures();
      sig->set_key_id(key.public_key().KeyId());
      sig->set_signature(key.Sign(kManifestSignatureContext, out.manifest()));
    }
    return out;
  }

  std::vector<const Ed25519PrivateKey*> StolenSigners() const {
    std::vector<const Ed25519PrivateKey*> out;
    for (const Ed25519PrivateKey& key : stolen_keys_) out.push_back(&key);
    return out;
  }

  // The attacker answers GetManifest with `answer`.
  void Answer(v1::SignedManifest answer) {
    proxy_.set_rewrite([answer](const v1::GetManifestRequest&, v1::SignedManifest* out) {
      *out = answer;
      return grpc::Status::OK;
    });
  }

  // A sync through the attacker: refused with `reason`, version 1 still active, and no byte
  // of the evil artifact on the device.
  void ExpectRefused(const std::string& reason) {
    auto synced = agent::Sync(Options(ProxyAddress()));
    ASSERT_FALSE(synced.ok()) << "installed " << synced->manifest.version();
    EXPECT_EQ(ErrorReason(synced.status()), reason) << synced.status();
    ExpectStillOnVersion1();
  }

  void ExpectStillOnVersion1() {
    auto store = agent::ModelStore::Open(Options().dir);
    ASSERT_TRUE(store.ok()) << store.status();
    ASSERT_TRUE(store->Current().has_value());
    EXPECT_EQ(store->Current()->path, installed_);
    EXPECT_TRUE(fs::is_empty(store->StagingDir())) << "bytes were downloaded";
  }

  std::string ProxyAddress() { return "127.0.0.1:" + std::to_string(proxy_.port()); }

  const std::string good_bytes_ = RandomBytes(5 << 20, 1);  // two chunks
  const std::string evil_bytes_ = RandomBytes(3000, 666);
  Ed25519PrivateKey root_a_ = NewKey();
  Ed25519PrivateKey root_b_ = NewKey();
  Ed25519PrivateKey release_ = NewKey();
  std::string installed_;
  v1::SignedManifest honest_;
  ScratchDir stolen_;
  std::vector<Ed25519PrivateKey> stolen_keys_;
  HostileManifestProxy proxy_{server_.channel()};
};

TEST_F(StolenServerTest, AnUnreleasedArtifactIsRefused) {
  Answer(Forged());
  ExpectRefused(std::string(kReasonReleaseRequired));
}

TEST_F(StolenServerTest, AReleaseOfOtherBytesDoesNotCoverTheArtifact) {
  v1::SignedManifest forged = Forged();
  *forged.mutable_release() = honest_.release();  // version 1's real statement
  Answer(forged);
  // Its version is the evil one, so the statement is for another version.
  ExpectRefused(std::string(kReasonMalformedRelease));

  // Under version 1's name, the evil bytes are not in version 1's statement.
  v1::Manifest as_v1;
  ASSERT_TRUE(as_v1.ParseFromString(forged.manifest()));
  as_v1.set_model("models/llama");
  as_v1.set_version("models/llama/versions/1");
  v1::SignedManifest renamed = SignedByThief(as_v1);
  *renamed.mutable_release() = honest_.release();
  Answer(renamed);
  ExpectRefused(std::string(kReasonReleaseMismatch));
}

TEST_F(StolenServerTest, AStatementTheOnlineKeySignedIsNotARelease) {
  v1::SignedManifest forged = Forged();
  v1::Manifest manifest;
  ASSERT_TRUE(manifest.ParseFromString(forged.manifest()));
  v1::Release release;
  release.set_version(manifest.version());
  *release.add_artifacts() = ReleasedArtifactFor(manifest.artifact());
  *forged.mutable_release() = SignRelease(release, StolenSigners());
  Answer(forged);
  ExpectRefused(std::string(kReasonReleaseSignatureThresholdNotMet));
}

TEST_F(StolenServerTest, ARootTheOnlineKeySignedIsNotTrusted) {
  // Root 3 without release keys and with the attacker's own root keys, signed by the stolen
  // key and by the attacker's new keys: a device must keep root 2.
  Ed25519PrivateKey attacker = NewKey();
  v1::TrustRoot root3 = UnreleasedRoot();
  root3.set_version(3);
  *root3.mutable_root_keys() = Role({&attacker}, 1);
  std::vector<const Ed25519PrivateKey*> signers = StolenSigners();
  signers.push_back(&attacker);
  const v1::SignedTrustRoot forged_root = SignRoot(root3, signers);
  proxy_.set_root_rewrite([forged_root](const v1::GetTrustRootRequest& request,
                                        v1::SignedTrustRoot* out) -> std::optional<grpc::Status> {
    if (request.version() != 3) return std::nullopt;
    *out = forged_root;
    return grpc::Status::OK;
  });
  Answer(Forged());
  ExpectRefused(std::string(kReasonRootSignatureThresholdNotMet));
}

TEST_F(StolenServerTest, ReplayAndWithholdingOnlyDelay) {
  // Replaying what was signed, within its expiry: the device stays where it is.
  Answer(honest_);
  auto replayed = agent::Sync(Options(ProxyAddress()));
  ASSERT_TRUE(replayed.ok()) << replayed.status();
  EXPECT_EQ(replayed->action, agent::SyncResult::Action::kUpToDate);
  ExpectStillOnVersion1();

  // Withholding: the device keeps its model and says why.
  proxy_.set_rewrite([](const v1::GetManifestRequest&, v1::SignedManifest*) {
    return grpc::Status(grpc::StatusCode::UNAVAILABLE, "withheld");
  });
  auto withheld = agent::Sync(Options(ProxyAddress()));
  ASSERT_FALSE(withheld.ok());
  EXPECT_EQ(withheld.status().code(), absl::StatusCode::kUnavailable) << withheld.status();
  ExpectStillOnVersion1();

  // Once the window passes, a replayed answer is refused as expired.
  Answer(honest_);
  agent::SyncOptions late = Options(ProxyAddress());
  late.now = [] { return absl::Now() + absl::Hours(24 * 365); };
  auto expired = agent::Sync(late);
  ASSERT_FALSE(expired.ok());
  EXPECT_EQ(ErrorReason(expired.status()), kReasonManifestExpired) << expired.status();
  ExpectStillOnVersion1();
}

TEST_F(StolenServerTest, TheStolenServerItselfRefusesToShipUnreleasedBytes) {
  // Not the defence (the attacker may run any code), but what an operator sees: the server
  // on the stolen data directory cannot publish without a release, nor change the root.
  v1::CreateVersionRequest create;
  create.set_parent("models/evil");
  create.set_version_id("2");
  v1::Manifest evil;
  ASSERT_TRUE(evil.ParseFromString(CurrentAnswer("evil").manifest()));
  v1::Artifact* artifact = create.add_artifacts();
  artifact->set_platform(v1::PLATFORM_LINUX);
  artifact->set_arch(v1::ARCH_X86_64);
  artifact->set_format(v1::FORMAT_GGUF);
  artifact->set_digest(evil.artifact().digest());
  artifact->set_size_bytes(evil.artifact().size_bytes());
  v1::Version draft;
  grpc::Status created = server_.registry().CreateVersion(server_.Admin().get(), create, &draft);
  ASSERT_TRUE(created.ok()) << created.error_message();
  v1::PublishVersionRequest publish;
  publish.set_name("models/evil/versions/2");
  v1::Version published;
  grpc::Status refused =
      server_.registry().PublishVersion(server_.Admin().get(), publish, &published);
  EXPECT_EQ(refused.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_THAT(refused.error_message(), HasSubstr("release"));

  v1::AddSigningKeyRequest add;
  v1::SignedTrustRoot root;
  grpc::Status add_key = server_.registry().AddSigningKey(server_.Admin().get(), add, &root);
  EXPECT_EQ(add_key.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_THAT(add_key.error_message(), HasSubstr("modeldistctl root"));
}

}  // namespace
}  // namespace modeldist::testing
