// DownloadChunks end to end: the real gRPC source against a real in-process server, wrapped in
// the fault-injecting sources of chunk_downloader_fixture.h for what a real server never does
// (corrupt a chunk, cut or stall a stream, send more than asked). Resuming from what is on disk
// is in chunk_downloader_resume_test.cc, the HTTP source in http_source_test.cc.
#include "client/agent/chunk_downloader.h"

#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/digest.h"
#include "common/file_util.h"
#include "common/status.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/client/agent/chunk_downloader_fixture.h"

namespace modeldist::agent {
namespace {

using ::modeldist::testing::IsOk;
using ::modeldist::testing::StatusIs;
using ::testing::AllOf;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Pair;

TEST_F(ChunkDownloaderTest, DownloadsAndVerifiesEveryChunk) {
  std::vector<int64_t> progress;
  options_.on_progress = [&](int64_t done, int64_t total) {
    EXPECT_EQ(total, kSize);
    progress.push_back(done);
  };
  auto stats = Download({grpc_.get()});
  ASSERT_THAT(stats, IsOk());
  EXPECT_EQ(stats->chunks_total, 3);
  EXPECT_EQ(stats->chunks_fetched, 3);
  EXPECT_EQ(stats->chunks_reused, 0);
  EXPECT_EQ(stats->chunks_refetched, 0);
  EXPECT_EQ(stats->retries, 0);
  EXPECT_EQ(stats->bytes_received, kSize);
  EXPECT_THAT(progress, ElementsAre(kChunk, 2 * kChunk, kSize));
  EXPECT_TRUE(sleeps_.empty());
  ExpectPartialIsTheArtifact();
}

TEST_F(ChunkDownloaderTest, CorruptChunkIsRefetchedAlone) {
  FaultySource faulty(grpc_.get());
  faulty.CorruptChunkOnce(1);
  auto stats = Download({&faulty});
  ASSERT_THAT(stats, IsOk());
  EXPECT_EQ(stats->chunks_refetched, 1);
  EXPECT_EQ(stats->chunks_fetched, 4);
  EXPECT_EQ(stats->retries, 1);
  // The stream stops at the bad chunk; that chunk comes alone, then the rest.
  EXPECT_THAT(faulty.reads(), ElementsAre(Pair(0, kSize), Pair(kChunk, kChunk),
                                          Pair(2 * kChunk, kSize - 2 * kChunk)));
  ExpectPartialIsTheArtifact();
}

TEST_F(ChunkDownloaderTest, SourceThatAlwaysCorruptsIsDataLossAndKeepsTheVerifiedPrefix) {
  options_.retry.max_attempts = 3;
  FaultySource faulty(grpc_.get());
  faulty.CorruptChunkAlways(1);
  auto stats = Download({&faulty});
  EXPECT_THAT(stats, StatusIs(absl::StatusCode::kDataLoss, HasSubstr("chunk 1")));
  EXPECT_EQ(ErrorReason(stats.status()), "CHUNK_DIGEST_MISMATCH");
  EXPECT_EQ(faulty.reads().size(), 3u);
  // Chunk 0 stays for a resume; nothing unverified was written.
  EXPECT_TRUE(Slurp(partial_) == bytes_.substr(0, kChunk));
  EXPECT_THAT(Slurp(partial_ + ".journal"), HasSubstr("verified_chunks 1"));
}

TEST_F(ChunkDownloaderTest, TruncatedStreamIsResumedWhereItStopped) {
  FaultySource faulty(grpc_.get());
  faulty.TruncateOnceAfter(5 << 20);
  auto stats = Download({&faulty});
  ASSERT_THAT(stats, IsOk());
  EXPECT_EQ(stats->retries, 1);
  EXPECT_EQ(stats->chunks_fetched, 3);
  EXPECT_EQ(stats->bytes_received, kSize);
  // The bytes of the unfinished chunk held in memory are kept: the retry asks for the rest.
  EXPECT_THAT(faulty.reads(), ElementsAre(Pair(0, kSize), Pair(5 << 20, kSize - (5 << 20))));
  ExpectPartialIsTheArtifact();
}

TEST_F(ChunkDownloaderTest, TruncatedStreamOnEveryAttemptIsDataLoss) {
  options_.retry.max_attempts = 2;
  artifact_.set_size_bytes(kSize + 1);  // the source always ends one byte short of this
  auto stats = Download({grpc_.get()});
  EXPECT_THAT(stats, StatusIs(absl::StatusCode::kDataLoss, HasSubstr("ended after")));
  EXPECT_EQ(ErrorReason(stats.status()), "SOURCE_ENDED_EARLY");
}

TEST_F(ChunkDownloaderTest, EndlessStreamIsCutOffAtTheSize) {
  FaultySource faulty(grpc_.get());
  faulty.SendEndlessly();
  auto stats = Download({&faulty});
  ASSERT_THAT(stats, IsOk());
  // The first byte past what was asked is refused, and nothing past the size is written.
  EXPECT_EQ(faulty.extra_pieces_offered(), 1);
  EXPECT_EQ(stats->bytes_received, kSize);
  ExpectPartialIsTheArtifact();
}

TEST_F(ChunkDownloaderTest, EndlessStreamOnARefetchIsCutOffAfterTheChunk) {
  FaultySource faulty(grpc_.get());
  faulty.CorruptChunkOnce(0);
  faulty.SendEndlessly();
  auto stats = Download({&faulty});
  ASSERT_THAT(stats, IsOk());
  EXPECT_EQ(stats->chunks_refetched, 1);
  EXPECT_EQ(faulty.reads()[1], std::make_pair(int64_t{0}, kChunk));
  ExpectPartialIsTheArtifact();
}

TEST_F(ChunkDownloaderTest, WrongSizeInTheManifestIsDataLoss) {
  options_.retry.max_attempts = 2;
  artifact_.set_size_bytes(kSize - 1);  // same chunk count, last chunk one byte short
  auto stats = Download({grpc_.get()});
  EXPECT_THAT(stats, StatusIs(absl::StatusCode::kDataLoss, HasSubstr("chunk 2")));
}

TEST_F(ChunkDownloaderTest, MalformedManifestArtifactIsInvalidArgument) {
  v1::ManifestArtifact bad = artifact_;
  bad.set_size_bytes(kSize + kChunk);  // needs 4 chain entries, has 3
  EXPECT_THAT(DownloadChunks(bad, {grpc_.get()}, partial_, options_),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("3 entries")));
  bad = artifact_;
  bad.set_chunk_chain(1, "short");
  EXPECT_THAT(DownloadChunks(bad, {grpc_.get()}, partial_, options_),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("32")));
  bad = artifact_;
  bad.set_chunk_size(0);
  EXPECT_THAT(DownloadChunks(bad, {grpc_.get()}, partial_, options_),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("chunk_size")));
  bad = artifact_;
  bad.set_chunk_size(kChunk + 1);  // chains need whole SHA-256 blocks
  EXPECT_THAT(DownloadChunks(bad, {grpc_.get()}, partial_, options_),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("multiple of 64")));
  bad = artifact_;
  bad.set_digest("sha256:XYZ");
  EXPECT_THAT(DownloadChunks(bad, {grpc_.get()}, partial_, options_),
              StatusIs(absl::StatusCode::kInvalidArgument, ::testing::_));
  EXPECT_THAT(DownloadChunks(artifact_, {}, partial_, options_),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("source")));
}

