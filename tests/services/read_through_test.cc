// Read-through (services/read_through.h) on its own parts: a real blob store on a scratch
// folder and MemoryOrigins as the fault seams (pieces, errors, a stall, bad bytes); then its
// wiring into the server: eight concurrent Reads of a blob whose local file is gone cost one
// origin GET. Real origins (nginx, Swift) are in bench/origins_bench and ctl_e2e_origins_test.
#include "services/read_through.h"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "common/chunk_chain.h"
#include "common/digest.h"
#include "common/file_util.h"
#include "common/status.h"
#include "gmock/gmock.h"
#include "google/protobuf/text_format.h"
#include "gtest/gtest.h"
#include "services/blob_endpoint.h"
#include "storage/blob_record.h"
#include "tests/storage/origin/memory_origin.h"
#include "tests/testing/test_server.h"
#include "tests/testing/test_util.h"

namespace modeldist::testing {
namespace {

using ::testing::HasSubstr;

constexpr int64_t kMiB = 1 << 20;

constexpr char kTwoOrigins[] =
    "origins { name: \"a\" http { base_url: \"https://a.example.com\" } }\n"
    "origins { name: \"b\" http { base_url: \"https://b.example.com\" } }\n";

std::string ChainOf(const std::string& bytes) {
  ChunkChainBuilder builder(storage::kChunkDigestBytes);
  builder.Update(bytes);
  return builder.Chain();
}

class ReadThroughTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto blobs = storage::BlobStore::Open(dir_.Join("store"));
    ASSERT_TRUE(blobs.ok()) << blobs.status();
    blobs_ = *std::move(blobs);
    v1::OriginsConfig config;
    ASSERT_TRUE(google::protobuf::TextFormat::ParseFromString(kTwoOrigins, &config));
    auto origins = origin::OriginSet::Build(
        config, [this](const v1::Origin& entry) -> absl::StatusOr<std::unique_ptr<origin::Origin>> {
          auto fake = std::make_unique<MemoryOrigin>(entry.name());
          fakes_[entry.name()] = fake.get();
          return fake;
        });
    ASSERT_TRUE(origins.ok()) << origins.status();
    origins_ = *std::move(origins);
  }

  // A blob of `size` bytes that the lookup knows, on origin `on` (each of a, b when empty).
  std::string AddBlob(int64_t size, const std::vector<std::string>& on = {"a", "b"}) {
    const std::string bytes = RandomBytes(static_cast<size_t>(size), 7);
    const std::string hex = Sha256::HexOf(bytes);
    known_[hex] = services::RemoteBlob{size, ChainOf(bytes)};
    for (const std::string& name : on) fakes_[name]->objects["sha256/" + hex] = bytes;
    bytes_[hex] = bytes;
    return hex;
  }

  std::unique_ptr<services::ReadThrough> Make(absl::Duration stall = absl::Seconds(30)) {
    services::ReadThroughOptions options;
    options.stall_timeout = stall;
    options.on_stored = [this](const std::string& hex) {
      absl::MutexLock lock(&stored_mu_);
      stored_.push_back(hex);
    };
    return std::make_unique<services::ReadThrough>(
        blobs_.get(), origins_.get(),
        [this](const std::string& hex) -> absl::StatusOr<services::RemoteBlob> {
          auto it = known_.find(hex);
          if (it == known_.end()) return absl::NotFoundError("unknown");
          return it->second;
        },
        options);
  }

  // Waits until `fetch` is done or failed; returns its progress.
  static services::BlobFetch::Progress Wait(services::BlobFetch& fetch) {
    absl::Notification done;
    fetch.WhenReady(fetch.size(), [&done] { done.Notify(); });
    EXPECT_TRUE(done.WaitForNotificationWithTimeout(absl::Seconds(60)));
    return fetch.progress();
  }

  // Readers get the last chunk once it hashes to the digest, before the store's Finish
  // (fsync, rename) is done: waits for that too, then for on_stored.
  void WaitStored(const std::string& hex) {
    const absl::Time until = absl::Now() + absl::Seconds(30);
    while (absl::Now() < until) {
      {
        absl::MutexLock lock(&stored_mu_);
        if (std::find(stored_.begin(), stored_.end(), hex) != stored_.end()) break;
      }
      absl::SleepFor(absl::Milliseconds(2));
    }
    EXPECT_TRUE(blobs_->Contains(hex));
  }

