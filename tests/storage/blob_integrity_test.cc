// The blob store's integrity side: the recorded size in the sidecar, ServedBytesCheck (what a
// Read stream checks before bytes go out, and when it may skip hashing), Verify (the scrub's
// read from disk), Quarantine and Evict.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/digest.h"
#include "common/file_util.h"
#include "common/status.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "storage/blob_record.h"
#include "storage/blob_store.h"
#include "storage/served_bytes_check.h"
#include "tests/testing/test_util.h"

namespace modeldist::storage {
namespace {

using ::modeldist::testing::DamageFile;
using ::modeldist::testing::FileDamage;
using ::modeldist::testing::IsOk;
using ::modeldist::testing::IsOkAndHolds;
using ::modeldist::testing::RandomBytes;
using ::modeldist::testing::ScratchDir;
using ::testing::HasSubstr;

constexpr int64_t kMiB = 1 << 20;
constexpr int64_t kChunk = kChunkDigestBytes;

class BlobIntegrityTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto store = BlobStore::Open(dir_.path());
    ASSERT_THAT(store, IsOk());
    store_ = *std::move(store);
    ASSERT_THAT(store_->Put(hex_, data_), IsOk());
  }

  // Flips a bit of one byte of the stored blob behind the store's back.
  void Flip(int64_t at) { DamageFile(store_->BlobPath(hex_), FileDamage::kFlip, at); }

  // Serves [offset, end) through a ServedBytesCheck as a Read stream would, in messages of
  // up to 1 MiB, each claimed to come from the page cache or not; returns the first failure
  // and how many bytes were let out before it.
  absl::Status Serve(const BlobReader& blob, int64_t offset, int64_t end, bool from_cache,
                     int64_t* sent, std::string* bytes = nullptr) {
    ServedBytesCheck check(&blob);
    *sent = 0;
    while (offset < end) {
      const int64_t stop = std::min(end, check.MessageEnd(offset, kMiB));
      std::string message(static_cast<size_t>(stop - offset), '\0');
      auto got = blob.ReadAt(offset, message.data(), message.size());
      if (!got.ok()) return got.status();
      message.resize(*got);
      MD_RETURN_IF_ERROR(check.Check(offset, message, from_cache, end));
      if (bytes != nullptr) bytes->append(message);
      *sent += static_cast<int64_t>(message.size());
      offset = stop;
    }
    return absl::OkStatus();
  }

  ScratchDir dir_;
  std::unique_ptr<BlobStore> store_;
  const std::string data_ = RandomBytes(2 * kChunk + 999, 31);
  const std::string hex_ = Sha256::HexOf(data_);
};

TEST_F(BlobIntegrityTest, SidecarRoundTripsAndRefusesOtherLayouts) {
  const std::string chain(64, 'c');
  const std::string raw = EncodeChainSidecar(kChunk + 1, chain);
  auto decoded = DecodeChainSidecar(raw);
  ASSERT_TRUE(decoded.has_value());
  EXPECT_EQ(decoded->size, kChunk + 1);
  EXPECT_EQ(decoded->chain, chain);
  EXPECT_FALSE(DecodeChainSidecar(chain).has_value()) << "the entries alone: an older layout";
  EXPECT_FALSE(DecodeChainSidecar(EncodeChainSidecar(kChunk + 1, chain.substr(32))).has_value());
  EXPECT_FALSE(DecodeChainSidecar(EncodeChainSidecar(2 * kChunk + 1, chain)).has_value());
  EXPECT_FALSE(DecodeChainSidecar(raw.substr(0, 15)).has_value());
}

TEST_F(BlobIntegrityTest, StoringMarksEveryChunkVerifiedForThisProcess) {
  // The upload hashed exactly the bytes written; a store opened later knows nothing of that.
  auto blob = store_->OpenBlob(hex_);
  ASSERT_THAT(blob, IsOk());
  for (int64_t i = 0; i < 3; ++i) EXPECT_TRUE(blob->record().verified(i)) << i;
  auto reopened = BlobStore::Open(dir_.path());
  ASSERT_THAT(reopened, IsOk());
  auto fresh = (*reopened)->OpenBlob(hex_);
  ASSERT_THAT(fresh, IsOk());
  for (int64_t i = 0; i < 3; ++i) EXPECT_FALSE(fresh->record().verified(i)) << i;
}