TEST_F(ChunkDownloaderTest, AChainThatDoesNotEndInTheDigestIsRefusedBeforeAnyByte) {
  // Verifying the last chunk against the chain is what checks the whole file, so a manifest
  // whose chain ends elsewhere than its digest contradicts itself.
  FaultySource source(grpc_.get());
  source.ServeDigest(artifact_.digest());
  artifact_.set_digest(FormatDigest(Sha256::HexOf("something else")));
  auto stats = Download({&source});
  EXPECT_THAT(stats, StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("contradicts")));
  EXPECT_EQ(ErrorReason(stats.status()), "CHAIN_DIGEST_MISMATCH");
  EXPECT_TRUE(source.reads().empty());
  EXPECT_FALSE(Exists(partial_));
}

TEST_F(ChunkDownloaderTest, AWrongChainEntryFailsOnlyItsChunk) {
  // Entry 0 altered: chunk 0 can never verify, and chunk 1 (checked from the true entry 0)
  // is not affected by it.
  options_.retry.max_attempts = 2;
  std::string entry = artifact_.chunk_chain(0);
  entry[5] = static_cast<char>(entry[5] ^ 0x40);
  artifact_.set_chunk_chain(0, entry);
  auto stats = Download({grpc_.get()});
  EXPECT_THAT(stats, StatusIs(absl::StatusCode::kDataLoss, HasSubstr("chunk 0")));
  EXPECT_EQ(ErrorReason(stats.status()), "CHUNK_DIGEST_MISMATCH");
  // Nothing was counted: the journal claims no chunk, and a resume keeps no byte.
  auto journal = ReadFileToString(partial_ + ".journal");
  ASSERT_THAT(journal, IsOk());
  EXPECT_THAT(*journal, HasSubstr("verified_chunks 0\n"));
}

