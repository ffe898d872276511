// The scrub (services/scrubber.h): RegistryService.ScrubBlobs against a real server finds each
// kind of damage on disk (a flipped byte, a lost or an extra byte, a deleted file), and what it
// finds is contained exactly as when a device's read finds it (quarantined, recorded,
// manifests withheld); a clean store is left alone. The pace limit, cancelling and "one pass
// at a time" are tested on a Scrubber built from its parts, where they can be observed
// without timing races; the background scrub on a server with a short interval.
#include "services/scrubber.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <fstream>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "common/digest.h"
#include "common/file_util.h"
#include "common/status.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "services/blob_health.h"
#include "common/grpc_status.h"
#include "storage/blob_record.h"
#include "storage/blob_store.h"
#include "storage/catalog.h"
#include "tests/testing/test_server.h"

namespace modeldist::testing {
namespace {

using ::testing::Contains;
using ::testing::HasSubstr;
using ::testing::Not;

constexpr int64_t kChunk = storage::kChunkDigestBytes;
constexpr int64_t kMiB = 1 << 20;

using Damage = ::modeldist::testing::FileDamage;

// TestServer's data dir is <scratch>/data.
std::string DataDir(const TestServer& server) { return server.data_dir() + "/data"; }

std::string BlobPath(const TestServer& server, const std::string& hex) {
  return absl::StrCat(DataDir(server), "/blobs/sha256/", hex.substr(0, 2), "/", hex);
}

void Break(const std::string& path, Damage damage) { DamageFile(path, damage, kChunk + 5); }

struct Scrub {
  absl::Status status;
  std::vector<v1::ScrubBlobsResponse> responses;

  // The outcome of each digest.
  std::map<std::string, v1::ScrubBlobsResponse::Outcome> Outcomes() const {
    std::map<std::string, v1::ScrubBlobsResponse::Outcome> out;
    for (const auto& r : responses) out[r.digest()] = r.outcome();
    return out;
  }
};

Scrub RunScrub(TestServer& server, int64_t bytes_per_second = 0,
               const std::string& token = kTestToken) {
  v1::ScrubBlobsRequest request;
  request.set_bytes_per_second(bytes_per_second);
  auto context = server.Admin(token);
  auto reader = server.registry().ScrubBlobs(context.get(), request);
  Scrub scrub;
  v1::ScrubBlobsResponse response;
  while (reader->Read(&response)) scrub.responses.push_back(response);
  scrub.status = FromGrpcStatus(reader->Finish());
  return scrub;
}

class ScrubTest : public ::testing::Test {
 protected:
  // Versions 1..5 of model m, one blob each (two chain chunks), version i bound to tier t<i>.
  void SetUp() override {
    for (int i = 1; i <= 5; ++i) {
      bytes_[i] = RandomBytes(kChunk + 1234 * i, 100 + i);
      digest_[i] = server_.PublishBlob("m", absl::StrCat(i), v1::PLATFORM_LINUX, v1::ARCH_ANY,
                                       v1::FORMAT_GGUF, bytes_[i]);
      hex_[i] = digest_[i].substr(kSha256Prefix.size());
      server_.SetTier(absl::StrCat("t", i), "stable", absl::StrCat("models/m/versions/", i));
    }
  }

  std::string Path(int i) const { return BlobPath(server_, hex_[i]); }

  absl::Status GetManifest(int i) {
    return FromGrpcStatus(
        server_.GetManifest(absl::StrCat("t", i), v1::PLATFORM_LINUX, v1::ARCH_X86_64));
  }

  std::vector<v1::AuditEntry> Audit() {
    v1::ListAuditLogRequest request;
    request.set_page_size(1000);
    v1::ListAuditLogResponse response;
    EXPECT_TRUE(server_.registry().ListAuditLog(server_.Admin().get(), request, &response).ok());
    return {response.entries().begin(), response.entries().end()};
  }

