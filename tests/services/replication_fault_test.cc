// Replication through a fault proxy (tests/testing/fault_proxy.h) between the Replicator's S3
// origin and OpenStack Swift's S3 API on loopback: bytes damaged on their way to the store,
// a 503 on one part, a store that misreports the size it kept. Whatever the network does, a
// replica counts only once the store holds exactly the blob's bytes.
#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/services/replicator_fixture.h"
#include "tests/testing/fault_proxy.h"

namespace modeldist::testing {
namespace {

using ::testing::HasSubstr;

constexpr int64_t kMiB = 1 << 20;

class ReplicationFaultTest : public ReplicatorSwiftTest {
 protected:
  std::string Endpoint() override {
    return proxy_ == nullptr ? "http://127.0.0.1:1"
                             : absl::StrCat("http://127.0.0.1:", proxy_->port());
  }

  void SetUp() override {
    if (!SwiftS3Server::Installed()) GTEST_SKIP() << "Swift is not installed";
    ASSERT_NE(swift_, nullptr) << "Swift did not start";
    proxy_ = std::make_unique<FaultProxy>("127.0.0.1", swift_->port());
    ASSERT_NE(proxy_->port(), 0);
    ReplicatorSwiftTest::SetUp();
  }

  // Runs rounds, a minute of backoff apart, until blob `hex` is confirmed on Swift (at most
  // `rounds`); the row as it is then.
  v1::Replica CopyUntilConfirmed(const std::string& hex, int rounds) {
    for (int i = 0; i < rounds; ++i) {
      RunOnce();
      if (Rows(hex)["swift"].state() == v1::Replica::CONFIRMED) break;
      Advance(absl::Minutes(1));
    }
    return Rows(hex)["swift"];
  }

  std::string Stored(const std::string& hex) {
    return swift_->GetObject("models", "sha256/" + hex);
  }

  std::unique_ptr<FaultProxy> proxy_;
};

// A single PUT signs its payload's SHA-256, so Swift refuses bytes damaged on the way; the
// copy is sent again on the next attempt.
TEST_F(ReplicationFaultTest, AnObjectDamagedOnTheWayIsRefusedByTheStoreAndSentAgain) {
  const std::string bytes = RandomBytes(3 * kMiB + 5, 20);
  const std::string hex = Publish("1", bytes);
  proxy_->set_fault({.kind = Fault::kCorruptRequest, .at = kMiB + 3, .times = 1});
  RunOnce();
  const v1::Replica failed = Rows(hex)["swift"];
  EXPECT_EQ(failed.state(), v1::Replica::FAILING);
  EXPECT_THAT(failed.last_error(), HasSubstr("400"));
  const v1::Replica row = CopyUntilConfirmed(hex, 2);
  EXPECT_EQ(row.state(), v1::Replica::CONFIRMED) << row.last_error();
  EXPECT_TRUE(Stored(hex) == bytes);
}

// A part of a multipart upload damaged on the way: the store's ETag for it (the MD5 of what
// it received) differs from the MD5 of what was sent, so the part is sent again, and the
// object the store assembles is the blob.
TEST_F(ReplicationFaultTest, APartDamagedOnTheWayIsSentAgainBeforeTheUploadCompletes) {
  const std::string bytes = RandomBytes(13 * kMiB + 5, 21);  // 3 parts of 5 MiB
  const std::string hex = Publish("1", bytes);
  // Requests: create, part 1, part 2 (damaged), ...
  proxy_->set_fault({.kind = Fault::kCorruptRequest, .at = 2 * kMiB + 7, .times = 1, .after = 2});
  const v1::Replica row = CopyUntilConfirmed(hex, 3);
  EXPECT_EQ(row.state(), v1::Replica::CONFIRMED) << row.last_error();
  EXPECT_TRUE(Stored(hex) == bytes) << "Swift kept damaged bytes";
}

// A 503 on one part costs that part once more, not the upload.
TEST_F(ReplicationFaultTest, A503OnOnePartIsRetriedAlone) {
  const std::string first = RandomBytes(13 * kMiB + 5, 22);
  const std::string first_hex = Publish("1", first);
  RunOnce();
  ASSERT_EQ(Rows(first_hex)["swift"].state(), v1::Replica::CONFIRMED);
  const int clean = proxy_->requests();

  const std::string second = RandomBytes(13 * kMiB + 5, 23);
  const std::string second_hex = Publish("2", second);
  proxy_->set_fault({.kind = Fault::kStatus5xx, .times = 1, .after = 2});
  RunOnce();
  const v1::Replica row = Rows(second_hex)["swift"];
  EXPECT_EQ(row.state(), v1::Replica::CONFIRMED) << row.last_error();
  EXPECT_EQ(proxy_->requests() - clean, clean + 1) << "one request more than a clean copy";
  EXPECT_TRUE(Stored(second_hex) == second);
}

// The check after the upload: a store whose HEAD reports another size is not a replica.
TEST_F(ReplicationFaultTest, AStoreReportingTheWrongSizeAfterTheUploadIsNotConfirmed) {
  const std::string bytes = RandomBytes(2 * kMiB + 1, 24);
  const std::string hex = Publish("1", bytes);
  // Requests: the PUT, then the HEAD of the check.
  proxy_->set_fault({.kind = Fault::kWrongLength, .times = 1, .after = 1});
  RunOnce();
  const v1::Replica failed = Rows(hex)["swift"];
  EXPECT_EQ(failed.state(), v1::Replica::FAILING);
  EXPECT_THAT(failed.last_error(), HasSubstr("bytes for sha256/" + hex + " after the upload"));
  const v1::Replica row = CopyUntilConfirmed(hex, 2);
  EXPECT_EQ(row.state(), v1::Replica::CONFIRMED) << row.last_error();
}

}  // namespace
}  // namespace modeldist::testing
