// File: replicator_fixture.h
//
// What the Replicator's tests share (replicator_test.cc; replication_fault_test.cc, which puts
// a fault proxy between it and Swift): a real catalog and blob store on a scratch folder, a
// clock the test moves, the origins (MemoryOrigins as fault seams, or Swift's S3 API on
// loopback) and helpers to publish, look at the queue's rows and rot a stored blob.
#ifndef MODELDIST_TESTS_SERVICES_REPLICATOR_FIXTURE_H_
#define MODELDIST_TESTS_SERVICES_REPLICATOR_FIXTURE_H_

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/digest.h"
#include "google/protobuf/text_format.h"
#include "gtest/gtest.h"
#include "services/blob_health.h"
#include "services/replicator.h"
#include "storage/blob_store.h"
#include "storage/catalog.h"
#include "storage/origin/origin_factory.h"
#include "storage/origin/origin_set.h"
#include "storage/origin/s3_origin.h"
#include "tests/storage/origin/memory_origin.h"
#include "tests/testing/swift_s3_server.h"
#include "tests/testing/test_util.h"

namespace modeldist::testing {

// Two origins replicate; "web" (read-only) and "cold" (replicate unset) do not.
inline constexpr char kOrigins[] = R"pb(
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
  origins {
    name: "backup"
    s3 {
      endpoint: "https://s3.eu-west-1.amazonaws.com"
      region: "eu-west-1"
      bucket: "backup"
      access_key_id { env: "UNUSED_KEY_ID" }
      secret_access_key { env: "UNUSED_SECRET" }
    }
    replicate: true
  }
  origins {
    name: "cold"
    s3 {
      endpoint: "https://s3.eu-west-1.amazonaws.com"
      region: "eu-west-1"
      bucket: "cold"
      access_key_id { env: "UNUSED_KEY_ID" }
      secret_access_key { env: "UNUSED_SECRET" }
    }
  }
  origins {
    name: "web"
    http { base_url: "https://models.example.com/v1" }
  }
)pb";

// The MemoryOrigins a factory built, by name.
using Fakes = std::map<std::string, MemoryOrigin*>;

inline origin::OriginFactory FakeFactory(Fakes* fakes) {
  return [fakes](const v1::Origin& entry) -> absl::StatusOr<std::unique_ptr<origin::Origin>> {
    auto fake = std::make_unique<MemoryOrigin>(entry.name());
    (*fakes)[entry.name()] = fake.get();
    return fake;
  };
}

inline v1::OriginsConfig ParseOrigins(const std::string& text) {
  v1::OriginsConfig config;
  EXPECT_TRUE(google::protobuf::TextFormat::ParseFromString(text, &config));
  return config;
}

class ReplicatorTest : public ::testing::Test {
 protected:
  virtual std::string OriginsText() { return kOrigins; }
  virtual origin::OriginFactory Factory() { return FakeFactory(&fakes_); }

  void SetUp() override {
    auto catalog =
        storage::Catalog::Open(dir_.Join("catalog.db"), {.now = [this] { return Now(); }});
    ASSERT_TRUE(catalog.ok()) << catalog.status();
    catalog_ = *std::move(catalog);
    auto blobs = storage::BlobStore::Open(dir_.Join("store"));
    ASSERT_TRUE(blobs.ok()) << blobs.status();
    blobs_ = *std::move(blobs);
    health_ = std::make_unique<services::BlobHealth>(catalog_.get(), blobs_.get());
    auto origins = origin::OriginSet::Build(ParseOrigins(OriginsText()), Factory());
    ASSERT_TRUE(origins.ok()) << origins.status();
    origins_ = *std::move(origins);
    replicator_ = MakeReplicator();
  }

  std::unique_ptr<services::Replicator> MakeReplicator() {
    services::ReplicatorOptions options;
    options.now = [this] { return Now(); };
    options.random = [] { return 0.0; };  // no jitter: the full backoff
    return std::make_unique<services::Replicator>(catalog_.get(), blobs_.get(), health_.get(),
                                                  origins_.get(), options);
  }

  absl::Time Now() {
    absl::MutexLock lock(&clock_mu_);
    return now_;
  }
  void Advance(absl::Duration d) {
    absl::MutexLock lock(&clock_mu_);
    now_ += d;
  }