  int CountAudit(const std::string& action) {
    int n = 0;
    for (const auto& e : Audit()) n += e.action() == action;
    return n;
  }

  bool Quarantined(int i) const {
    struct stat st;
    return ::stat(absl::StrCat(DataDir(server_), "/quarantine/", hex_[i]).c_str(), &st) == 0;
  }

  bool Stored(int i) const {
    struct stat st;
    return ::stat(Path(i).c_str(), &st) == 0;
  }

  void ExpectWithheld(int i) {
    absl::Status s = GetManifest(i);
    EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable) << "version " << i << ": " << s;
    EXPECT_EQ(ErrorReason(s), "ARTIFACT_DAMAGED") << "version " << i;
    EXPECT_TRUE(Quarantined(i)) << "version " << i;
    EXPECT_FALSE(Stored(i)) << "version " << i << " is still in blobs/";
  }

  TestServer server_;
  std::string bytes_[6];
  std::string digest_[6];
  std::string hex_[6];
};

TEST_F(ScrubTest, FindsEveryKindOfDamageAndContainsIt) {
  Break(Path(1), Damage::kFlip);
  Break(Path(2), Damage::kTruncate);
  Break(Path(3), Damage::kExtend);
  Break(Path(4), Damage::kDelete);
  for (int i = 1; i <= 4; ++i) ASSERT_TRUE(GetManifest(i).ok()) << "nothing read the bytes yet";

  Scrub scrub = RunScrub(server_);
  ASSERT_TRUE(scrub.status.ok()) << scrub.status;
  auto outcomes = scrub.Outcomes();
  EXPECT_EQ(outcomes[digest_[1]], v1::ScrubBlobsResponse::DAMAGED);
  EXPECT_EQ(outcomes[digest_[2]], v1::ScrubBlobsResponse::DAMAGED);
  EXPECT_EQ(outcomes[digest_[3]], v1::ScrubBlobsResponse::DAMAGED);
  EXPECT_EQ(outcomes[digest_[4]], v1::ScrubBlobsResponse::MISSING);
  EXPECT_EQ(outcomes[digest_[5]], v1::ScrubBlobsResponse::OK);
  ASSERT_EQ(scrub.responses.size(), 5u);
  for (const auto& r : scrub.responses) {
    if (r.digest() == digest_[1]) {
      EXPECT_THAT(r.details(), HasSubstr("chunk 1 of 2"));
    }
    if (r.outcome() != v1::ScrubBlobsResponse::OK) {
      EXPECT_FALSE(r.details().empty()) << r.digest();
    }
    EXPECT_EQ(r.blobs_total(), 5);
  }
  EXPECT_EQ(scrub.responses.back().blobs_done(), 5);

  for (int i = 1; i <= 4; ++i) ExpectWithheld(i);
  EXPECT_TRUE(GetManifest(5).ok()) << "the intact version is still served";
  EXPECT_TRUE(Stored(5));
  EXPECT_EQ(CountAudit("BlobDamaged"), 4);
}

TEST_F(ScrubTest, CleanStoreIsAllOkAndChangesNothing) {
  const size_t audit_before = Audit().size();
  Scrub scrub = RunScrub(server_);
  ASSERT_TRUE(scrub.status.ok()) << scrub.status;
  ASSERT_EQ(scrub.responses.size(), 5u);
  int64_t total = 0;
  for (int i = 1; i <= 5; ++i) total += static_cast<int64_t>(bytes_[i].size());
  for (size_t k = 0; k < scrub.responses.size(); ++k) {
    const auto& r = scrub.responses[k];
    EXPECT_EQ(r.outcome(), v1::ScrubBlobsResponse::OK) << r.digest() << ": " << r.details();
    EXPECT_EQ(r.blobs_done(), static_cast<int64_t>(k + 1));
    EXPECT_EQ(r.bytes_total(), total);
  }
  EXPECT_EQ(scrub.responses.back().bytes_done(), total) << "every byte was read";
  EXPECT_EQ(Audit().size(), audit_before) << "a clean scrub writes no audit entry";
  for (int i = 1; i <= 5; ++i) {
    EXPECT_FALSE(Quarantined(i));
    EXPECT_TRUE(Stored(i));
    EXPECT_TRUE(GetManifest(i).ok());
  }
}

TEST_F(ScrubTest, DamageFoundEarlierIsReportedAgainButRecordedOnce) {
  Break(Path(1), Damage::kFlip);
  ASSERT_TRUE(RunScrub(server_).status.ok());
  ASSERT_EQ(CountAudit("BlobDamaged"), 1);
  // The blob is in quarantine now: the next pass still reports it (its manifests are still
  // withheld), as missing from the store, and records nothing new.
  Scrub again = RunScrub(server_);
  ASSERT_TRUE(again.status.ok()) << again.status;
  EXPECT_EQ(again.Outcomes()[digest_[1]], v1::ScrubBlobsResponse::MISSING);
  EXPECT_EQ(CountAudit("BlobDamaged"), 1);
  ExpectWithheld(1);
}

TEST_F(ScrubTest, AFilePutBackByHandIsRestored) {
  Break(Path(1), Damage::kFlip);
  ASSERT_TRUE(RunScrub(server_).status.ok());
  ExpectWithheld(1);
  // An operator copies the good bytes back (without the sidecar, which went to quarantine).
  ASSERT_TRUE(WriteFileAtomically(Path(1), bytes_[1], 0444).ok());

  Scrub scrub = RunScrub(server_);
  ASSERT_TRUE(scrub.status.ok()) << scrub.status;
  EXPECT_EQ(scrub.Outcomes()[digest_[1]], v1::ScrubBlobsResponse::RESTORED);
  EXPECT_TRUE(GetManifest(1).ok()) << "its manifests are back";
  EXPECT_EQ(Audit().front().action(), "BlobRestored");
  // Restored once: the next pass finds an ordinary intact blob.
  EXPECT_EQ(RunScrub(server_).Outcomes()[digest_[1]], v1::ScrubBlobsResponse::OK);
}

TEST_F(ScrubTest, NeedsTheAdminToken) {
  Break(Path(1), Damage::kFlip);
  Scrub scrub = RunScrub(server_, 0, "not-the-admin-token-0123456789");
  EXPECT_EQ(scrub.status.code(), absl::StatusCode::kUnauthenticated) << scrub.status;
  EXPECT_TRUE(scrub.responses.empty());
  EXPECT_FALSE(Quarantined(1)) << "no scrub ran";
  EXPECT_TRUE(GetManifest(1).ok());
}

TEST_F(ScrubTest, NegativeRateIsInvalidArgumentNamingTheField) {
  Scrub scrub = RunScrub(server_, -1);
  EXPECT_EQ(scrub.status.code(), absl::StatusCode::kInvalidArgument) << scrub.status;
  EXPECT_THAT(scrub.status.message(), HasSubstr("bytes_per_second"));
  EXPECT_EQ(ErrorMetadataValue(scrub.status, "field"), "bytes_per_second");
  EXPECT_TRUE(scrub.responses.empty());
}

TEST_F(ScrubTest, AClientCancelStopsThePass) {
  // At 1 MiB/s the 20 MiB of the store take 20 s; a pass that ignored the cancel would keep
  // the scrub busy (SCRUB_RUNNING) for 16 s after the first blob's response.
  v1::ScrubBlobsRequest request;
  request.set_bytes_per_second(kMiB);
  auto context = server_.Admin();
  auto reader = server_.registry().ScrubBlobs(context.get(), request);
  v1::ScrubBlobsResponse response;
  ASSERT_TRUE(reader->Read(&response));
  EXPECT_EQ(response.blobs_done(), 1);
  absl::Status second = RunScrub(server_).status;
  EXPECT_EQ(second.code(), absl::StatusCode::kFailedPrecondition) << second;
  EXPECT_EQ(ErrorReason(second), "SCRUB_RUNNING");

  context->TryCancel();
  while (reader->Read(&response)) {
  }
  EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::CANCELLED);
  // The pass stops within one read: a new scrub is let in well before the old one would end.
  Scrub after;
  const absl::Time give_up = absl::Now() + absl::Seconds(12);
  for (;;) {
    after = RunScrub(server_);
    if (ErrorReason(after.status) != "SCRUB_RUNNING" || absl::Now() > give_up) break;
    absl::SleepFor(absl::Milliseconds(20));
  }
  EXPECT_TRUE(after.status.ok()) << after.status;
  EXPECT_EQ(after.responses.size(), 5u);
}