TEST_F(BlobIntegrityTest, ACleanReadPassesAndMarksEveryChunkVerified) {
  store_.reset();
  auto reopened = BlobStore::Open(dir_.path());  // nothing verified in this "process"
  ASSERT_THAT(reopened, IsOk());
  store_ = *std::move(reopened);
  ASSERT_FALSE(store_->OpenBlob(hex_)->record().verified(0));
  auto blob = store_->OpenBlob(hex_);
  ASSERT_THAT(blob, IsOk());
  int64_t sent = 0;
  std::string bytes;
  ASSERT_THAT(Serve(*blob, 0, blob->size(), /*from_cache=*/false, &sent, &bytes), IsOk());
  EXPECT_EQ(bytes, data_);
  for (int64_t i = 0; i < 3; ++i) EXPECT_TRUE(blob->record().verified(i)) << i;
  // A second reader shares what this process verified.
  auto again = store_->OpenBlob(hex_);
  ASSERT_THAT(again, IsOk());
  EXPECT_TRUE(again->record().verified(2));
}

TEST_F(BlobIntegrityTest, AFlippedByteFailsBeforeItsChunkIsComplete) {
  Flip(kChunk + 3 * kMiB + 17);  // inside chunk 1's last MiB
  auto blob = store_->OpenBlob(hex_);
  ASSERT_THAT(blob, IsOk());
  int64_t sent = 0;
  absl::Status s = Serve(*blob, 0, blob->size(), /*from_cache=*/false, &sent);
  EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss) << s;
  EXPECT_EQ(ErrorReason(s), "BLOB_CORRUPT");
  EXPECT_THAT(s.message(), HasSubstr("chunk 1 of 3"));
  EXPECT_EQ(sent, kChunk + 3 * kMiB) << "chunk 0 whole, chunk 1 all but its last message";
  EXPECT_TRUE(blob->record().verified(0));
  EXPECT_FALSE(blob->record().verified(1));
}

TEST_F(BlobIntegrityTest, VerifiedChunksSkipHashingOnlyForBytesFromThePageCache) {
  auto blob = store_->OpenBlob(hex_);
  ASSERT_THAT(blob, IsOk());
  int64_t sent = 0;
  ASSERT_THAT(Serve(*blob, 0, blob->size(), false, &sent), IsOk());

  // Wrong bytes for a verified chunk: passed when they are said to come from the page cache
  // (the pages that were checked), caught when they come from the disk.
  const std::string wrong(static_cast<size_t>(kMiB), 'w');
  ServedBytesCheck cached(&*blob);
  EXPECT_TRUE(cached.CanSkip(kChunk, /*from_cache=*/true));
  EXPECT_FALSE(cached.CanSkip(kChunk, /*from_cache=*/false));
  for (int64_t at = kChunk; at < 2 * kChunk; at += kMiB) {
    EXPECT_THAT(cached.Check(at, wrong, /*from_cache=*/true, blob->size()), IsOk());
  }
  ServedBytesCheck disk(&*blob);
  absl::Status s;
  for (int64_t at = kChunk; at < 2 * kChunk && s.ok(); at += kMiB) {
    s = disk.Check(at, wrong, /*from_cache=*/false, blob->size());
  }
  EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss);

  // A chunk trusted so far whose next bytes come from the disk is hashed from its start
  // again (reading the part already sent from the file): the right bytes pass.
  ServedBytesCheck mixed(&*blob);
  const absl::string_view good(data_);
  EXPECT_THAT(mixed.Check(kChunk, wrong, /*from_cache=*/true, blob->size()), IsOk());
  for (int64_t at = kChunk + kMiB; at < 2 * kChunk; at += kMiB) {
    EXPECT_THAT(mixed.Check(at, good.substr(at, kMiB), /*from_cache=*/false, blob->size()), IsOk());
  }
}

TEST_F(BlobIntegrityTest, AChangedFileForgetsWhatWasVerified) {
  {
    auto blob = store_->OpenBlob(hex_);
    ASSERT_THAT(blob, IsOk());
    int64_t sent = 0;
    ASSERT_THAT(Serve(*blob, 0, blob->size(), false, &sent), IsOk());
  }
  Flip(5);
  auto blob = store_->OpenBlob(hex_);
  ASSERT_THAT(blob, IsOk());
  EXPECT_FALSE(blob->record().verified(0)) << "a write changes mtime and ctime";
  int64_t sent = 0;
  // Every byte from the page cache, and still checked: nothing verified this file.
  absl::Status s = Serve(*blob, 0, blob->size(), /*from_cache=*/true, &sent);
  EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss) << s;
  EXPECT_EQ(sent, 3 * kMiB);
}

