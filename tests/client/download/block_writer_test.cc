// BlockWriter (client/download/block_writer.h) on real files: bytes land where they were
// queued, checkpoints run after the bytes before them, errors surface, and O_DIRECT is used for
// aligned blocks only on the very file the caller opened.
#include "client/download/block_writer.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <memory>
#include <string>
#include <vector>

#include "common/file_util.h"
#include "common/status.h"
#include "gtest/gtest.h"
#include "tests/testing/test_util.h"

namespace modeldist::testing {
namespace {

using client::Block;
using client::BlockWriter;

std::string Slurp(const std::string& path) {
  auto text = ReadFileToString(path);
  return text.ok() ? *text : "<missing: " + std::string(text.status().message()) + ">";
}

ScopedFd OpenForWriting(const std::string& path) {
  return ScopedFd(::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644));
}

// Queues `bytes` from `offset` in pieces of the sizes in `pieces` (cycled).
absl::Status AppendInPieces(BlockWriter& writer, int64_t offset, const std::string& bytes,
                            const std::vector<size_t>& pieces) {
  size_t done = 0;
  for (size_t i = 0; done < bytes.size(); ++i) {
    const size_t n = std::min(pieces[i % pieces.size()], bytes.size() - done);
    MD_RETURN_IF_ERROR(writer.Append(offset + static_cast<int64_t>(done),
                                     absl::string_view(bytes).substr(done, n)));
    done += n;
  }
  return absl::OkStatus();
}

// Each test writes into `path_`, opened for writing as `fd_`.
class BlockWriterTest : public ::testing::Test {
 protected:
  void SetUp() override {
    fd_ = OpenForWriting(path_);
    ASSERT_TRUE(fd_.valid());
  }

  // A writer into `fd` (by default `fd_`) named `path_`; null, with a test failure, if it
  // cannot start.
  std::unique_ptr<BlockWriter> StartWriter(bool writeback = false, int fd = -1) {
    auto started = BlockWriter::Start(fd < 0 ? fd_.get() : fd, path_, writeback);
    EXPECT_TRUE(started.ok()) << started.status();
    return started.ok() ? *std::move(started) : nullptr;
  }