TEST(ScrubPaceTest, RateLimitsTheReads) {
  TestServer server;
  const std::string bytes = RandomBytes(8 * kMiB, 7);
  server.PublishBlob("m", "1", v1::PLATFORM_LINUX, v1::ARCH_ANY, v1::FORMAT_GGUF, bytes);
  const absl::Time start = absl::Now();
  Scrub scrub = RunScrub(server, 16 * kMiB);
  const absl::Duration took = absl::Now() - start;
  ASSERT_TRUE(scrub.status.ok()) << scrub.status;
  ASSERT_EQ(scrub.responses.size(), 1u);
  EXPECT_EQ(scrub.responses[0].bytes_done(), 8 * kMiB);
  // 8 MiB at 16 MiB/s: half a second at least (less a little for clock granularity).
  EXPECT_GE(took, absl::Milliseconds(450));
}

// A Scrubber on its own parts (no server), for what the rpc cannot show without races.
class ScrubberPartsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto catalog = storage::Catalog::Open(dir_.Join("catalog.db"));
    ASSERT_TRUE(catalog.ok()) << catalog.status();
    catalog_ = *std::move(catalog);
    auto blobs = storage::BlobStore::Open(dir_.Join("store"));
    ASSERT_TRUE(blobs.ok()) << blobs.status();
    blobs_ = *std::move(blobs);
    health_ = std::make_unique<services::BlobHealth>(catalog_.get(), blobs_.get());
    scrubber_ = std::make_unique<services::Scrubber>(catalog_.get(), blobs_.get(), health_.get());
    for (int i = 0; i < 3; ++i) {
      const std::string bytes = RandomBytes(8 * kMiB, 50 + i);
      ASSERT_TRUE(blobs_->Put(Sha256::HexOf(bytes), bytes).ok());
    }
  }

  ScratchDir dir_;
  std::unique_ptr<storage::Catalog> catalog_;
  std::unique_ptr<storage::BlobStore> blobs_;
  std::unique_ptr<services::BlobHealth> health_;
  std::unique_ptr<services::Scrubber> scrubber_;
};

