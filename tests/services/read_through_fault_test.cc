// Read-through (services/read_through.h) over the real network path: the real HttpOrigin (curl)
// → FaultProxy (tests/testing/fault_proxy.h) → nginx serving the blob. The proxy damages the
// responses as a bad link or a broken CDN would, and each case checks what read-through
// promises: nothing corrupt is ever cached, and a fault that passes (a cut, a reset, a stall
// with another origin to go to) still ends with the verified blob stored.
#include <algorithm>
#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "common/chunk_chain.h"
#include "common/digest.h"
#include "common/file_util.h"
#include "common/status.h"
#include "gmock/gmock.h"
#include "google/protobuf/text_format.h"
#include "gtest/gtest.h"
#include "services/read_through.h"
#include "storage/blob_record.h"
#include "storage/origin/http_origin.h"
#include "storage/origin/origin_factory.h"
#include "tests/testing/fault_proxy.h"
#include "tests/testing/nginx_server.h"
#include "tests/testing/test_util.h"

namespace modeldist::testing {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

constexpr int64_t kMiB = 1 << 20;
constexpr int64_t kSize = 10 * kMiB + 5;  // a last chunk that is not whole

class ReadThroughFaultTest : public ::testing::Test {
 protected:
  void SetUp() override {
    nginx_ = std::make_unique<NginxServer>(dir_.Join("nginx"), /*tls=*/false);
    ASSERT_NE(nginx_->port(), 0) << nginx_->ErrorLog();
    bytes_ = RandomBytes(kSize, 11);
    hex_ = Sha256::HexOf(bytes_);
    ASSERT_TRUE(MakeDirs(nginx_->www() + "/sha256").ok());
    ASSERT_TRUE(WriteFileAtomically(nginx_->www() + "/sha256/" + hex_, bytes_, 0644).ok());
    ChunkChainBuilder chain(storage::kChunkDigestBytes);
    chain.Update(bytes_);
    remote_ = services::RemoteBlob{kSize, chain.Chain()};

    proxy_ = std::make_unique<FaultProxy>("127.0.0.1", nginx_->port());
    ASSERT_NE(proxy_->port(), 0);
    auto blobs = storage::BlobStore::Open(dir_.Join("store"));
    ASSERT_TRUE(blobs.ok()) << blobs.status();
    blobs_ = *std::move(blobs);
  }

  void TearDown() override {
    // The fetch threads first: they may be inside a GET through the proxy.
    if (rt_ != nullptr) rt_->Stop();
  }

  std::string WebOrigin() const {
    return absl::StrCat(
        "origins { name: \"web\" http { base_url: \"http://127.0.0.1:", proxy_->port(), "\" } }\n");
  }
  std::string DirectOrigin() const {
    return absl::StrCat("origins { name: \"direct\" http { base_url: \"http://127.0.0.1:",
                        nginx_->port(), "\" } }\n");
  }

  // Read-through over the origins of `text` (an OriginsConfig), with a stall limit of 1 s.
  // `real_factory`: the server's MakeOrigin, whose HttpOrigin backs off for seconds between
  // attempts; else HttpOrigins with the same code but a fast RetryPolicy, so that the cases
  // that retry stay quick.
  void Start(const std::string& text, bool real_factory = false) {
    v1::OriginsConfig config;
    ASSERT_TRUE(google::protobuf::TextFormat::ParseFromString(text, &config));
    auto fast = [](const v1::Origin& entry) -> absl::StatusOr<std::unique_ptr<origin::Origin>> {
      origin::HttpOriginOptions options;
      options.name = entry.name();
      options.base_url = entry.http().base_url();
      options.retry.initial_backoff = absl::Milliseconds(10);
      options.retry.max_backoff = absl::Milliseconds(50);
      return std::make_unique<origin::HttpOrigin>(std::move(options));
    };
    auto origins = real_factory ? origin::OriginSet::Build(config, origin::MakeOrigin)
                                : origin::OriginSet::Build(config, fast);
    ASSERT_TRUE(origins.ok()) << origins.status();
    origins_ = *std::move(origins);
    services::ReadThroughOptions options;
    options.stall_timeout = absl::Seconds(1);
    options.on_stored = [this](const std::string& hex) {
      absl::MutexLock lock(&stored_mu_);
      stored_ = true;
    };
    rt_ = std::make_unique<services::ReadThrough>(
        blobs_.get(), origins_.get(),
        [this](const std::string& hex) -> absl::StatusOr<services::RemoteBlob> {
          if (hex != hex_) return absl::NotFoundError("unknown");
          return remote_;
        },
        options);
  }