  static std::string ReadAll(const services::BlobFetch& fetch, int64_t end) {
    std::string out(static_cast<size_t>(end), '\0');
    absl::StatusOr<size_t> got = fetch.ReadAt(0, out.data(), out.size());
    EXPECT_TRUE(got.ok()) << got.status();
    out.resize(got.ok() ? *got : 0);
    return out;
  }

  ScratchDir dir_;
  std::unique_ptr<storage::BlobStore> blobs_;
  std::map<std::string, MemoryOrigin*> fakes_;
  std::unique_ptr<origin::OriginSet> origins_;
  std::map<std::string, services::RemoteBlob> known_;
  std::map<std::string, std::string> bytes_;
  absl::Mutex stored_mu_;
  std::vector<std::string> stored_ ABSL_GUARDED_BY(stored_mu_);
};

TEST_F(ReadThroughTest, AMissingBlobIsFetchedOnceVerifiedAndStored) {
  const std::string hex = AddBlob(10 * kMiB + 17);
  auto rt = Make();
  absl::StatusOr<std::shared_ptr<services::BlobFetch>> fetch = rt->Fetch(hex);
  ASSERT_TRUE(fetch.ok()) << fetch.status();
  ASSERT_NE(*fetch, nullptr);
  const services::BlobFetch::Progress done = Wait(**fetch);
  ASSERT_TRUE(done.error.ok()) << done.error;
  EXPECT_EQ(done.verified, 10 * kMiB + 17);
  EXPECT_TRUE(ReadAll(**fetch, done.verified) == bytes_[hex]);
  EXPECT_EQ(fakes_["a"]->gets.load(), 1);
  EXPECT_EQ(fakes_["b"]->gets.load(), 0);
  EXPECT_EQ(rt->origin_gets(), 1);
  WaitStored(hex);
  {
    absl::MutexLock lock(&stored_mu_);
    EXPECT_EQ(stored_, std::vector<std::string>{hex});
  }
  // Stored as any verified blob: the next Read is local.
  EXPECT_TRUE(blobs_->Verify(hex).ok());
  absl::StatusOr<std::shared_ptr<services::BlobFetch>> again = rt->Fetch(hex);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(*again, nullptr);
  EXPECT_EQ(rt->origin_gets(), 1);
}

// Restore (the Replicator's way to copy an evicted blob) returns once the blob is stored,
// not merely verified, and gives the fetch's error when it fails.
TEST_F(ReadThroughTest, RestoreReturnsOnceTheBlobIsStored) {
  const std::string hex = AddBlob(6 * kMiB + 5);
  auto rt = Make();
  ASSERT_TRUE(rt->Restore(hex).ok());
  EXPECT_TRUE(blobs_->Contains(hex));
  EXPECT_TRUE(blobs_->Verify(hex).ok());
  EXPECT_TRUE(rt->Restore(hex).ok());  // stored: no fetch
  EXPECT_EQ(rt->origin_gets(), 1);

  const std::string missing = AddBlob(kMiB, /*on=*/{});
  const absl::Status gone = rt->Restore(missing);
  EXPECT_EQ(gone.code(), absl::StatusCode::kNotFound) << gone;
  EXPECT_EQ(ErrorReason(gone), "BLOB_NOT_ON_ORIGINS");
  EXPECT_FALSE(blobs_->Contains(missing));
}

TEST_F(ReadThroughTest, ConcurrentReadsJoinOneFetchAndSeeOnlyVerifiedChunks) {
  const std::string hex = AddBlob(9 * kMiB);
  absl::Notification release;
  auto rt = Make();
  fakes_["a"]->before_piece = [&](int64_t offset) {
    if (offset == 6 * kMiB) release.WaitForNotification();  // hold inside chunk 1
    return absl::OkStatus();
  };
  std::vector<std::shared_ptr<services::BlobFetch>> fetches(8);
  std::vector<std::thread> readers;
  for (int i = 0; i < 8; ++i) {
    readers.emplace_back([&, i] {
      absl::StatusOr<std::shared_ptr<services::BlobFetch>> f = rt->Fetch(hex);
      ASSERT_TRUE(f.ok()) << f.status();
      fetches[i] = *f;
    });
  }
  for (std::thread& t : readers) t.join();
  for (const auto& f : fetches) EXPECT_EQ(f, fetches[0]);  // one fetch for all
  // Held at 6 MiB: chunk 0 is verified, chunk 1 is not, so only [0, 4 MiB) is readable.
  for (absl::Time until = absl::Now() + absl::Seconds(10);
       fetches[0]->progress().verified < 4 * kMiB && absl::Now() < until;) {
    absl::SleepFor(absl::Milliseconds(5));
  }
  EXPECT_EQ(fetches[0]->progress().verified, 4 * kMiB);
  release.Notify();
  const services::BlobFetch::Progress done = Wait(*fetches[0]);
  ASSERT_TRUE(done.error.ok()) << done.error;
  EXPECT_TRUE(ReadAll(*fetches[3], 9 * kMiB) == bytes_[hex]);
  EXPECT_EQ(rt->origin_gets(), 1);
}

