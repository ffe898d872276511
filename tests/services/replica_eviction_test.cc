// --evict-replicated (services/replica_eviction.h) through the server: a blob whose copies
// on every replicating origin are confirmed leaves the local disk and is read through on the
// next Read; one with a copy still failing stays; turning the flag on evicts what was
// replicated before; an origin added later still gets its copy, read back from another.
// MemoryOrigins stand in for the stores (their objects kept across restarts, as a bucket's
// are); real stores are covered by the replication and read-through tests.
#include "services/replica_eviction.h"

#include <sys/stat.h>

#include <functional>
#include <map>
#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/file_util.h"
#include "common/status.h"
#include "gtest/gtest.h"
#include "tests/storage/origin/memory_origin.h"
#include "tests/testing/test_server.h"
#include "tests/testing/test_util.h"

namespace modeldist::testing {
namespace {

constexpr int64_t kMiB = 1 << 20;

constexpr char kOrigin[] =
    "origins { name: \"r2\" s3 { endpoint: \"https://acct.r2.cloudflarestorage.com\" "
    "region: \"auto\" bucket: \"models\" access_key_id { env: \"UNUSED\" } "
    "secret_access_key { env: \"UNUSED\" } } replicate: true }\n";
constexpr char kSecondOrigin[] =
    "origins { name: \"backup\" s3 { endpoint: \"https://s3.eu-west-1.amazonaws.com\" "
    "region: \"eu-west-1\" bucket: \"backup\" access_key_id { env: \"UNUSED\" } "
    "secret_access_key { env: \"UNUSED\" } } replicate: true }\n";

// Origins whose objects outlive a server (a restart builds new MemoryOrigins from them), and
// whose Puts fail while their name is in `broken`.
struct Buckets {
  std::map<std::string, MemoryOrigin*> live;
  std::map<std::string, std::map<std::string, std::string>> kept;
  std::map<std::string, absl::Status> broken;

  origin::OriginFactory Factory() {
    return [this](const v1::Origin& entry) -> absl::StatusOr<std::unique_ptr<origin::Origin>> {
      auto fake = std::make_unique<MemoryOrigin>(entry.name());
      fake->objects = kept[entry.name()];
      fake->put_error = broken[entry.name()];
      live[entry.name()] = fake.get();
      return fake;
    };
  }
  // Before a restart: what the stores hold now.
  void Keep() {
    for (const auto& [name, fake] : live) kept[name] = fake->objects;
  }
};

bool WaitUntil(const std::function<bool()>& done) {
  for (absl::Time until = absl::Now() + absl::Seconds(30); absl::Now() < until;
       absl::SleepFor(absl::Milliseconds(10))) {
    if (done()) return true;
  }
  return done();
}

class ReplicaEvictionTest : public ::testing::Test {
 protected:
  // A server with `origins` (the file's text), evicting when `evict`.
  void StartServer(const std::string& origins, bool evict) {
    origins_file_ = dir_.Join("origins.textproto");
    ASSERT_TRUE(WriteFileAtomically(origins_file_, origins, 0600).ok());
    services::ServerConfig config;
    config.origins_file = origins_file_;
    config.origin_factory = buckets_.Factory();
    config.evict_replicated = evict;
    server_ = std::make_unique<TestServer>(config);
  }
  void Restart(const std::string& origins, bool evict) {
    buckets_.Keep();
    ASSERT_TRUE(WriteFileAtomically(origins_file_, origins, 0600).ok());
    server_->config().evict_replicated = evict;
    server_->Restart();
  }

  std::string Publish(const std::string& bytes) {
    digest_ =
        server_->PublishBlob("m", "1", v1::PLATFORM_LINUX, v1::ARCH_ANY, v1::FORMAT_GGUF, bytes);
    return digest_;
  }
  std::string BlobPath() const {
    const std::string hex = digest_.substr(7);
    return absl::StrCat(server_->data_dir(), "/data/blobs/sha256/", hex.substr(0, 2), "/", hex);
  }
  bool Stored() const {
    struct stat st;
    return ::stat(BlobPath().c_str(), &st) == 0;
  }
  // The replica states of version 1's artifact, by origin.
  std::map<std::string, v1::Replica::State> Replicas() {
    v1::GetVersionRequest request;
    request.set_name("models/m/versions/1");
    v1::Version version;
    EXPECT_TRUE(server_->registry().GetVersion(server_->Admin().get(), request, &version).ok());
    std::map<std::string, v1::Replica::State> out;
    for (const v1::Replica& r : version.artifacts(0).replicas()) out[r.origin()] = r.state();
    return out;
  }
  bool Confirmed(const std::string& origin) {
    auto replicas = Replicas();
    return replicas.contains(origin) && replicas[origin] == v1::Replica::CONFIRMED;
  }

