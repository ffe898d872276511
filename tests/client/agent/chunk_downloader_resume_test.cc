// DownloadChunks resuming from what an earlier run left on disk: the partial file and its
// journal after an interruption or a crash, a partial hard-linked to an installed model, and
// partials that must not be trusted. Fixture and fault-injecting sources:
// chunk_downloader_fixture.h.
#include <sys/stat.h>
#include <unistd.h>

#include <string>

#include "absl/strings/str_cat.h"
#include "client/agent/chunk_downloader.h"
#include "common/file_util.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/client/agent/chunk_downloader_fixture.h"

namespace modeldist::agent {
namespace {

using ::modeldist::testing::IsOk;
using ::modeldist::testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Pair;

TEST_F(ChunkDownloaderTest, ResumesFromTheLastVerifiedChunkAfterAnInterruption) {
  options_.retry.max_attempts = 2;
  FaultySource dying(grpc_.get());
  dying.FailAfter((5 << 20) + 17);  // chunk 0 verified, chunk 1 half received
  auto first = Download({&dying});
  ASSERT_THAT(first, StatusIs(absl::StatusCode::kUnavailable, HasSubstr("injected")));
  EXPECT_EQ(Slurp(partial_).size(), static_cast<size_t>(kChunk));
  EXPECT_THAT(Slurp(partial_ + ".journal"), HasSubstr("verified_chunks 1"));
  // A write the journal never covered (say, torn by a kill -9) is dropped on resume.
  AppendToFile(partial_, "torn write");

  FaultySource recording(grpc_.get());
  auto second = Download({&recording});
  ASSERT_THAT(second, IsOk());
  EXPECT_EQ(second->chunks_reused, 1);
  EXPECT_EQ(second->chunks_fetched, 2);
  EXPECT_EQ(second->bytes_received, kSize - kChunk);
  EXPECT_THAT(recording.reads(), ElementsAre(Pair(kChunk, kSize - kChunk)));
  ExpectPartialIsTheArtifact();
}

TEST_F(ChunkDownloaderTest, CorruptJournaledChunkOnDiskIsRefetchedWithWhatFollows) {
  options_.retry.max_attempts = 1;
  FaultySource dying(grpc_.get());
  dying.FailAfter(2 * kChunk + 100);
  ASSERT_THAT(Download({&dying}), StatusIs(absl::StatusCode::kUnavailable, ::testing::_));
  ASSERT_THAT(Slurp(partial_ + ".journal"), HasSubstr("verified_chunks 2"));
  FlipByteInFile(partial_, kChunk + 4242);

  FaultySource recording(grpc_.get());
  auto stats = Download({&recording});
  ASSERT_THAT(stats, IsOk());
  EXPECT_EQ(stats->chunks_reused, 1);
  EXPECT_EQ(stats->chunks_fetched, 2);
  EXPECT_THAT(recording.reads(), ElementsAre(Pair(kChunk, kSize - kChunk)));
  ExpectPartialIsTheArtifact();
}

TEST_F(ChunkDownloaderTest, CompletePartialIsReverifiedWithoutTheNetwork) {
  ASSERT_THAT(Download({grpc_.get()}), IsOk());
  // As after a crash between the last journal write and its removal.
  ASSERT_TRUE(
      WriteFileAtomically(partial_ + ".journal",
                          absl::StrCat("modeldist-chunk-journal-v1\ndigest ", artifact_.digest(),
                                       "\nchunk_size ", kChunk, "\nverified_chunks 3\n"),
                          0644)
          .ok());
  FaultySource never(grpc_.get());
  never.FailAlways(absl::StatusCode::kUnavailable);
  auto stats = Download({&never});
  ASSERT_THAT(stats, IsOk());
  EXPECT_EQ(stats->chunks_reused, 3);
  EXPECT_EQ(stats->chunks_fetched, 0);
  EXPECT_TRUE(never.reads().empty());
  ExpectPartialIsTheArtifact();
}

// A kill between activation and the partial's removal leaves the partial as a hard link of the
// installed model file. A later download of the same digest may read it but never write it.
TEST_F(ChunkDownloaderTest, APartialLinkedToAnInstalledFileIsRepairedInACopy) {
  const std::string installed = partial_ + ".installed";
  ASSERT_TRUE(WriteFileAtomically(installed, bytes_, 0644).ok());
  FlipByteInFile(installed, kChunk + 4242);  // the installed copy rotted on disk
  const std::string rotted = Slurp(installed);
  ASSERT_EQ(::link(installed.c_str(), partial_.c_str()), 0);

  FaultySource recording(grpc_.get());
  auto stats = Download({&recording});
  ASSERT_THAT(stats, IsOk());
  EXPECT_EQ(stats->chunks_reused, 1);
  EXPECT_EQ(stats->chunks_fetched, 2);
  ExpectPartialIsTheArtifact();
  EXPECT_EQ(Slurp(installed), rotted) << "the repair wrote through the link";
  struct stat st;
  ASSERT_EQ(::stat(partial_.c_str(), &st), 0);
  EXPECT_EQ(st.st_nlink, 1u);
}

TEST_F(ChunkDownloaderTest, AnIntactPartialLinkedToAnInstalledFileIsUsedAsItIs) {
  const std::string installed = partial_ + ".installed";
  ASSERT_TRUE(WriteFileAtomically(installed, bytes_, 0644).ok());
  ASSERT_EQ(::link(installed.c_str(), partial_.c_str()), 0);
  FaultySource never(grpc_.get());
  never.FailAlways(absl::StatusCode::kUnavailable);
  auto stats = Download({&never});
  ASSERT_THAT(stats, IsOk());
  EXPECT_EQ(stats->chunks_reused, 3);
  EXPECT_TRUE(never.reads().empty());
  EXPECT_EQ(Slurp(installed), bytes_);
}

TEST_F(ChunkDownloaderTest, PartialOfAnotherArtifactIsNotTrusted) {
  // Same chunk size, another digest: the bytes may be anything, so start over.
  ASSERT_TRUE(WriteFileAtomically(partial_, bytes_.substr(0, kChunk), 0644).ok());
  ASSERT_TRUE(WriteFileAtomically(
                  partial_ + ".journal",
                  absl::StrCat("modeldist-chunk-journal-v1\ndigest sha256:", std::string(64, 'a'),
                               "\nchunk_size ", kChunk, "\nverified_chunks 1\n"),
                  0644)
                  .ok());
  auto stats = Download({grpc_.get()});
  ASSERT_THAT(stats, IsOk());
  EXPECT_EQ(stats->chunks_reused, 0);
  EXPECT_EQ(stats->chunks_fetched, 3);
  ExpectPartialIsTheArtifact();
}

// Moved from the DownloadArtifact tests (that downloader is gone): a partial longer than the
// artifact, without a journal, cannot be a prefix of it.
TEST_F(ChunkDownloaderTest, APartialLongerThanTheArtifactIsNotTrusted) {
  ASSERT_TRUE(WriteFileAtomically(partial_, bytes_ + "trailing", 0644).ok());
  auto stats = Download({grpc_.get()});
  ASSERT_THAT(stats, IsOk());
  EXPECT_EQ(stats->chunks_reused, 0);
  EXPECT_EQ(stats->chunks_fetched, 3);
  ExpectPartialIsTheArtifact();
}

}  // namespace
}  // namespace modeldist::agent