TEST_F(ScrubberPartsTest, CancelStopsWithinOneRead) {
  int asked = 0;
  int blobs_told = 0;
  services::ScrubOptions options;
  options.cancelled = [&] { return ++asked >= 3; };
  options.on_blob = [&](const services::ScrubProgress&) { ++blobs_told; };
  absl::StatusOr<services::ScrubReport> report = scrubber_->Run(options);
  EXPECT_EQ(report.status().code(), absl::StatusCode::kCancelled) << report.status();
  EXPECT_EQ(ErrorReason(report.status()), "SCRUB_CANCELLED");
  EXPECT_EQ(asked, 3) << "the pass went on after it was told to stop";
  EXPECT_EQ(blobs_told, 0) << "stopped inside the first 8 MiB blob";
}

TEST_F(ScrubberPartsTest, CancelBetweenBlobs) {
  int blobs_told = 0;
  services::ScrubOptions options;
  options.cancelled = [&] { return blobs_told >= 1; };
  options.on_blob = [&](const services::ScrubProgress& p) {
    ++blobs_told;
    EXPECT_EQ(p.blobs_total, 3);
  };
  EXPECT_EQ(scrubber_->Run(options).status().code(), absl::StatusCode::kCancelled);
  EXPECT_EQ(blobs_told, 1);
}