  ScratchDir dir_;
  std::string origins_file_;
  Buckets buckets_;
  std::unique_ptr<TestServer> server_;
  std::string digest_;
};

TEST_F(ReplicaEvictionTest, AConfirmedBlobLeavesTheDiskAndIsReadThroughOnTheNextRead) {
  StartServer(kOrigin, /*evict=*/true);
  const std::string bytes = RandomBytes(9 * kMiB + 7, 1);
  Publish(bytes);
  ASSERT_TRUE(WaitUntil([&] { return Confirmed("r2"); }));
  ASSERT_TRUE(WaitUntil([&] { return !Stored(); })) << "the local copy was not evicted";
  EXPECT_FALSE(Stored());
  EXPECT_EQ(buckets_.live["r2"]->gets.load(), 0);

  std::string got;
  const grpc::Status read = server_->ReadBlob(digest_, &got);
  ASSERT_TRUE(read.ok()) << read.error_message();
  EXPECT_TRUE(got == bytes) << got.size();
  EXPECT_EQ(buckets_.live["r2"]->gets.load(), 1);
  // Devices still get a manifest: it is signed from the recorded chain.
  server_->SetTier("t", "stable", "models/m/versions/1");
  EXPECT_TRUE(server_->GetManifest("t", v1::PLATFORM_LINUX, v1::ARCH_X86_64).ok());
}

TEST_F(ReplicaEvictionTest, ABlobWithACopyStillFailingStaysOnTheDisk) {
  buckets_.broken["backup"] = MakeError(absl::StatusCode::kUnavailable, "TEST", "backup is down");
  StartServer(absl::StrCat(kOrigin, kSecondOrigin), /*evict=*/true);
  Publish(RandomBytes(3 * kMiB, 2));
  ASSERT_TRUE(WaitUntil([&] {
    auto replicas = Replicas();
    return replicas["r2"] == v1::Replica::CONFIRMED && replicas["backup"] == v1::Replica::FAILING;
  }));
  EXPECT_TRUE(Stored());

  // Once backup takes its copy too, the local one goes.
  buckets_.broken.clear();
  Restart(absl::StrCat(kOrigin, kSecondOrigin), /*evict=*/true);
  ASSERT_TRUE(WaitUntil([&] { return Confirmed("backup"); }));
  EXPECT_TRUE(WaitUntil([&] { return !Stored(); }));
}

TEST_F(ReplicaEvictionTest, TurningTheFlagOnEvictsWhatWasReplicatedBefore) {
  StartServer(kOrigin, /*evict=*/false);
  const std::string bytes = RandomBytes(2 * kMiB + 1, 3);
  Publish(bytes);
  ASSERT_TRUE(WaitUntil([&] { return Confirmed("r2"); }));
  EXPECT_TRUE(Stored());

  Restart(kOrigin, /*evict=*/true);
  EXPECT_FALSE(Stored());  // by the start's sweep, before the server serves
  std::string got;
  ASSERT_TRUE(server_->ReadBlob(digest_, &got).ok());
  EXPECT_TRUE(got == bytes);
}

TEST_F(ReplicaEvictionTest, AnOriginAddedAfterTheEvictionGetsItsCopyReadBackFromAnother) {
  StartServer(kOrigin, /*evict=*/true);
  const std::string bytes = RandomBytes(5 * kMiB + 3, 4);
  Publish(bytes);
  ASSERT_TRUE(WaitUntil([&] { return Confirmed("r2"); }));
  ASSERT_TRUE(WaitUntil([&] { return !Stored(); }));

  Restart(absl::StrCat(kOrigin, kSecondOrigin), /*evict=*/true);
  ASSERT_TRUE(WaitUntil([&] { return Confirmed("backup"); })) << Replicas()["backup"];
  ASSERT_EQ(buckets_.live["backup"]->objects.size(), 1u);
  EXPECT_TRUE(buckets_.live["backup"]->objects.begin()->second == bytes);
  EXPECT_EQ(buckets_.live["r2"]->gets.load(), 1);
  // Both copies confirmed again: the blob read back for the copy goes too.
  EXPECT_TRUE(WaitUntil([&] { return !Stored(); }));
}

TEST(ReplicaEvictionStartTest, TheFlagWithoutAReplicatingOriginIsRefusedNamingIt) {
  ScratchDir dir;
  services::ServerConfig config;
  config.data_dir = dir.Join("data");
  config.admin_token = kTestToken;
  config.listen = "127.0.0.1:0";
  config.evict_replicated = true;
  auto server = services::ModeldistServer::Start(config);
  ASSERT_FALSE(server.ok());
  EXPECT_EQ(server.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(server.status().message().find("--evict-replicated"), std::string::npos)
      << server.status();

  const std::string file = dir.Join("origins.textproto");
  // An origin, but none that replicates.
  ASSERT_TRUE(
      WriteFileAtomically(
          file, "origins { name: \"cdn\" http { base_url: \"https://cdn.example.com\" } }\n", 0600)
          .ok());
  config.origins_file = file;
  server = services::ModeldistServer::Start(config);
  ASSERT_FALSE(server.ok());
  EXPECT_EQ(server.status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace modeldist::testing