  // Fetches the blob and waits until the fetch is done or failed. `max_verified` gets the
  // most bytes the fetch ever let readers see (sampled every millisecond) while it ran.
  services::BlobFetch::Progress FetchAndWait(int64_t* max_verified = nullptr) {
    absl::StatusOr<std::shared_ptr<services::BlobFetch>> fetch = rt_->Fetch(hex_);
    EXPECT_TRUE(fetch.ok()) << fetch.status();
    if (!fetch.ok() || *fetch == nullptr) return {};
    fetch_ = *fetch;
    // Shared: a fetch that outlives the wait still has something to notify.
    auto done = std::make_shared<absl::Notification>();
    fetch_->WhenReady(kSize, [done] { done->Notify(); });
    int64_t seen = 0;
    const absl::Time until = absl::Now() + absl::Seconds(30);
    while (!done->HasBeenNotified() && absl::Now() < until) {
      seen = std::max(seen, fetch_->progress().verified);
      absl::SleepFor(absl::Milliseconds(1));
    }
    EXPECT_TRUE(done->HasBeenNotified()) << "the fetch did not end within 30 s";
    const services::BlobFetch::Progress progress = fetch_->progress();
    if (max_verified != nullptr) *max_verified = std::max(seen, progress.verified);
    return progress;
  }

  // The bytes the fetch serves, read as a Read would.
  std::string ReadAll() const {
    std::string out(static_cast<size_t>(kSize), '\0');
    absl::StatusOr<size_t> got = fetch_->ReadAt(0, out.data(), out.size());
    EXPECT_TRUE(got.ok()) << got.status();
    out.resize(got.ok() ? *got : 0);
    return out;
  }

  // Readers get the last chunk before the store's Finish is done: waits for on_stored.
  bool WaitStored() {
    for (absl::Time until = absl::Now() + absl::Seconds(10); absl::Now() < until;
         absl::SleepFor(absl::Milliseconds(2))) {
      absl::MutexLock lock(&stored_mu_);
      if (stored_) break;
    }
    return blobs_->Contains(hex_);
  }

  // The fetch ended with the blob stored, verified, and served as the file on nginx.
  void ExpectStoredAndServed(const services::BlobFetch::Progress& done) {
    ASSERT_TRUE(done.error.ok()) << done.error;
    EXPECT_EQ(done.verified, kSize);
    EXPECT_TRUE(ReadAll() == bytes_) << "the bytes served differ from the file";
    ASSERT_TRUE(WaitStored());
    EXPECT_TRUE(blobs_->Verify(hex_).ok());
  }

  int64_t UploadOffset() {
    absl::StatusOr<int64_t> kept = blobs_->UploadOffset(hex_, kSize);
    EXPECT_TRUE(kept.ok()) << kept.status();
    return kept.value_or(-1);
  }

