// The agent and the mirror URLs GetManifest adds outside the signed bytes
// (SignedManifest.mirrors): a server whose origin has a confirmed copy hands devices its URL,
// here an nginx on loopback holding the object, and the agent reads from it first. The
// origin is a MemoryOrigin (the replication itself is replicator_test's, against Swift too)
// whose device URLs point into that nginx.
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/digest.h"
#include "common/file_util.h"
#include "gtest/gtest.h"
#include "tests/client/agent/agent_fixture.h"
#include "tests/storage/origin/memory_origin.h"
#include "tests/testing/nginx_server.h"
#include "tests/testing/test_server.h"

namespace modeldist::testing {
namespace {

constexpr char kOrigins[] = R"pb(
  origins {
    name: "r2"
    s3 {
      endpoint: "https://acct.r2.cloudflarestorage.com"
      region: "auto"
      bucket: "models"
      access_key_id { env: "UNUSED_KEY_ID" }
      secret_access_key { env: "UNUSED_SECRET" }
    }
    key_prefix: "prod/"
    replicate: true
  }
)pb";

// What the server's origin factory built, and where its device URLs point. Static: the
// server is built before the fixture's own members.
struct Mirror {
  std::unique_ptr<ScratchDir> web;
  std::unique_ptr<NginxServer> nginx;
  MemoryOrigin* origin = nullptr;
};
Mirror* mirror = nullptr;

// A server whose origin "r2" is a MemoryOrigin with device URLs into nginx, and whose
// manifests name `artifact_service` as the server's own source.
services::ServerConfig MirrorConfig(const std::string& artifact_service) {
  mirror = new Mirror();
  mirror->web = std::make_unique<ScratchDir>();
  mirror->nginx = std::make_unique<NginxServer>(mirror->web->path(), /*tls=*/false);
  const std::string file = mirror->web->Join("origins.textproto");
  EXPECT_TRUE(WriteFileAtomically(file, kOrigins, 0600).ok());
  services::ServerConfig config;
  config.origins_file = file;
  config.public_address = artifact_service;
  config.origin_factory =
      [](const v1::Origin& entry) -> absl::StatusOr<std::unique_ptr<origin::Origin>> {
    auto fake = std::make_unique<MemoryOrigin>(entry.name());
    fake->device_url_base = mirror->nginx->Url("");
    mirror->origin = fake.get();
    return fake;
  };
  return config;
}

class AgentMirrorTest : public AgentFixture {
 protected:
  explicit AgentMirrorTest(const std::string& artifact_service = "")
      : AgentFixture(MirrorConfig(artifact_service)) {}
  ~AgentMirrorTest() override {
    delete mirror;
    mirror = nullptr;
  }

  void SetUp() override {
    ASSERT_NE(mirror->nginx->port(), 0) << mirror->nginx->ErrorLog();
    server_.SetTier("llama8b", "", Publish("1", bytes_));
    ASSERT_NO_FATAL_FAILURE(WriteShippedTrustRoot());
    ASSERT_NO_FATAL_FAILURE(WaitConfirmed());
  }

  // Waits until the replicator confirmed the copy and MirrorUrls lists it: the row turns
  // CONFIRMED first, and the replicator tells MirrorUrls a moment later.
  void WaitConfirmed() {
    v1::GetVersionRequest request;
    request.set_name("models/llama/versions/1");
    const absl::Time deadline = absl::Now() + absl::Seconds(30);
    for (;;) {
      v1::Version version;
      ASSERT_TRUE(server_.registry().GetVersion(server_.Admin().get(), request, &version).ok());
      v1::SignedManifest manifest;
      if (version.artifacts(0).replicas_size() == 1 &&
          version.artifacts(0).replicas(0).state() == v1::Replica::CONFIRMED &&
          server_.GetManifest("llama8b", v1::PLATFORM_LINUX, v1::ARCH_X86_64, &manifest).ok() &&
          manifest.mirrors_size() > 0) {
        return;
      }
      ASSERT_LT(absl::Now(), deadline) << version.DebugString();
      absl::SleepFor(absl::Milliseconds(20));
    }
  }