  // Stores `bytes` and publishes them as version `version` of model "m"; returns the hex.
  std::string Publish(const std::string& version, const std::string& bytes) {
    const std::string hex = Sha256::HexOf(bytes);
    EXPECT_TRUE(blobs_->Put(hex, bytes).ok());
    if (!catalog_->GetModel("m").ok()) {
      EXPECT_TRUE(catalog_->CreateModel("m", "").ok());
    }
    v1::Artifact artifact;
    artifact.set_platform(v1::PLATFORM_LINUX);
    artifact.set_arch(v1::ARCH_ANY);
    artifact.set_format(v1::FORMAT_GGUF);
    artifact.set_digest("sha256:" + hex);
    artifact.set_size_bytes(static_cast<int64_t>(bytes.size()));
    EXPECT_TRUE(catalog_->CreateVersion({"m", version}, {artifact}).ok());
    EXPECT_TRUE(
        catalog_->PublishVersion({"m", version}, [](const std::string&) { return true; }).ok());
    return hex;
  }

  // The rows of blob `hex`, by origin.
  std::map<std::string, v1::Replica> Rows(const std::string& hex) {
    std::map<std::string, v1::Replica> rows;
    absl::StatusOr<std::vector<v1::Replica>> list = catalog_->ListReplicas("sha256:" + hex);
    EXPECT_TRUE(list.ok()) << list.status();
    if (list.ok()) {
      for (const v1::Replica& r : *list) rows[r.origin()] = r;
    }
    return rows;
  }

  // Flips a byte of stored blob `hex` at `offset`, as rot on the disk would.
  void Rot(const std::string& hex, int64_t offset) {
    DamageFile(blobs_->BlobPath(hex), FileDamage::kFlip, offset);
  }

  int RunOnce() {
    absl::StatusOr<int> attempted = replicator_->RunOnce();
    EXPECT_TRUE(attempted.ok()) << attempted.status();
    return attempted.ok() ? *attempted : -1;
  }

  ScratchDir dir_;
  absl::Mutex clock_mu_;
  absl::Time now_ = absl::FromUnixSeconds(1'700'000'000);
  std::unique_ptr<storage::Catalog> catalog_;
  std::unique_ptr<storage::BlobStore> blobs_;
  std::unique_ptr<services::BlobHealth> health_;
  Fakes fakes_;
  std::unique_ptr<origin::OriginSet> origins_;
  std::unique_ptr<services::Replicator> replicator_;
};

// The same against Swift's S3 API with 5 MiB parts, so that a blob goes up in parts whose
// edges fall inside chain chunks (chunks are 4 MiB).
class ReplicatorSwiftTest : public ReplicatorTest {
 protected:
  static void SetUpTestSuite() {
    if (!SwiftS3Server::Installed()) return;
    swift_ = new SwiftS3Server();
    if (!swift_->Start("models")) {
      delete swift_;
      swift_ = nullptr;
    }
  }
  static void TearDownTestSuite() {
    delete swift_;
    swift_ = nullptr;
  }

  // Where the origin sends its requests: Swift itself (a test may put a proxy between).
  virtual std::string Endpoint() {
    return swift_ == nullptr ? "http://127.0.0.1:1" : swift_->endpoint();
  }

  std::string OriginsText() override {
    return absl::StrCat("origins { name: \"swift\" replicate: true s3 { endpoint: \"", Endpoint(),
                        "\" region: \"auto\" bucket: \"models\""
                        " access_key_id { env: \"MODELDIST_TEST_SWIFT_KEY_ID\" }"
                        " secret_access_key { env: \"MODELDIST_TEST_SWIFT_SECRET\" }"
                        " checksum_sha256: true part_size_bytes: 5242880 } }");
  }
  origin::OriginFactory Factory() override { return origin::MakeOrigin; }

  void SetUp() override {
    if (!SwiftS3Server::Installed()) GTEST_SKIP() << "Swift is not installed";
    ASSERT_NE(swift_, nullptr) << "Swift did not start";
    ::setenv("MODELDIST_TEST_SWIFT_KEY_ID", SwiftS3Server::kAccessKey, 1);
    ::setenv("MODELDIST_TEST_SWIFT_SECRET", SwiftS3Server::kSecret, 1);
    ReplicatorTest::SetUp();
  }

  origin::S3Origin& Store() {
    return dynamic_cast<origin::S3Origin&>(*origins_->Find("swift")->origin);
  }

  inline static SwiftS3Server* swift_ = nullptr;
};

}  // namespace modeldist::testing

#endif  // MODELDIST_TESTS_SERVICES_REPLICATOR_FIXTURE_H_