TEST_F(BlobIntegrityTest, PartialReadsCheckTheWholeChunk) {
  Flip(kChunk - 1);
  auto blob = store_->OpenBlob(hex_);
  ASSERT_THAT(blob, IsOk());
  int64_t sent = 0;
  EXPECT_EQ(Serve(*blob, 0, 10, false, &sent).code(), absl::StatusCode::kDataLoss);
  EXPECT_EQ(sent, 0);
  EXPECT_EQ(Serve(*blob, 100, 200, false, &sent).code(), absl::StatusCode::kDataLoss);
  EXPECT_EQ(sent, 0);
  // Chunk 1 is intact: a read inside it passes.
  std::string bytes;
  ASSERT_THAT(Serve(*blob, kChunk + 5, kChunk + 500, false, &sent, &bytes), IsOk());
  EXPECT_EQ(bytes, data_.substr(kChunk + 5, 495));
}

TEST_F(BlobIntegrityTest, SizeIsTheRecordedOne) {
  const std::string path = store_->BlobPath(hex_);
  ASSERT_EQ(::chmod(path.c_str(), 0644), 0);
  ASSERT_EQ(::truncate(path.c_str(), static_cast<off_t>(data_.size() - 1)), 0);
  for (auto status : {store_->Size(hex_).status(), store_->OpenBlob(hex_).status(),
                      store_->ChunkChain(hex_).status(), store_->Verify(hex_)}) {
    EXPECT_EQ(status.code(), absl::StatusCode::kDataLoss) << status;
    EXPECT_EQ(ErrorReason(status), "BLOB_SIZE_MISMATCH");
  }
}

TEST_F(BlobIntegrityTest, VerifyReadsTheDiskAndFindsTheBadChunk) {
  EXPECT_THAT(store_->Verify(hex_), IsOk());
  Flip(2 * kChunk + 10);
  absl::Status s = store_->Verify(hex_);
  EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss) << s;
  EXPECT_THAT(s.message(), HasSubstr("chunk 2 of 3"));
  int64_t read = 0;
  absl::Status stopped = store_->Verify(hex_, [&](int64_t n) {
    read += n;
    return false;
  });
  EXPECT_EQ(stopped.code(), absl::StatusCode::kCancelled);
  EXPECT_EQ(read, kMiB) << "stopped after its first read";
}

TEST_F(BlobIntegrityTest, VerifyRepairsADamagedSidecarInsteadOfBlamingGoodBytes) {
  const std::string chain_path = store_->BlobPath(hex_) + ".chain";
  ASSERT_EQ(::chmod(chain_path.c_str(), 0644), 0);
  int fd = ::open(chain_path.c_str(), O_RDWR);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::pwrite(fd, "\xff\xff", 2, 16), 2);  // inside entry 0, past the header
  ::close(fd);
  auto fresh = BlobStore::Open(dir_.path());  // what it read before is not in memory here
  ASSERT_THAT(fresh, IsOk());
  {
    auto blob = (*fresh)->OpenBlob(hex_);
    ASSERT_THAT(blob, IsOk());
    int64_t sent = 0;
    EXPECT_EQ(Serve(*blob, 0, kMiB, false, &sent).code(), absl::StatusCode::kDataLoss)
        << "a served chunk is checked against the (damaged) record";
  }
  EXPECT_THAT((*fresh)->Verify(hex_), IsOk()) << "the bytes hash to their name";
  auto blob = (*fresh)->OpenBlob(hex_);
  ASSERT_THAT(blob, IsOk());
  int64_t sent = 0;
  EXPECT_THAT(Serve(*blob, 0, blob->size(), false, &sent), IsOk()) << "the sidecar was rewritten";
}