  ScratchDir dir_;
  std::unique_ptr<NginxServer> nginx_;
  std::unique_ptr<FaultProxy> proxy_;
  std::string bytes_;
  std::string hex_;
  services::RemoteBlob remote_;
  std::unique_ptr<storage::BlobStore> blobs_;
  std::unique_ptr<origin::OriginSet> origins_;
  std::unique_ptr<services::ReadThrough> rt_;  // after what it uses: destroyed before it
  std::shared_ptr<services::BlobFetch> fetch_;
  absl::Mutex stored_mu_;
  bool stored_ ABSL_GUARDED_BY(stored_mu_) = false;
};

TEST_F(ReadThroughFaultTest, ThroughAProxyThatPassesEverythingTheBlobIsStored) {
  Start(WebOrigin(), /*real_factory=*/true);
  ExpectStoredAndServed(FetchAndWait());
  EXPECT_EQ(proxy_->requests(), 1);
}

TEST_F(ReadThroughFaultTest, AFlippedBitEndsWithDataLossAndNothingCorruptIsCached) {
  proxy_->set_fault({.kind = Fault::kCorrupt, .at = 6 * kMiB});  // in chunk 1 of [4, 8) MiB
  Start(WebOrigin(), /*real_factory=*/true);
  int64_t max_verified = 0;
  const services::BlobFetch::Progress failed = FetchAndWait(&max_verified);
  EXPECT_EQ(failed.error.code(), absl::StatusCode::kDataLoss) << failed.error;
  EXPECT_EQ(ErrorReason(failed.error), "CHUNK_MISMATCH");
  EXPECT_THAT(failed.error.message(), HasSubstr("origin web"));
  EXPECT_LE(max_verified, 4 * kMiB);  // the bad chunk was never readable
  EXPECT_FALSE(blobs_->Contains(hex_));
  EXPECT_EQ(UploadOffset(), 0);      // the upload was dropped
  EXPECT_EQ(proxy_->requests(), 1);  // bad bytes are not retried
}

TEST_F(ReadThroughFaultTest, AConnectionCutMidBodyIsResumedByTheOriginsRetry) {
  proxy_->set_fault({.kind = Fault::kTruncate, .at = 5 * kMiB, .times = 1});
  Start(WebOrigin());
  ExpectStoredAndServed(FetchAndWait());
  EXPECT_EQ(proxy_->requests(), 2);  // the cut one, then the rest
  EXPECT_EQ(rt_->origin_gets(), 1);  // one origin GET: the retry is HttpOrigin's own
}

TEST_F(ReadThroughFaultTest, AResetMidBodyIsResumedByTheOriginsRetry) {
  proxy_->set_fault({.kind = Fault::kReset, .at = 2 * kMiB, .times = 1});
  Start(WebOrigin());
  ExpectStoredAndServed(FetchAndWait());
  EXPECT_EQ(proxy_->requests(), 2);
}

TEST_F(ReadThroughFaultTest, AStallOnTheOnlyOriginEndsUnavailableWithinSecondsStoringNothing) {
  proxy_->set_fault({.kind = Fault::kStall, .at = 3 * kMiB});
  Start(WebOrigin());
  const absl::Time start = absl::Now();
  const services::BlobFetch::Progress failed = FetchAndWait();
  const absl::Duration took = absl::Now() - start;
  EXPECT_EQ(failed.error.code(), absl::StatusCode::kUnavailable) << failed.error;
  EXPECT_EQ(ErrorReason(failed.error), "ORIGINS_UNAVAILABLE");
  EXPECT_THAT(failed.error.message(), HasSubstr("no byte arrived"));
  EXPECT_TRUE(RetryDelay(failed.error).has_value());
  EXPECT_GE(took, absl::Seconds(1));
  EXPECT_LT(took, absl::Seconds(5));
  EXPECT_FALSE(blobs_->Contains(hex_));
  EXPECT_EQ(failed.verified, 0);        // 3 MiB arrived, but no whole chunk
  EXPECT_EQ(UploadOffset(), 3 * kMiB);  // kept, for the next fetch to resume after
  EXPECT_EQ(proxy_->requests(), 1);     // a stall is the watchdog's: not retried by the origin
}

TEST_F(ReadThroughFaultTest, AStallHandsOverToTheNextOriginAtTheStartOfItsChunk) {
  proxy_->set_fault({.kind = Fault::kStall, .at = 6 * kMiB});  // inside chunk 1, [4, 8) MiB
  Start(WebOrigin() + DirectOrigin());
  ExpectStoredAndServed(FetchAndWait());
  EXPECT_EQ(rt_->origin_gets(), 2);
  EXPECT_EQ(proxy_->requests(), 1);
  // nginx logs each response's body size: "direct" was asked for chunk 1 on, not chunk 0.
  const std::string wanted = absl::StrCat("\" 206 ", kSize - 4 * kMiB, " ");
  std::string log;
  for (absl::Time until = absl::Now() + absl::Seconds(5); absl::Now() < until;
       absl::SleepFor(absl::Milliseconds(10))) {
    log = ReadFileToString(dir_.Join("nginx") + "/logs/access.log").value_or("");
    if (log.find(wanted) != std::string::npos) break;
  }
  EXPECT_THAT(log, HasSubstr(wanted));
}

TEST_F(ReadThroughFaultTest, An503OnTheOnlyOriginEndsUnavailableWithRetryInfo) {
  proxy_->set_fault({.kind = Fault::kStatus5xx});
  Start(WebOrigin());
  const services::BlobFetch::Progress failed = FetchAndWait();
  EXPECT_EQ(failed.error.code(), absl::StatusCode::kUnavailable) << failed.error;
  EXPECT_EQ(ErrorReason(failed.error), "ORIGINS_UNAVAILABLE");
  EXPECT_TRUE(RetryDelay(failed.error).has_value());
  EXPECT_FALSE(blobs_->Contains(hex_));
  EXPECT_EQ(UploadOffset(), 0);
  EXPECT_EQ(proxy_->requests(), RetryPolicy().max_attempts);  // HttpOrigin's retries, all 503
}

TEST_F(ReadThroughFaultTest, AContentLengthThatLiesNeverStoresWrongBytes) {
  proxy_->set_fault({.kind = Fault::kWrongLength, .times = 1});
  Start(WebOrigin());
  const services::BlobFetch::Progress done = FetchAndWait();
  if (done.error.ok()) {
    ExpectStoredAndServed(done);
  } else {
    // A clean failure: a status that says why, and nothing stored.
    EXPECT_THAT(done.error.code(),
                ::testing::AnyOf(absl::StatusCode::kUnavailable, absl::StatusCode::kDataLoss))
        << done.error;
    EXPECT_FALSE(blobs_->Contains(hex_));
  }
  if (blobs_->Contains(hex_)) {
    EXPECT_TRUE(blobs_->Verify(hex_).ok());
  }
}

// Bad bytes in a chunk that an origin did not finish are only found when the next origin
// completes the chunk. "web" is two proxies in a row: the inner one flips a bit at 1 MiB, the
// outer one stalls at 3 MiB (inside chunk 0); "direct" is nginx itself.
class ReadThroughFaultSplitChunkTest : public ReadThroughFaultTest {
 protected:
  void SetUp() override {
    ReadThroughFaultTest::SetUp();
    if (HasFatalFailure()) return;
    corrupting_ = std::make_unique<FaultProxy>("127.0.0.1", nginx_->port());
    ASSERT_NE(corrupting_->port(), 0);
    corrupting_->set_fault({.kind = Fault::kCorrupt, .at = kMiB});
    proxy_ = std::make_unique<FaultProxy>("127.0.0.1", corrupting_->port());
    ASSERT_NE(proxy_->port(), 0);
    proxy_->set_fault({.kind = Fault::kStall, .at = 3 * kMiB});
    Start(WebOrigin() + DirectOrigin());
  }
  void TearDown() override {
    rt_->Stop();  // before corrupting_ goes
    ReadThroughFaultTest::TearDown();
  }