TEST_F(ReadThroughTest, AChunkThatDoesNotMatchEndsWithDataLossAndCachesNothing) {
  const std::string hex = AddBlob(10 * kMiB);
  fakes_["a"]->objects["sha256/" + hex][5 * kMiB + 3] ^= 1;  // in chunk 1
  auto rt = Make();
  absl::StatusOr<std::shared_ptr<services::BlobFetch>> fetch = rt->Fetch(hex);
  ASSERT_TRUE(fetch.ok()) << fetch.status();
  const services::BlobFetch::Progress failed = Wait(**fetch);
  EXPECT_EQ(failed.error.code(), absl::StatusCode::kDataLoss) << failed.error;
  EXPECT_EQ(ErrorReason(failed.error), "CHUNK_MISMATCH");
  EXPECT_THAT(failed.error.message(), HasSubstr("origin a"));
  EXPECT_EQ(failed.verified, 4 * kMiB);  // chunk 0 only: the bad chunk was never readable
  EXPECT_FALSE(blobs_->Contains(hex));
  absl::StatusOr<int64_t> kept = blobs_->UploadOffset(hex, 10 * kMiB);
  ASSERT_TRUE(kept.ok()) << kept.status();
  EXPECT_EQ(*kept, 0);  // the upload was dropped
  EXPECT_EQ(fakes_["b"]->gets.load(), 0);
  // The next Read tries the origin that sent bad bytes last.
  // A fetch leaves ReadThrough before its waiters hear how it ended: this one is new.
  absl::StatusOr<std::shared_ptr<services::BlobFetch>> retry = rt->Fetch(hex);
  ASSERT_TRUE(retry.ok()) << retry.status();
  EXPECT_NE(*retry, *fetch);
  ASSERT_TRUE(retry.ok()) << retry.status();
  ASSERT_NE(*retry, nullptr);
  const services::BlobFetch::Progress done = Wait(**retry);
  ASSERT_TRUE(done.error.ok()) << done.error;
  EXPECT_EQ(fakes_["b"]->gets.load(), 1);
  EXPECT_EQ(fakes_["a"]->gets.load(), 1);
  WaitStored(hex);
}

TEST_F(ReadThroughTest, AFailingOriginHandsOverToTheNextAtTheStartOfItsChunk) {
  const std::string hex = AddBlob(10 * kMiB);
  fakes_["a"]->before_piece = [](int64_t offset) {
    if (offset < 5 * kMiB) return absl::OkStatus();
    return MakeError(absl::StatusCode::kUnavailable, "HTTP_5XX", "a: 503 Service Unavailable");
  };
  std::vector<int64_t> b_offsets;
  fakes_["b"]->before_piece = [&](int64_t offset) {
    b_offsets.push_back(offset);
    return absl::OkStatus();
  };
  auto rt = Make();
  absl::StatusOr<std::shared_ptr<services::BlobFetch>> fetch = rt->Fetch(hex);
  ASSERT_TRUE(fetch.ok()) << fetch.status();
  const services::BlobFetch::Progress done = Wait(**fetch);
  ASSERT_TRUE(done.error.ok()) << done.error;
  ASSERT_FALSE(b_offsets.empty());
  EXPECT_EQ(b_offsets.front(), 4 * kMiB);  // chunk 1 again from its start, all from b
  EXPECT_TRUE(ReadAll(**fetch, 10 * kMiB) == bytes_[hex]);
}

