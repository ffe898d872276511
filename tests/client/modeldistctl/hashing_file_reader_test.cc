// HashingFileReader: the read-ahead thread hands out the file's bytes in order and in pieces of
// any size, from the page cache or straight from the disk, with the digest of what it handed out.
#include "client/modeldistctl/hashing_file_reader.h"

#include <fcntl.h>
#include <unistd.h>

#include <fstream>
#include <string>

#include "absl/status/status.h"
#include "common/digest.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/test_util.h"

namespace modeldist::ctl {
namespace {

using ::modeldist::testing::IsOk;
using ::modeldist::testing::RandomBytes;
using ::modeldist::testing::ScratchDir;
using ::modeldist::testing::StatusIs;
using ::testing::HasSubstr;

// Over three read-ahead blocks of 4 MiB and a part, so that blocks are reused.
constexpr size_t kSize = (13 << 20) + 12345;

class HashingFileReaderTest : public ::testing::Test {
 protected:
  void SetUp() override {
    contents_ = RandomBytes(kSize, 7);
    path_ = dir_.Join("model.gguf");
    std::ofstream(path_, std::ios::binary) << contents_;
  }

  // Drops the file's pages from the page cache, so that the reader goes to the disk (O_DIRECT
  // where the file system allows it).
  void Evict() {
    const int fd = ::open(path_.c_str(), O_RDONLY | O_CLOEXEC);
    ASSERT_GE(fd, 0);
    ::fdatasync(fd);
    ::posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
    ::close(fd);
  }

  // Reads the whole file in pieces of `piece` bytes and checks bytes, digest and count.
  void ReadInPieces(int64_t piece) {
    absl::StatusOr<HashingFileReader> file = HashingFileReader::Open(path_);
    ASSERT_THAT(file, IsOk());
    std::string got;
    std::string buffer;
    while (!file->at_end()) {
      ASSERT_THAT(file->ReadNext(piece, &buffer), IsOk());
      got += buffer;
    }
    EXPECT_EQ(got.size(), contents_.size());
    EXPECT_TRUE(got == contents_);
    EXPECT_EQ(file->DigestHex(), Sha256::HexOf(contents_));
    EXPECT_EQ(file->bytes_read(), static_cast<int64_t>(kSize));
    EXPECT_THAT(file->CheckUnchanged(), IsOk());
  }

  ScratchDir dir_;
  std::string path_;
  std::string contents_;
};

TEST_F(HashingFileReaderTest, ReadsFromThePageCacheInPiecesOfAnySize) {
  ReadInPieces(1 << 20);
  ReadInPieces((1 << 20) + 4097);
  ReadInPieces(12345);
}

TEST_F(HashingFileReaderTest, ReadsFromTheDiskInPiecesOfAnySize) {
  Evict();
  ReadInPieces(1 << 20);
  Evict();
  ReadInPieces((3 << 20) + 1);
}

TEST_F(HashingFileReaderTest, SkipToHashesThePrefixAndTheRestFollows) {
  absl::StatusOr<HashingFileReader> file = HashingFileReader::Open(path_);
  ASSERT_THAT(file, IsOk());
  ASSERT_THAT(file->SkipTo((5 << 20) + 3), IsOk());
  EXPECT_EQ(file->position(), (5 << 20) + 3);
  std::string buffer;
  ASSERT_THAT(file->ReadNext(100, &buffer), IsOk());
  EXPECT_EQ(buffer, contents_.substr((5 << 20) + 3, 100));
  ASSERT_THAT(file->ReadToEnd(), IsOk());
  EXPECT_EQ(file->DigestHex(), Sha256::HexOf(contents_));
  // A lost range comes again from the file, without touching the hash.
  ASSERT_THAT(file->Reread(4 << 20, 1 << 20, &buffer), IsOk());
  EXPECT_EQ(buffer, contents_.substr(4 << 20, 1 << 20));
  EXPECT_EQ(file->DigestHex(), Sha256::HexOf(contents_));
  EXPECT_EQ(file->bytes_read(), static_cast<int64_t>(kSize) + (1 << 20));
}

TEST_F(HashingFileReaderTest, AFileThatShrinksWhileReadEndsEarlyWithALocalError) {
  absl::StatusOr<HashingFileReader> file = HashingFileReader::Open(path_);
  ASSERT_THAT(file, IsOk());
  ASSERT_EQ(::truncate(path_.c_str(), 6 << 20), 0);
  Evict();
  std::string buffer;
  absl::Status status;
  while (status.ok() && !file->at_end()) status = file->ReadNext(1 << 20, &buffer);
  EXPECT_THAT(status, StatusIs(absl::StatusCode::kDataLoss, HasSubstr("ended at byte")));
  EXPECT_EQ(file->position(), 6 << 20);
}

}  // namespace
}  // namespace modeldist::ctl