  std::unique_ptr<FaultProxy> corrupting_;
};

TEST_F(ReadThroughFaultSplitChunkTest, BadBytesLeftByAStalledOriginAreNeverStored) {
  for (int fetch = 0; fetch < 2; ++fetch) {  // a Read, and a Read that retries
    int64_t max_verified = 0;
    const services::BlobFetch::Progress done = FetchAndWait(&max_verified);
    if (done.error.ok()) {
      ExpectStoredAndServed(done);
      return;
    }
    EXPECT_EQ(done.error.code(), absl::StatusCode::kDataLoss) << done.error;
    EXPECT_EQ(max_verified, 0);  // chunk 0 was never readable
    EXPECT_FALSE(blobs_->Contains(hex_));
    EXPECT_EQ(UploadOffset(), 0);
  }
}

// "web" sends a bad byte in chunk 0 and stalls before the chunk ends. The chunk starts again
// from its first byte with "direct", whose bytes are right: the first fetch gets the blob, and
// "direct" is never blamed. (Before chunks were refetched whole, the mixed chunk failed and
// blamed "direct", so every fetch went to "web" first again and failed the same way.)
TEST_F(ReadThroughFaultSplitChunkTest, AHealthyOriginStillGetsTheBlobToo) {
  const services::BlobFetch::Progress done = FetchAndWait();
  ASSERT_TRUE(done.error.ok()) << done.error;
  ExpectStoredAndServed(done);
}

}  // namespace
}  // namespace modeldist::testing