TEST_F(ReadThroughTest, WhenEveryOriginFailsTheFetchIsUnavailableWithRetryInfoAndResumesLater) {
  const std::string hex = AddBlob(10 * kMiB, {"a"});
  fakes_["a"]->before_piece = [](int64_t offset) {
    if (offset < 5 * kMiB) return absl::OkStatus();
    return MakeError(absl::StatusCode::kUnavailable, "HTTP_5XX", "a: 503 Service Unavailable");
  };
  auto rt = Make();
  absl::StatusOr<std::shared_ptr<services::BlobFetch>> fetch = rt->Fetch(hex);
  ASSERT_TRUE(fetch.ok()) << fetch.status();
  services::BlobFetch::Progress failed = Wait(**fetch);
  EXPECT_EQ(failed.error.code(), absl::StatusCode::kUnavailable) << failed.error;
  EXPECT_EQ(ErrorReason(failed.error), "ORIGINS_UNAVAILABLE");
  EXPECT_TRUE(RetryDelay(failed.error).has_value());
  EXPECT_EQ(failed.verified, 4 * kMiB);
  // b has no copy: NOT_FOUND there does not make the whole fetch NOT_FOUND.
  EXPECT_EQ(fakes_["b"]->gets.load(), 1);

  // The origin recovers: the next fetch keeps the 4 MiB verified (checking them again) and
  // fetches chunk 1 from its start.
  std::vector<int64_t> offsets;
  fakes_["a"]->before_piece = [&](int64_t offset) {
    offsets.push_back(offset);
    return absl::OkStatus();
  };
  // A fetch leaves ReadThrough before its waiters hear how it ended: this one is new.
  absl::StatusOr<std::shared_ptr<services::BlobFetch>> retry = rt->Fetch(hex);
  ASSERT_TRUE(retry.ok()) << retry.status();
  EXPECT_NE(*retry, *fetch);
  ASSERT_TRUE(retry.ok()) << retry.status();
  const services::BlobFetch::Progress done = Wait(**retry);
  ASSERT_TRUE(done.error.ok()) << done.error;
  ASSERT_FALSE(offsets.empty());
  EXPECT_EQ(offsets.front(), 4 * kMiB);
  WaitStored(hex);
  EXPECT_TRUE(blobs_->Verify(hex).ok());
}

TEST_F(ReadThroughTest, AStalledOriginIsGivenUpForTheNext) {
  const std::string hex = AddBlob(6 * kMiB);
  fakes_["a"]->stall_get = true;
  auto rt = Make(/*stall=*/absl::Milliseconds(300));
  const absl::Time start = absl::Now();
  absl::StatusOr<std::shared_ptr<services::BlobFetch>> fetch = rt->Fetch(hex);
  ASSERT_TRUE(fetch.ok()) << fetch.status();
  const services::BlobFetch::Progress done = Wait(**fetch);
  ASSERT_TRUE(done.error.ok()) << done.error;
  EXPECT_GE(absl::Now() - start, absl::Milliseconds(300));
  EXPECT_EQ(fakes_["b"]->gets.load(), 1);
  WaitStored(hex);
}

TEST_F(ReadThroughTest, AStallOnTheOnlyOriginEndsUnavailableNamingTheStall) {
  const std::string hex = AddBlob(6 * kMiB, {"a"});
  fakes_["a"]->stall_get = true;
  fakes_["b"]->get_error = MakeError(absl::StatusCode::kUnavailable, "HTTP_5XX", "b: 502");
  auto rt = Make(/*stall=*/absl::Milliseconds(300));
  absl::StatusOr<std::shared_ptr<services::BlobFetch>> fetch = rt->Fetch(hex);
  ASSERT_TRUE(fetch.ok()) << fetch.status();
  const services::BlobFetch::Progress failed = Wait(**fetch);
  EXPECT_EQ(failed.error.code(), absl::StatusCode::kUnavailable) << failed.error;
  EXPECT_THAT(failed.error.message(), HasSubstr("b: 502"));
  EXPECT_FALSE(blobs_->Contains(hex));
}

TEST_F(ReadThroughTest, ABlobNoOriginHasIsNotFound) {
  const std::string hex = AddBlob(kMiB, {});
  auto rt = Make();
  absl::StatusOr<std::shared_ptr<services::BlobFetch>> fetch = rt->Fetch(hex);
  ASSERT_TRUE(fetch.ok()) << fetch.status();
  const services::BlobFetch::Progress failed = Wait(**fetch);
  EXPECT_EQ(failed.error.code(), absl::StatusCode::kNotFound) << failed.error;
  EXPECT_EQ(ErrorReason(failed.error), "BLOB_NOT_ON_ORIGINS");
  EXPECT_EQ(rt->origin_gets(), 2);
}