TEST_F(ScrubberPartsTest, OnePassAtATime) {
  std::atomic<bool> stop{false};
  absl::Notification reading;
  absl::Status first;
  std::thread runner([&] {
    services::ScrubOptions options;
    options.bytes_per_second = kMiB;  // 24 s for the store: it is still running below
    options.cancelled = [&] {
      if (!reading.HasBeenNotified()) reading.Notify();
      return stop.load();
    };
    first = scrubber_->Run(options).status();
  });
  reading.WaitForNotification();
  absl::StatusOr<services::ScrubReport> second = scrubber_->Run({});
  EXPECT_EQ(second.status().code(), absl::StatusCode::kFailedPrecondition) << second.status();
  EXPECT_EQ(ErrorReason(second.status()), "SCRUB_RUNNING");
  EXPECT_THAT(second.status().message(), HasSubstr("a scrub is running"));
  stop = true;
  runner.join();
  EXPECT_EQ(first.code(), absl::StatusCode::kCancelled) << first;
  absl::StatusOr<services::ScrubReport> third = scrubber_->Run({});
  ASSERT_TRUE(third.ok()) << third.status();
  EXPECT_EQ(third->blobs_checked, 3);
  EXPECT_EQ(third->bytes_checked, 3 * 8 * kMiB);
  EXPECT_TRUE(third->clean());
}

TEST(BackgroundScrubTest, FindsDamageWithoutAnyRequest) {
  services::ServerConfig config;
  config.scrub_interval = absl::Milliseconds(200);
  config.scrub_rate = 0;
  TestServer server(config);
  const std::string bytes = RandomBytes(kChunk + 99, 3);
  const std::string digest =
      server.PublishBlob("m", "1", v1::PLATFORM_LINUX, v1::ARCH_ANY, v1::FORMAT_GGUF, bytes);
  const std::string hex = digest.substr(kSha256Prefix.size());
  Break(BlobPath(server, hex), Damage::kFlip);
  struct stat st;
  const std::string quarantine = absl::StrCat(DataDir(server), "/quarantine/", hex);
  const absl::Time give_up = absl::Now() + absl::Seconds(60);
  while (::stat(quarantine.c_str(), &st) != 0 && absl::Now() < give_up) {
    absl::SleepFor(absl::Milliseconds(50));
  }
  EXPECT_EQ(::stat(quarantine.c_str(), &st), 0) << "no scheduled scrub found the flipped byte";
}

TEST(BackgroundScrubTest, ShutdownDoesNotWaitForAPass) {
  services::ServerConfig config;
  config.scrub_interval = absl::Milliseconds(100);
  config.scrub_rate = 4096;  // 8 MiB would take over half an hour
  auto server = std::make_unique<TestServer>(config);
  server->PublishBlob("m", "1", v1::PLATFORM_LINUX, v1::ARCH_ANY, v1::FORMAT_GGUF,
                      RandomBytes(8 * kMiB, 4));
  // Wait until a scheduled pass is reading (an admin's scrub is refused meanwhile).
  absl::Status refused;
  const absl::Time give_up = absl::Now() + absl::Seconds(60);
  do {
    absl::SleepFor(absl::Milliseconds(50));
    refused = RunScrub(*server, 0).status;
  } while (ErrorReason(refused) != "SCRUB_RUNNING" && absl::Now() < give_up);
  ASSERT_EQ(ErrorReason(refused), "SCRUB_RUNNING") << refused;
  const absl::Time start = absl::Now();
  server.reset();
  // Stopping takes one poll of the pacing sleep; the pass itself would take 2048 s.
  EXPECT_LT(absl::Now() - start, absl::Seconds(60));
}

}  // namespace
}  // namespace modeldist::testing