  // Puts `bytes` where the mirror URL points.
  void ServeOnMirror(const std::string& bytes) {
    const std::string path = mirror->web->Join("www/prod/sha256/" + Sha256::HexOf(bytes_));
    std::filesystem::create_directories(std::filesystem::path(path).parent_path());
    ASSERT_TRUE(WriteFileAtomically(path, bytes, 0644).ok());
  }

  static std::string ReadAll(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), {});
  }

  // 9 MiB + 5: three 4 MiB chunks.
  const std::string bytes_ = RandomBytes((9 << 20) + 5, 21);
};

TEST_F(AgentMirrorTest, GetManifestAddsTheMirrorOutsideTheSignedBytes) {
  v1::SignedManifest with_mirror;
  ASSERT_TRUE(
      server_.GetManifest("llama8b", v1::PLATFORM_LINUX, v1::ARCH_X86_64, &with_mirror).ok());
  ASSERT_EQ(with_mirror.mirrors_size(), 1);
  EXPECT_EQ(with_mirror.mirrors(0).http_url(),
            mirror->nginx->Url("/prod/sha256/" + Sha256::HexOf(bytes_)));
  // The signed bytes do not name it: the manifest's own source is the server.
  v1::Manifest manifest;
  ASSERT_TRUE(manifest.ParseFromString(with_mirror.manifest()));
  ASSERT_EQ(manifest.artifact().sources_size(), 1);
  EXPECT_TRUE(manifest.artifact().sources(0).has_artifact_service());
  // Made once for every device of this manifest, not signed per request.
  const int made = mirror->origin->device_urls;
  for (int i = 0; i < 5; ++i) {
    v1::SignedManifest again;
    ASSERT_TRUE(server_.GetManifest("llama8b", v1::PLATFORM_LINUX, v1::ARCH_X86_64, &again).ok());
    EXPECT_EQ(again.manifest(), with_mirror.manifest());
    EXPECT_EQ(again.mirrors(0).http_url(), with_mirror.mirrors(0).http_url());
  }
  EXPECT_EQ(mirror->origin->device_urls, made);
}

TEST_F(AgentMirrorTest, AMirrorWithWrongBytesWastesAChunkButNeverInstallsOne) {
  // What a URL changed in transit, or a bad mirror, serves: one bit off in chunk 1.
  std::string tampered = bytes_;
  tampered[(5 << 20) + 77] ^= 1;
  ServeOnMirror(tampered);
  auto synced = agent::Sync(Options());
  ASSERT_TRUE(synced.ok()) << synced.status();
  EXPECT_EQ(ReadAll(synced->installed.path), bytes_);
  // The bad chunk was fetched again (from the server); the other two came from the mirror.
  EXPECT_EQ(synced->download.chunks_refetched, 1);
  EXPECT_EQ(synced->download.retries, 1);
}

// The manifest's own source is a dead address: whatever arrives came from the mirror.
class AgentMirrorOnlyTest : public AgentMirrorTest {
 protected:
  AgentMirrorOnlyTest() : AgentMirrorTest("127.0.0.1:1") {}
};

TEST_F(AgentMirrorOnlyTest, TheAgentDownloadsFromTheMirror) {
  ServeOnMirror(bytes_);
  auto synced = agent::Sync(Options());
  ASSERT_TRUE(synced.ok()) << synced.status();
  EXPECT_EQ(synced->action, agent::SyncResult::Action::kActivated);
  EXPECT_EQ(ReadAll(synced->installed.path), bytes_);
  EXPECT_EQ(synced->download.chunks_fetched, 3);
  EXPECT_EQ(synced->download.retries, 0);
}

}  // namespace
}  // namespace modeldist::testing