TEST_F(ReadThroughTest, AnUnknownDigestAsksNoOrigin) {
  auto rt = Make();
  absl::StatusOr<std::shared_ptr<services::BlobFetch>> fetch = rt->Fetch(std::string(64, 'a'));
  EXPECT_EQ(fetch.status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(ErrorReason(fetch.status()), "BLOB_NOT_FOUND");
  EXPECT_EQ(rt->origin_gets(), 0);
}

TEST_F(ReadThroughTest, StopCancelsAFetchAndItsWaitersHearUnavailable) {
  const std::string hex = AddBlob(6 * kMiB, {"a"});
  fakes_["a"]->stall_get = true;
  auto rt = Make();
  absl::StatusOr<std::shared_ptr<services::BlobFetch>> fetch = rt->Fetch(hex);
  ASSERT_TRUE(fetch.ok()) << fetch.status();
  absl::Notification heard;
  (*fetch)->WhenReady(6 * kMiB, [&heard] { heard.Notify(); });
  rt->Stop();
  ASSERT_TRUE(heard.WaitForNotificationWithTimeout(absl::Seconds(10)));
  EXPECT_EQ((*fetch)->progress().error.code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(rt->Fetch(hex).status().code(), absl::StatusCode::kUnavailable);
}

// The server: a published, replicated blob whose local file is gone is read through on the
// next Read. Eight concurrent Reads get the bytes with one origin GET; the ninth is local.
TEST(ReadThroughServerTest, EightConcurrentReadsOfAMissingBlobCostOneOriginGet) {
  ScratchDir dir;
  const std::string file = dir.Join("origins.textproto");
  ASSERT_TRUE(WriteFileAtomically(file,
                                  "origins { name: \"r2\" s3 { endpoint: "
                                  "\"https://acct.r2.cloudflarestorage.com\" region: \"auto\" "
                                  "bucket: \"models\" access_key_id { env: \"UNUSED\" } "
                                  "secret_access_key { env: \"UNUSED\" } } replicate: true }\n",
                                  0600)
                  .ok());
  std::map<std::string, MemoryOrigin*> fakes;
  services::ServerConfig config;
  config.origins_file = file;
  config.origin_factory =
      [&fakes](const v1::Origin& entry) -> absl::StatusOr<std::unique_ptr<origin::Origin>> {
    auto fake = std::make_unique<MemoryOrigin>(entry.name());
    fakes[entry.name()] = fake.get();
    return fake;
  };
  TestServer server(config);
  const std::string bytes = RandomBytes(9 * kMiB + 5, 3);
  const std::string digest =
      server.PublishBlob("m", "1", v1::PLATFORM_LINUX, v1::ARCH_ANY, v1::FORMAT_GGUF, bytes);
  const std::string hex = digest.substr(7);
  MemoryOrigin& r2 = *fakes["r2"];
  // Replicated (and so its chain recorded) before the local copy goes.
  v1::GetVersionRequest request;
  request.set_name("models/m/versions/1");
  bool confirmed = false;
  for (absl::Time until = absl::Now() + absl::Seconds(30); !confirmed && absl::Now() < until;
       absl::SleepFor(absl::Milliseconds(20))) {
    v1::Version version;
    ASSERT_TRUE(server.registry().GetVersion(server.Admin().get(), request, &version).ok());
    confirmed = version.artifacts(0).replicas_size() == 1 &&
                version.artifacts(0).replicas(0).state() == v1::Replica::CONFIRMED;
  }
  ASSERT_TRUE(confirmed);
  const std::string blob_path =
      absl::StrCat(server.data_dir(), "/data/blobs/sha256/", hex.substr(0, 2), "/", hex);
  ASSERT_EQ(::unlink(blob_path.c_str()), 0);
  ASSERT_EQ(::unlink((blob_path + ".chain").c_str()), 0);

  // The first piece waits until every reader is in, so that they overlap.
  absl::Notification all_started;
  r2.before_piece = [&all_started](int64_t offset) {
    if (offset == 0) all_started.WaitForNotificationWithTimeout(absl::Seconds(10));
    return absl::OkStatus();
  };
  std::vector<std::string> got(8);
  std::vector<grpc::Status> status(8);
  std::vector<std::thread> readers;
  for (int i = 0; i < 8; ++i) {
    readers.emplace_back([&, i] { status[i] = server.ReadBlob(digest, &got[i]); });
  }
  absl::SleepFor(absl::Milliseconds(300));
  all_started.Notify();
  for (std::thread& t : readers) t.join();
  for (int i = 0; i < 8; ++i) {
    EXPECT_TRUE(status[i].ok()) << i << ": " << status[i].error_message();
    EXPECT_TRUE(got[i] == bytes) << i << ": " << got[i].size() << " bytes";
  }
  EXPECT_EQ(r2.gets.load(), 1);
  std::string again;
  ASSERT_TRUE(server.ReadBlob(digest, &again).ok());
  EXPECT_TRUE(again == bytes);
  EXPECT_EQ(r2.gets.load(), 1);  // local now
  // Stored again (Finish may still be running: readers got the last chunk once it hashed to
  // the digest).
  struct stat st;
  bool stored = false;
  for (absl::Time until = absl::Now() + absl::Seconds(30); !stored && absl::Now() < until;
       absl::SleepFor(absl::Milliseconds(5))) {
    stored = ::stat(blob_path.c_str(), &st) == 0;
  }
  EXPECT_TRUE(stored);
}

// The CDN origin endpoint (services/blob_endpoint.h) reads a blob that is not stored here through
// the origins, as ArtifactService.Read does: its body is the verified bytes, ranges included,
// and a chunk that does not match ends the body before it is complete.
absl::StatusOr<std::string> HttpBody(const services::BlobEndpoint& endpoint, const std::string& hex,
                                     const std::string& range = "") {
  http_server::Request request;
  request.method = "GET";
  request.path = absl::StrCat("/v1/blobs/sha256:", hex);
  if (!range.empty()) request.headers["range"] = range;
  http_server::Response response = endpoint.Serve(request, absl::StrCat("sha256:", hex));
  if (response.status != 200 && response.status != 206) {
    return absl::InternalError(absl::StrCat(response.status, " ", response.body));
  }
  std::string body;
  while (static_cast<int64_t>(body.size()) < response.body_size) {
    std::string block(256 * 1024, '\0');
    const size_t max = std::min<size_t>(block.size(), response.body_size - body.size());
    absl::StatusOr<size_t> got =
        response.reader(static_cast<int64_t>(body.size()), block.data(), max);
    if (!got.ok()) return got.status();
    body.append(block.data(), *got);
  }
  return body;
}

TEST_F(ReadThroughTest, TheHttpBlobEndpointReadsThroughToo) {
  const std::string hex = AddBlob(10 * kMiB + 17);
  auto rt = Make();
  services::BlobEndpoint endpoint(blobs_.get(), nullptr, rt.get());
  absl::StatusOr<std::string> ranged = HttpBody(endpoint, hex, "bytes=5000000-5000099");
  ASSERT_TRUE(ranged.ok()) << ranged.status();
  EXPECT_TRUE(*ranged == bytes_[hex].substr(5000000, 100));
  absl::StatusOr<std::string> whole = HttpBody(endpoint, hex);
  ASSERT_TRUE(whole.ok()) << whole.status();
  EXPECT_TRUE(*whole == bytes_[hex]);
  WaitStored(hex);
  EXPECT_EQ(fakes_["a"]->gets.load(), 1);  // one fetch for both
}

TEST_F(ReadThroughTest, TheHttpBlobEndpointNeverCompletesABodyWithAChunkThatDoesNotMatch) {
  const std::string hex = AddBlob(10 * kMiB, {"a"});
  fakes_["a"]->objects["sha256/" + hex][5 * kMiB + 3] ^= 1;  // in chunk 1
  auto rt = Make();
  services::BlobEndpoint endpoint(blobs_.get(), nullptr, rt.get());
  absl::StatusOr<std::string> body = HttpBody(endpoint, hex);
  ASSERT_FALSE(body.ok());
  EXPECT_EQ(body.status().code(), absl::StatusCode::kDataLoss) << body.status();
  EXPECT_FALSE(blobs_->Contains(hex));
}

}  // namespace
}  // namespace modeldist::testing