TEST_F(ChunkDownloaderTest, StalledReadIsCancelledAndRetried) {
  options_.stall_timeout = absl::Milliseconds(200);
  StallingSource stalling(grpc_.get(), /*stalls=*/1, /*before_stall=*/1 << 20);
  const absl::Time start = absl::Now();
  auto stats = Download({&stalling});
  ASSERT_THAT(stats, IsOk());
  EXPECT_LT(absl::Now() - start, absl::Seconds(10));
  EXPECT_GE(stalling.cancels(), 1);
  EXPECT_EQ(stats->retries, 1);
  EXPECT_EQ(stats->bytes_received, kSize);
  ExpectPartialIsTheArtifact();
}

TEST_F(ChunkDownloaderTest, SourceThatAlwaysStallsIsDeadlineExceeded) {
  options_.stall_timeout = absl::Milliseconds(100);
  options_.retry.max_attempts = 2;
  StallingSource stalling(grpc_.get(), /*stalls=*/100, /*before_stall=*/0);
  auto stats = Download({&stalling});
  EXPECT_THAT(stats, StatusIs(absl::StatusCode::kDeadlineExceeded, HasSubstr("no byte for")));
  EXPECT_EQ(ErrorReason(stats.status()), "SOURCE_STALLED");
}

TEST_F(ChunkDownloaderTest, GrpcSourceToASilentServerIsCancelledByTheWatchdog) {
  SilentServer silent;
  auto source = *NewGrpcSource(absl::StrCat("127.0.0.1:", silent.port()), "");
  options_.stall_timeout = absl::Milliseconds(300);
  options_.retry.max_attempts = 2;
  const absl::Time start = absl::Now();
  auto stats = Download({source.get()});
  EXPECT_THAT(stats, StatusIs(absl::StatusCode::kDeadlineExceeded, ::testing::_));
  EXPECT_LT(absl::Now() - start, absl::Seconds(10));
}

// Moved from the DownloadArtifact tests: the server's NOT_FOUND for a digest it does not hold
// is final (no retry) and reaches the caller, and no byte is kept.
TEST_F(ChunkDownloaderTest, AnArtifactTheServerDoesNotHoldIsNotFound) {
  const std::string other = "not published";
  v1::ManifestArtifact artifact;
  artifact.set_digest(FormatDigest(Sha256::HexOf(other)));
  artifact.set_size_bytes(static_cast<int64_t>(other.size()));
  artifact.set_chunk_size(kChunk);
  // One chunk: its chain entry is the file's digest.
  Sha256 hash;
  hash.Update(other);
  artifact.add_chunk_chain(hash.FinishRaw());
  auto stats = DownloadChunks(artifact, {grpc_.get()}, partial_, options_);
  EXPECT_THAT(stats, StatusIs(absl::StatusCode::kNotFound, ::testing::_));
  EXPECT_TRUE(sleeps_.empty());
  EXPECT_EQ(Slurp(partial_), "");
}

TEST_F(ChunkDownloaderTest, BandwidthCapPacesThroughTheInjectedSleep) {
  options_.max_bytes_per_second = 256 << 10;
  auto stats = Download({grpc_.get()});
  ASSERT_THAT(stats, IsOk());
  // size / cap is ~36 s; the bucket's 100 ms burst and the real time the download took
  // (which a real sleep would not need to cover) come off that.
  const double ideal = static_cast<double>(kSize) / static_cast<double>(256 << 10);
  const double slept = absl::ToDoubleSeconds(TotalSleep());
  EXPECT_GT(slept, 0.95 * ideal);
  EXPECT_LE(slept, ideal);
  ExpectPartialIsTheArtifact();
}