TEST_F(BlobIntegrityTest, QuarantineMovesTheBlobAsideAndKeepsIt) {
  const std::string other = RandomBytes(1000, 32);
  ASSERT_THAT(store_->Put(Sha256::HexOf(other), other), IsOk());
  ASSERT_THAT(store_->ListBlobs(), IsOk());
  EXPECT_EQ(store_->ListBlobs()->size(), 2u);
  ASSERT_THAT(store_->Quarantine(hex_, "chunk 1 is bad"), IsOk());
  EXPECT_FALSE(store_->Contains(hex_));
  EXPECT_TRUE(store_->WasQuarantined(hex_));
  EXPECT_EQ(*store_->ListBlobs(), std::vector<std::string>{Sha256::HexOf(other)});
  absl::Status gone = store_->OpenBlob(hex_).status();
  EXPECT_EQ(gone.code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(ErrorReason(gone), "BLOB_QUARANTINED");
  std::vector<std::string> kept;
  for (const auto& e : std::filesystem::directory_iterator(dir_.Join("quarantine/" + hex_))) {
    kept.push_back(e.path().filename().string());
  }
  ASSERT_EQ(kept.size(), 3u) << "the blob, its sidecar and the reason";
  std::sort(kept.begin(), kept.end());
  auto bytes = ReadFileToString(dir_.Join("quarantine/" + hex_ + "/" + kept[0]));
  ASSERT_THAT(bytes, IsOk());
  EXPECT_EQ(*bytes, data_);
  auto reason = ReadFileToString(dir_.Join("quarantine/" + hex_ + "/" + kept[0] + ".reason"));
  ASSERT_THAT(reason, IsOk());
  EXPECT_THAT(*reason, HasSubstr("chunk 1 is bad"));
  // Storing the bytes again makes it a blob like any other.
  ASSERT_THAT(store_->Put(hex_, data_), IsOk());
  EXPECT_THAT(store_->Verify(hex_), IsOk());
}

TEST_F(BlobIntegrityTest, EvictRemovesTheBlobAndItsSidecarWhileOpenReadersKeepReading) {
  ASSERT_THAT(store_->ChunkChain(hex_), IsOk());
  auto reader = store_->OpenBlob(hex_);
  ASSERT_THAT(reader, IsOk());
  ASSERT_THAT(store_->Evict(hex_), IsOk());
  EXPECT_FALSE(store_->Contains(hex_));
  EXPECT_FALSE(store_->WasQuarantined(hex_));  // not damage: nothing kept aside
  EXPECT_TRUE(IsNotStored(store_->Size(hex_).status()));
  EXPECT_TRUE(IsNotStored(store_->OpenBlob(hex_).status()));
  struct stat st;
  EXPECT_NE(::stat((store_->BlobPath(hex_) + ".chain").c_str(), &st), 0) << "sidecar left";
  EXPECT_TRUE(store_->ListBlobs()->empty());
  std::string bytes(data_.size(), '\0');
  EXPECT_THAT(reader->ReadAt(0, bytes.data(), bytes.size()), IsOkAndHolds(data_.size()));
  EXPECT_TRUE(bytes == data_);
  EXPECT_THAT(store_->Evict(hex_), IsOk());  // nothing left to evict
  EXPECT_EQ(store_->Evict("not-a-digest").code(), absl::StatusCode::kInvalidArgument);
  // Stored again (read through), it is a blob like any other.
  ASSERT_THAT(store_->Put(hex_, data_), IsOk());
  EXPECT_THAT(store_->Verify(hex_), IsOk());
}

TEST_F(BlobIntegrityTest, OnlyVerifiedCachedUnchangedBytesGoZeroCopy) {
  // The store that wrote the blob hashed it as it came: its chunks count as matched. A store
  // opened anew (a restarted server) knows nothing matched yet.
  auto written = store_->OpenBlob(hex_);
  ASSERT_THAT(written, IsOk());
  EXPECT_TRUE(TrustedSendFd(*written, 0, written->size()).has_value());
  auto reopened = BlobStore::Open(dir_.path());
  ASSERT_THAT(reopened, IsOk());
  auto blob = (*reopened)->OpenBlob(hex_);
  ASSERT_THAT(blob, IsOk());
  // Nothing matched in this process yet: every byte goes through the check.
  EXPECT_FALSE(TrustedSendFd(*blob, 0, blob->size()).has_value());
  int64_t sent = 0;
  ASSERT_THAT(Serve(*blob, 0, kChunk, false, &sent), IsOk());  // chunk 0 matches
  // Chunk 0 may go with sendfile, once its pages are cached (the check just read them); a
  // range reaching into chunk 1, which never matched, may not.
  std::optional<ScopedFd> fd = TrustedSendFd(*blob, 10, kChunk - 10);
  ASSERT_TRUE(fd.has_value());
  std::string head(100, '\0');
  ASSERT_EQ(::pread(fd->get(), head.data(), head.size(), 10), 100);
  EXPECT_EQ(head, data_.substr(10, 100));  // the blob's own file
  EXPECT_FALSE(TrustedSendFd(*blob, kChunk - 10, 20).has_value());
  // Pages the kernel dropped would be read from the disk, unhashed: not zero-copy.
  ASSERT_EQ(::posix_fadvise(fd->get(), 0, 0, POSIX_FADV_DONTNEED), 0);
  if (!blob->Resident(0, kChunk)) {
    EXPECT_FALSE(TrustedSendFd(*blob, 0, kChunk).has_value());
  }
  // A changed file forgets what matched.
  ASSERT_THAT(Serve(*blob, 0, blob->size(), false, &sent), IsOk());
  Flip(kChunk + 5);
  EXPECT_FALSE(TrustedSendFd(*blob, 0, kChunk).has_value());
  // Out of bounds and empty ranges never are.
  EXPECT_FALSE(TrustedSendFd(*blob, 0, 0).has_value());
  EXPECT_FALSE(TrustedSendFd(*blob, blob->size() - 1, 2).has_value());
}

}  // namespace
}  // namespace modeldist::storage