  ScratchDir dir_;
  const std::string path_ = dir_.Join("out");
  ScopedFd fd_;
};

TEST_F(BlockWriterTest, PiecesOfAnySizeLandInOrder) {
  const std::string bytes = RandomBytes(3 * Block::kCapacity + 12345, 7);
  std::unique_ptr<BlockWriter> writer = StartWriter(/*writeback=*/true);
  ASSERT_NE(writer, nullptr);
  MD_ASSERT_OK(AppendInPieces(*writer, 0, bytes, {1, 4095, 300000, 7, 65536}));
  MD_ASSERT_OK(writer->Drain());
  EXPECT_EQ(Slurp(path_), bytes);
  if (writer->direct()) {
    // Three full aligned blocks; the unaligned tail goes through the page cache.
    EXPECT_EQ(writer->direct_bytes(), static_cast<int64_t>(3 * Block::kCapacity));
  }
}

TEST_F(BlockWriterTest, FlushWritesEverythingQueuedSoARewriteLandsLast) {
  // Bad bytes over several blocks, then the same range again with good ones, as a refetched
  // chunk does: with a Flush between them the good bytes win, however the workers interleave.
  const std::string bad = RandomBytes(4 * Block::kCapacity + 999, 1);
  const std::string good = RandomBytes(bad.size(), 2);
  for (int round = 0; round < 20; ++round) {
    std::unique_ptr<BlockWriter> writer = StartWriter();
    ASSERT_NE(writer, nullptr);
    MD_ASSERT_OK(AppendInPieces(*writer, 0, bad, {65536}));
    MD_ASSERT_OK(writer->Flush());
    // Flushed means on disk: the file holds every byte queued before it.
    EXPECT_TRUE(Slurp(path_) == bad) << "round " << round;
    MD_ASSERT_OK(AppendInPieces(*writer, 0, good, {65536}));
    MD_ASSERT_OK(writer->Drain());
    EXPECT_TRUE(Slurp(path_) == good) << "round " << round;
  }
}

TEST_F(BlockWriterTest, AResumedStreamIsAlignedAfterItsFirstBlock) {
  // A download resumed after 1000 verified bytes.
  const std::string bytes = RandomBytes(1000 + 8 * Block::kCapacity, 9);
  MD_ASSERT_OK(PwriteAll(fd_.get(), bytes.data(), 1000, 0, path_));
  std::unique_ptr<BlockWriter> writer = StartWriter();
  ASSERT_NE(writer, nullptr);
  MD_ASSERT_OK(AppendInPieces(*writer, 1000, bytes.substr(1000), {65536}));
  MD_ASSERT_OK(writer->Drain());
  EXPECT_EQ(Slurp(path_), bytes);
  if (!writer->direct()) GTEST_SKIP() << "no O_DIRECT in " << dir_.path();
  // [1000, kCapacity) and the 1000-byte tail are buffered; the seven blocks between are direct
  // (before the first block was cut at kCapacity, every block was unaligned and none was).
  EXPECT_EQ(writer->direct_bytes(), static_cast<int64_t>(7 * Block::kCapacity));
}

TEST_F(BlockWriterTest, DirectWritesGoOnlyToTheFileTheDescriptorNames) {
  // The name now points at another file (say, a concurrent cleanup replaced the partial).
  ASSERT_EQ(::rename(path_.c_str(), dir_.Join("moved").c_str()), 0);
  MD_ASSERT_OK(WriteFileAtomically(path_, "other", 0644));
  const std::string bytes = RandomBytes(2 * Block::kCapacity, 3);
  std::unique_ptr<BlockWriter> writer = StartWriter();
  ASSERT_NE(writer, nullptr);
  EXPECT_FALSE(writer->direct());
  MD_ASSERT_OK(AppendInPieces(*writer, 0, bytes, {Block::kCapacity}));
  MD_ASSERT_OK(writer->Drain());
  EXPECT_EQ(writer->direct_bytes(), 0);
  EXPECT_EQ(Slurp(dir_.Join("moved")), bytes);
  EXPECT_EQ(Slurp(path_), "other");
}

TEST_F(BlockWriterTest, ACheckpointRunsOnceTheBytesBeforeItAreWritten) {
  const std::string bytes = RandomBytes(4 * Block::kCapacity + 100, 5);
  const size_t before = 2 * Block::kCapacity + 50;
  std::unique_ptr<BlockWriter> writer = StartWriter();
  ASSERT_NE(writer, nullptr);
  MD_ASSERT_OK(writer->Append(0, absl::string_view(bytes).substr(0, before)));
  std::string seen;
  int runs = 0;
  writer->Checkpoint([&] {
    ++runs;
    seen.resize(before);
    ssize_t n = ::pread(fd_.get(), seen.data(), before, 0);
    seen.resize(n < 0 ? 0 : static_cast<size_t>(n));
    return absl::OkStatus();
  });
  MD_ASSERT_OK(
      writer->Append(static_cast<int64_t>(before), absl::string_view(bytes).substr(before)));
  MD_ASSERT_OK(writer->Drain());
  EXPECT_EQ(runs, 1);
  EXPECT_TRUE(seen == bytes.substr(0, before))
      << "the checkpoint ran before its bytes were written";
  EXPECT_EQ(Slurp(path_), bytes);
}

// The workers write blocks in parallel and may finish them out of order; checkpoints still
// run in the order queued, one at a time, each after every byte queued before it.
TEST_F(BlockWriterTest, CheckpointsRunInOrderEachAfterTheBytesBeforeIt) {
  constexpr int kCheckpoints = 24;
  const std::string bytes = RandomBytes(kCheckpoints * Block::kCapacity + 777, 11);
  std::unique_ptr<BlockWriter> writer = StartWriter();
  ASSERT_NE(writer, nullptr);
  std::vector<int> order;
  std::vector<int> wrong;  // checkpoints that ran before their bytes were in the file
  std::atomic<int> running{0};
  bool overlapped = false;
  size_t queued = 0;
  for (int i = 0; i < kCheckpoints; ++i) {
    // Pieces that straddle blocks, so that checkpoints fall inside them too.
    const size_t n = std::min(bytes.size() - queued, Block::kCapacity + 4096 * (i % 3));
    MD_ASSERT_OK(
        writer->Append(static_cast<int64_t>(queued), absl::string_view(bytes).substr(queued, n)));
    queued += n;
    writer->Checkpoint([&, i, before = queued] {
      if (running.fetch_add(1) != 0) overlapped = true;
      order.push_back(i);
      std::string seen(before, '\0');
      ssize_t got = ::pread(fd_.get(), seen.data(), before, 0);
      if (got != static_cast<ssize_t>(before) || seen != bytes.substr(0, before)) {
        wrong.push_back(i);
      }
      running.fetch_sub(1);
      return absl::OkStatus();
    });
  }
  MD_ASSERT_OK(
      writer->Append(static_cast<int64_t>(queued), absl::string_view(bytes).substr(queued)));
  MD_ASSERT_OK(writer->Drain());
  std::vector<int> expected(kCheckpoints);
  for (int i = 0; i < kCheckpoints; ++i) expected[i] = i;
  EXPECT_EQ(order, expected);
  EXPECT_TRUE(wrong.empty()) << wrong.size() << " checkpoints ran before their bytes, first "
                             << wrong.front();
  EXPECT_FALSE(overlapped) << "two checkpoints ran at once";
  EXPECT_EQ(Slurp(path_), bytes);
}

TEST_F(BlockWriterTest, ACheckpointErrorBecomesTheWritersErrorAndStopsLaterAppends) {
  std::unique_ptr<BlockWriter> writer = StartWriter();
  ASSERT_NE(writer, nullptr);
  MD_ASSERT_OK(writer->Append(0, "abc"));
  writer->Checkpoint([] { return absl::DataLossError("journal write failed"); });
  absl::Status status;
  // The worker fails asynchronously; Append reports it once it has happened.
  for (int i = 0; i < 10000 && status.ok(); ++i) {
    status = writer->Append(3 + i * 4096, std::string(4096, 'x'));
  }
  EXPECT_EQ(status.code(), absl::StatusCode::kDataLoss);
  EXPECT_EQ(writer->Drain().code(), absl::StatusCode::kDataLoss);
}

TEST_F(BlockWriterTest, AWriteErrorNamesTheFile) {
  ScopedFd read_only(::open(path_.c_str(), O_RDONLY | O_CLOEXEC));
  ASSERT_TRUE(read_only.valid());
  std::unique_ptr<BlockWriter> writer = StartWriter(/*writeback=*/false, read_only.get());
  ASSERT_NE(writer, nullptr);
  (void)writer->Append(1, "unaligned, so through the caller's descriptor");
  absl::Status status = writer->Drain();
  EXPECT_FALSE(status.ok());
  EXPECT_NE(status.message().find(path_), absl::string_view::npos) << status;
}

TEST_F(BlockWriterTest, AfterDrainAppendFailsAndACheckpointRunsAtOnce) {
  std::unique_ptr<BlockWriter> writer = StartWriter();
  ASSERT_NE(writer, nullptr);
  MD_ASSERT_OK(writer->Append(0, "abc"));
  MD_ASSERT_OK(writer->Drain());
  EXPECT_EQ(writer->Append(3, "def").code(), absl::StatusCode::kFailedPrecondition);
  bool ran = false;
  writer->Checkpoint([&] {
    ran = true;
    return absl::OkStatus();
  });
  EXPECT_TRUE(ran);
  MD_EXPECT_OK(writer->Drain());
  EXPECT_EQ(Slurp(path_), "abc");
}

}  // namespace
}  // namespace modeldist::testing