TEST_F(ChunkDownloaderTest, NextSourceIsUsedWhenTheFirstKeepsFailing) {
  options_.retry.max_attempts = 3;
  FaultySource down(grpc_.get());
  down.FailAlways(absl::StatusCode::kUnavailable);
  FaultySource good(grpc_.get());
  auto stats = Download({&down, &good});
  ASSERT_THAT(stats, IsOk());
  // Each failure of the first source has its chunk fetched from the next one at once (no
  // backoff); after its third failure it gives up and the next source does the rest.
  EXPECT_EQ(down.reads().size(), 3u);
  EXPECT_THAT(good.reads(), ElementsAre(Pair(0, kChunk), Pair(kChunk, kChunk),
                                        Pair(2 * kChunk, kSize - 2 * kChunk)));
  EXPECT_EQ(stats->retries, 3);
  EXPECT_TRUE(sleeps_.empty());
  ExpectPartialIsTheArtifact();
}

TEST_F(ChunkDownloaderTest, AChunkAMirrorCorruptsComesFromTheNextSourceAlone) {
  FaultySource mirror(grpc_.get());
  mirror.CorruptChunkAlways(1);
  FaultySource server(grpc_.get());
  auto stats = Download({&mirror, &server});
  ASSERT_THAT(stats, IsOk());
  // The mirror serves chunks 0 and 2; chunk 1, which it corrupts, comes from the server, at
  // once and alone.
  EXPECT_THAT(mirror.reads(), ElementsAre(Pair(0, kSize), Pair(2 * kChunk, kSize - 2 * kChunk)));
  EXPECT_THAT(server.reads(), ElementsAre(Pair(kChunk, kChunk)));
  EXPECT_EQ(stats->chunks_refetched, 1);
  EXPECT_TRUE(sleeps_.empty());
  ExpectPartialIsTheArtifact();
}

TEST_F(ChunkDownloaderTest, SourceWithoutTheArtifactIsSkippedAtOnce) {
  FaultySource missing(grpc_.get());
  missing.FailAlways(absl::StatusCode::kNotFound);
  auto stats = Download({&missing, grpc_.get()});
  ASSERT_THAT(stats, IsOk());
  EXPECT_EQ(missing.reads().size(), 1u);
  EXPECT_TRUE(sleeps_.empty());
  ExpectPartialIsTheArtifact();
}

TEST_F(ChunkDownloaderTest, EverySourceFailingNamesEachOne) {
  options_.retry.max_attempts = 2;
  FaultySource a(grpc_.get());
  a.CorruptChunkAlways(0);
  FaultySource b(grpc_.get());
  b.CorruptChunkAlways(0);
  auto stats = Download({&a, &b});
  EXPECT_THAT(stats, StatusIs(absl::StatusCode::kDataLoss,
                              AllOf(HasSubstr("every source"), HasSubstr("faulty+grpc://"))));
  // a twice; b once in a's place (the chunk a failed) and twice on its own.
  EXPECT_EQ(a.reads().size(), 2u);
  EXPECT_EQ(b.reads().size(), 3u);
  for (absl::Duration d : sleeps_) EXPECT_LE(d, options_.retry.max_backoff);
}

TEST_F(ChunkDownloaderTest, GrpcSourceCancelStopsAReadInProgress) {
  int pieces = 0;
  absl::Status status = grpc_->Read(artifact_.digest(), 0, kSize, [&](absl::string_view) {
    if (++pieces == 1) {
      std::thread([&] { grpc_->Cancel(); }).join();  // the watchdog's thread, in miniature
    }
    return absl::OkStatus();
  });
  EXPECT_THAT(status, StatusIs(absl::StatusCode::kCancelled, ::testing::_));
  // A cancel never leaks into the next Read.
  int64_t received = 0;
  MD_EXPECT_OK(grpc_->Read(artifact_.digest(), 0, 1000, [&](absl::string_view piece) {
    received += static_cast<int64_t>(piece.size());
    return absl::OkStatus();
  }));
  EXPECT_EQ(received, 1000);
}

}  // namespace
}  // namespace modeldist::agent
