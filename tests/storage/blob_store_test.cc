// The blob store, uploads by digest and reads: Put, resumable Append/Finish (also across a
// restart), the checks on offsets, sizes and digests, concurrent uploaders, BlobReader, and
// what Open keeps and removes. Chains: blob_chain_test.cc; sessions: upload_session_test.cc.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/digest.h"
#include "common/file_util.h"
#include "common/status.h"
#include "tests/storage/blob_store_fixture.h"

namespace modeldist::storage {
namespace {

using ::modeldist::testing::IsOk;
using ::modeldist::testing::IsOkAndHolds;
using ::modeldist::testing::RandomBytes;
using ::modeldist::testing::StatusIs;
using ::testing::_;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

TEST_F(BlobStoreTest, PutThenOpenReturnsTheSameBytes) {
  const std::string data = "hello, models";
  const std::string hex = Sha256::HexOf(data);
  EXPECT_FALSE(store_->Contains(hex));

  ASSERT_THAT(store_->Put(hex, data), IsOk());

  EXPECT_TRUE(store_->Contains(hex));
  EXPECT_THAT(store_->Size(hex), IsOkAndHolds(13));
  EXPECT_EQ(ReadAll(*store_, hex), data);
  EXPECT_EQ(store_->BlobPath(hex),
            dir_.Join(absl::StrCat("blobs/sha256/", hex.substr(0, 2), "/", hex)));
}

TEST_F(BlobStoreTest, PutOfAStoredBlobIsANoOpButStillChecksTheBytes) {
  const std::string data = "same bytes";
  const std::string hex = Sha256::HexOf(data);
  ASSERT_THAT(store_->Put(hex, data), IsOk());
  EXPECT_THAT(store_->Put(hex, data), IsOk());
  EXPECT_THAT(store_->Put(hex, "other bytes"), StatusIs(absl::StatusCode::kDataLoss, _));
  EXPECT_EQ(ReadAll(*store_, hex), data);
}

TEST_F(BlobStoreTest, PutOfWrongBytesStoresNothing) {
  const std::string hex = Sha256::HexOf("the real bytes");
  absl::Status status = store_->Put(hex, "forged bytes");
  EXPECT_THAT(status, StatusIs(absl::StatusCode::kDataLoss, HasSubstr(hex)));
  EXPECT_EQ(ErrorReason(status), "DIGEST_MISMATCH");
  EXPECT_FALSE(store_->Contains(hex));
  EXPECT_THAT(FilesUnder(dir_.path()), IsEmpty());
}

TEST_F(BlobStoreTest, MissingBlobIsNotFound) {
  const std::string hex = Sha256::HexOf("never stored");
  EXPECT_THAT(store_->Size(hex), StatusIs(absl::StatusCode::kNotFound, HasSubstr(hex)));
  EXPECT_THAT(store_->OpenBlob(hex), StatusIs(absl::StatusCode::kNotFound, _));
}

TEST_F(BlobStoreTest, ResumableUploadInSeveralAppends) {
  const std::string data = RandomBytes(10000, 7);
  const std::string hex = Sha256::HexOf(data);
  const int64_t size = static_cast<int64_t>(data.size());
  EXPECT_THAT(store_->UploadOffset(hex, size), IsOkAndHolds(0));

  int64_t off = 0;
  for (int64_t chunk : {1, 999, 4000, 5000}) {
    ASSERT_THAT(store_->Append(hex, size, off, data.substr(off, chunk)), IsOk());
    off += chunk;
    EXPECT_THAT(store_->UploadOffset(hex, size), IsOkAndHolds(off));
  }
  EXPECT_FALSE(store_->Contains(hex));  // not before Finish
  ASSERT_THAT(store_->Finish(hex, size), IsOk());

  EXPECT_EQ(ReadAll(*store_, hex), data);
  EXPECT_FALSE(Exists(PartialPath(hex)));
  EXPECT_THAT(store_->UploadOffset(hex, size), IsOkAndHolds(size));
}

TEST_F(BlobStoreTest, UploadResumesAfterRestart) {
  const std::string data = RandomBytes(300000, 3);
  const std::string hex = Sha256::HexOf(data);
  const int64_t size = static_cast<int64_t>(data.size());
  ASSERT_THAT(store_->Append(hex, size, 0, data.substr(0, 123456)), IsOk());
  store_.reset();  // the "server" stops; only the partial file survives

  std::unique_ptr<BlobStore> restarted = OpenStore(dir_.path());
  ASSERT_NE(restarted, nullptr);
  EXPECT_THAT(restarted->UploadOffset(hex, size), IsOkAndHolds(123456));
  EXPECT_THAT(restarted->Append(hex, size, 0, data.substr(0, 10)),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("123456")));
  ASSERT_THAT(restarted->Append(hex, size, 123456, data.substr(123456)), IsOk());
  // Finish verifies the hash rebuilt from the partial plus the bytes appended afterwards.
  ASSERT_THAT(restarted->Finish(hex, size), IsOk());
  EXPECT_EQ(ReadAll(*restarted, hex), data);
}

TEST_F(BlobStoreTest, CorruptPartialFoundAfterRestartFailsVerification) {
  const std::string data = RandomBytes(5000, 4);
  const std::string hex = Sha256::HexOf(data);
  ASSERT_THAT(store_->Append(hex, 5000, 0, data.substr(0, 2000)), IsOk());
  store_.reset();
  // Flip a byte while the server is down.
  std::string partial = PartialPath(hex);
  {
    FILE* f = fopen(partial.c_str(), "r+b");
    ASSERT_NE(f, nullptr);
    ASSERT_EQ(fseek(f, 10, SEEK_SET), 0);
    fputc(data[10] ^ 0x01, f);
    fclose(f);
  }
  std::unique_ptr<BlobStore> restarted = OpenStore(dir_.path());
  ASSERT_THAT(restarted->Append(hex, 5000, 2000, data.substr(2000)), IsOk());
  absl::Status status = restarted->Finish(hex, 5000);
  EXPECT_THAT(status, StatusIs(absl::StatusCode::kDataLoss, _));
  EXPECT_EQ(ErrorReason(status), "DIGEST_MISMATCH");
  EXPECT_FALSE(restarted->Contains(hex));
}

TEST_F(BlobStoreTest, WrongOffsetStatesTheCommittedSize) {
  const std::string data = RandomBytes(100, 5);
  const std::string hex = Sha256::HexOf(data);
  ASSERT_THAT(store_->Append(hex, 100, 0, data.substr(0, 40)), IsOk());

  for (int64_t bad : {0, 39, 41, 100}) {
    absl::Status status = store_->Append(hex, 100, bad, data.substr(40, 10));
    EXPECT_THAT(status,
                StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("committed 40 bytes")))
        << "offset " << bad;
    EXPECT_EQ(ErrorReason(status), "WRONG_OFFSET");
    EXPECT_EQ(ErrorMetadataValue(status, "committed_size"), "40");
  }
  // Rejected writes left nothing behind: the upload continues at 40 and verifies.
  EXPECT_THAT(store_->UploadOffset(hex, 100), IsOkAndHolds(40));
  ASSERT_THAT(store_->Append(hex, 100, 40, data.substr(40)), IsOk());
  EXPECT_THAT(store_->Finish(hex, 100), IsOk());
}

TEST_F(BlobStoreTest, AppendBeyondTheExpectedSizeIsRejected) {
  const std::string data = RandomBytes(100, 6);
  const std::string hex = Sha256::HexOf(data);
  ASSERT_THAT(store_->Append(hex, 100, 0, data.substr(0, 90)), IsOk());

  absl::Status status = store_->Append(hex, 100, 90, data.substr(90) + "x");
  EXPECT_THAT(status, StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("exceeds")));
  EXPECT_EQ(ErrorReason(status), "TOO_MANY_BYTES");
  EXPECT_THAT(store_->UploadOffset(hex, 100), IsOkAndHolds(90));
  ASSERT_THAT(store_->Append(hex, 100, 90, data.substr(90)), IsOk());
  EXPECT_THAT(store_->Finish(hex, 100), IsOk());
}

TEST_F(BlobStoreTest, NegativeSizeIsRejected) {
  const std::string hex = Sha256::HexOf("x");
  EXPECT_THAT(store_->Append(hex, -1, 0, "x"), StatusIs(absl::StatusCode::kInvalidArgument, _));
  EXPECT_THAT(store_->Finish(hex, -1), StatusIs(absl::StatusCode::kInvalidArgument, _));
  EXPECT_THAT(store_->UploadOffset(hex, -1), StatusIs(absl::StatusCode::kInvalidArgument, _));
}

TEST_F(BlobStoreTest, DigestMismatchDiscardsTheUpload) {
  const std::string data = RandomBytes(4096, 8);
  const std::string hex = Sha256::HexOf("something else entirely");
  ASSERT_THAT(store_->Append(hex, 4096, 0, data), IsOk());
  ASSERT_TRUE(Exists(PartialPath(hex)));

  absl::Status status = store_->Finish(hex, 4096);
  EXPECT_THAT(status, StatusIs(absl::StatusCode::kDataLoss, HasSubstr(Sha256::HexOf(data))));
  EXPECT_EQ(ErrorReason(status), "DIGEST_MISMATCH");

  EXPECT_FALSE(store_->Contains(hex));
  EXPECT_THAT(FilesUnder(dir_.Join("blobs")), IsEmpty());
  EXPECT_FALSE(Exists(PartialPath(hex)));
  // The next upload starts over.
  EXPECT_THAT(store_->UploadOffset(hex, 4096), IsOkAndHolds(0));
}

TEST_F(BlobStoreTest, SizeMismatchDiscardsTheUpload) {
  const std::string data = RandomBytes(1000, 9);
  const std::string hex = Sha256::HexOf(data);
  ASSERT_THAT(store_->Append(hex, 1000, 0, data.substr(0, 999)), IsOk());

  absl::Status status = store_->Finish(hex, 1000);
  EXPECT_THAT(status, StatusIs(absl::StatusCode::kDataLoss, HasSubstr("999 bytes")));
  EXPECT_EQ(ErrorReason(status), "SIZE_MISMATCH");
  EXPECT_FALSE(store_->Contains(hex));
  EXPECT_FALSE(Exists(PartialPath(hex)));
  EXPECT_THAT(FilesUnder(dir_.Join("blobs")), IsEmpty());

  // A full upload afterwards succeeds from offset 0.
  EXPECT_THAT(Upload(*store_, hex, data, 300), IsOk());
}

TEST_F(BlobStoreTest, FinishWithoutAnyUploadIsSizeMismatch) {
  const std::string hex = Sha256::HexOf("not uploaded");
  absl::Status status = store_->Finish(hex, 12);
  EXPECT_THAT(status, StatusIs(absl::StatusCode::kDataLoss, _));
  EXPECT_EQ(ErrorReason(status), "SIZE_MISMATCH");
  EXPECT_THAT(FilesUnder(dir_.path()), IsEmpty());
}

TEST_F(BlobStoreTest, EmptyBlobCanBeStored) {
  const std::string hex = Sha256::HexOf("");
  ASSERT_THAT(store_->Finish(hex, 0), IsOk());
  EXPECT_THAT(store_->Size(hex), IsOkAndHolds(0));
  EXPECT_EQ(ReadAll(*store_, hex), "");
}

TEST_F(BlobStoreTest, FinishTwiceSucceedsAndAppendAfterwardsIsAlreadyExists) {
  const std::string data = RandomBytes(500, 10);
  const std::string hex = Sha256::HexOf(data);
  ASSERT_THAT(Upload(*store_, hex, data, 500), IsOk());

  EXPECT_THAT(store_->Finish(hex, 500), IsOk());
  absl::Status status = store_->Append(hex, 500, 0, data);
  EXPECT_THAT(status, StatusIs(absl::StatusCode::kAlreadyExists, HasSubstr(hex)));
  EXPECT_EQ(ErrorReason(status), "BLOB_EXISTS");
  // The refused Append must not have started a new partial.
  EXPECT_FALSE(Exists(PartialPath(hex)));
  EXPECT_EQ(ReadAll(*store_, hex), data);
}

TEST_F(BlobStoreTest, StoredBlobWithADifferentClaimedSizeIsRejected) {
  const std::string data = "twelve bytes";
  const std::string hex = Sha256::HexOf(data);
  ASSERT_THAT(store_->Put(hex, data), IsOk());
  EXPECT_THAT(store_->UploadOffset(hex, 13),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("12 bytes")));
  EXPECT_THAT(store_->Finish(hex, 13), StatusIs(absl::StatusCode::kInvalidArgument, _));
}

TEST_F(BlobStoreTest, InvalidHexNeverReachesTheFileSystem) {
  const std::string good = Sha256::HexOf("x");
  std::string upper = good;
  upper[0] = 'A';
  for (const std::string& bad :
       {std::string("../../etc"), std::string(""), good.substr(1), good + "0", upper,
        FormatDigest(good), "../" + std::string(61, 'a'), std::string(63, 'a') + "/",
        std::string(62, 'a') + std::string("\0a", 2)}) {
    SCOPED_TRACE(bad);
    EXPECT_FALSE(store_->Contains(bad));
    EXPECT_THAT(store_->Size(bad), StatusIs(absl::StatusCode::kInvalidArgument, _));
    EXPECT_THAT(store_->OpenBlob(bad), StatusIs(absl::StatusCode::kInvalidArgument, _));
    EXPECT_THAT(store_->UploadOffset(bad, 1), StatusIs(absl::StatusCode::kInvalidArgument, _));
    absl::Status status = store_->Append(bad, 1, 0, "x");
    EXPECT_THAT(status, StatusIs(absl::StatusCode::kInvalidArgument, _));
    EXPECT_EQ(ErrorReason(status), "INVALID_DIGEST");
    EXPECT_THAT(store_->Finish(bad, 1), StatusIs(absl::StatusCode::kInvalidArgument, _));
    EXPECT_THAT(store_->Put(bad, "x"), StatusIs(absl::StatusCode::kInvalidArgument, _));
    EXPECT_THAT(store_->ChunkChain(bad), StatusIs(absl::StatusCode::kInvalidArgument, _));
  }
  EXPECT_THAT(FilesUnder(dir_.path()), IsEmpty());
}

TEST_F(BlobStoreTest, ConcurrentAppendsAtTheSameOffsetAdmitExactlyOne) {
  constexpr int kThreads = 8;
  constexpr int kRounds = 20;
  for (int round = 0; round < kRounds; ++round) {
    SCOPED_TRACE(round);
    const std::string data = RandomBytes(256 * 1024, 1000 + round);
    const std::string hex = Sha256::HexOf(data);
    const int64_t size = static_cast<int64_t>(data.size());
    std::atomic<bool> go{false};
    std::atomic<int> ok{0};
    std::atomic<int> wrong_offset{0};
    std::vector<std::thread> threads;
    for (int i = 0; i < kThreads; ++i) {
      threads.emplace_back([&] {
        // Released together so that the appends really overlap.
        while (!go.load()) std::this_thread::yield();
        absl::Status status = store_->Append(hex, size, 0, data);
        if (status.ok()) ++ok;
        if (ErrorReason(status) == "WRONG_OFFSET") ++wrong_offset;
      });
    }
    go = true;
    for (auto& t : threads) t.join();
    EXPECT_EQ(ok.load(), 1);
    EXPECT_EQ(wrong_offset.load(), kThreads - 1);
    ASSERT_THAT(store_->Finish(hex, size), IsOk());
    EXPECT_EQ(ReadAll(*store_, hex), data);
  }
}

TEST_F(BlobStoreTest, RacingUploadersOfOneDigestNeverInterleaveBytes) {
  const std::string data = RandomBytes(2 * kMiB + 77, 12);
  const std::string hex = Sha256::HexOf(data);
  const int64_t size = static_cast<int64_t>(data.size());
  constexpr size_t kChunk = 65536 + 3;
  std::atomic<int> unexpected{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < 4; ++i) {
    threads.emplace_back([&] {
      for (;;) {
        auto off = store_->UploadOffset(hex, size);
        if (!off.ok()) {
          ++unexpected;
          return;
        }
        if (*off == size) return;
        absl::Status status = store_->Append(
            hex, size, *off, absl::string_view(data).substr(static_cast<size_t>(*off), kChunk));
        // Losing a race shows up as WRONG_OFFSET; anything else is a bug.
        if (!status.ok() && ErrorReason(status) != "WRONG_OFFSET") ++unexpected;
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(unexpected.load(), 0);
  ASSERT_THAT(store_->Finish(hex, size), IsOk());
  EXPECT_EQ(ReadAll(*store_, hex), data);
}

TEST_F(BlobStoreTest, DifferentDigestsUploadInParallel) {
  constexpr int kBlobs = 6;
  std::vector<std::string> blobs;
  for (int i = 0; i < kBlobs; ++i) blobs.push_back(RandomBytes(300000 + i, 100 + i));
  std::vector<absl::Status> results(kBlobs);
  std::vector<std::thread> threads;
  for (int i = 0; i < kBlobs; ++i) {
    threads.emplace_back(
        [&, i] { results[i] = Upload(*store_, Sha256::HexOf(blobs[i]), blobs[i], 10000); });
  }
  for (auto& t : threads) t.join();
  for (int i = 0; i < kBlobs; ++i) {
    EXPECT_THAT(results[i], IsOk());
    EXPECT_EQ(ReadAll(*store_, Sha256::HexOf(blobs[i])), blobs[i]);
  }
}

TEST_F(BlobStoreTest, LargeBlobReadsBackAtAnyOffset) {
  const std::string data = RandomBytes(5 * kMiB + 123, 13);
  const std::string hex = Sha256::HexOf(data);
  const int64_t size = static_cast<int64_t>(data.size());
  ASSERT_THAT(Upload(*store_, hex, data, kMiB), IsOk());

  auto reader = store_->OpenBlob(hex);
  ASSERT_THAT(reader, IsOk());
  EXPECT_EQ(reader->size(), size);
  std::string buf(kMiB, '\0');
  for (int64_t offset : {int64_t{0}, int64_t{1}, kMiB - 1, kMiB, 3 * kMiB + 5, size - kMiB}) {
    auto n = reader->ReadAt(offset, buf.data(), buf.size());
    ASSERT_THAT(n, IsOkAndHolds(static_cast<size_t>(kMiB))) << offset;
    EXPECT_EQ(buf, data.substr(static_cast<size_t>(offset), kMiB)) << offset;
  }
  // A read running past the end is short; at or past the end it returns 0.
  auto tail = reader->ReadAt(size - 10, buf.data(), buf.size());
  ASSERT_THAT(tail, IsOkAndHolds(10u));
  EXPECT_EQ(buf.substr(0, 10), data.substr(data.size() - 10));
  EXPECT_THAT(reader->ReadAt(size, buf.data(), buf.size()), IsOkAndHolds(0u));
  EXPECT_THAT(reader->ReadAt(size + 100, buf.data(), buf.size()), IsOkAndHolds(0u));
  EXPECT_THAT(reader->ReadAt(-1, buf.data(), buf.size()),
              StatusIs(absl::StatusCode::kInvalidArgument, _));
}

TEST_F(BlobStoreTest, ReadCachedAtReturnsAPrefixOfWhatReadAtReads) {
  const std::string data = RandomBytes(3 * kMiB + 7, 14);
  const std::string hex = Sha256::HexOf(data);
  const int64_t size = static_cast<int64_t>(data.size());
  ASSERT_THAT(Upload(*store_, hex, data, kMiB), IsOk());
  auto reader = store_->OpenBlob(hex);
  ASSERT_THAT(reader, IsOk());
  std::string buf(kMiB, '\0');
  // Whatever the page cache holds (all of it here, just written, unless the file system cannot
  // say without blocking), it is the right bytes from `offset` on, never past the end.
  for (int64_t offset : {int64_t{0}, kMiB + 1, size - 10}) {
    auto n = reader->ReadCachedAt(offset, buf.data(), buf.size());
    ASSERT_THAT(n, IsOk());
    EXPECT_LE(*n, static_cast<size_t>(std::min<int64_t>(kMiB, size - offset)));
    EXPECT_EQ(buf.substr(0, *n), data.substr(static_cast<size_t>(offset), *n)) << offset;
  }
  EXPECT_THAT(reader->ReadCachedAt(size, buf.data(), buf.size()), IsOkAndHolds(0u));
  EXPECT_THAT(reader->ReadCachedAt(-1, buf.data(), buf.size()),
              StatusIs(absl::StatusCode::kInvalidArgument, _));
}

TEST_F(BlobStoreTest, MovedReaderKeepsTheFile) {
  const std::string data = "movable";
  const std::string hex = Sha256::HexOf(data);
  ASSERT_THAT(store_->Put(hex, data), IsOk());
  auto opened = store_->OpenBlob(hex);
  ASSERT_THAT(opened, IsOk());
  BlobReader reader = std::move(opened).value();
  BlobReader moved = std::move(reader);
  char buf[16];
  EXPECT_THAT(moved.ReadAt(0, buf, sizeof buf), IsOkAndHolds(7u));
  EXPECT_THAT(reader.ReadAt(0, buf, sizeof buf),  // NOLINT(bugprone-use-after-move)
              StatusIs(absl::StatusCode::kFailedPrecondition, _));
}

TEST_F(BlobStoreTest, StoredBlobsAreReadOnly) {
  const std::string data = RandomBytes(1000, 14);
  const std::string hex = Sha256::HexOf(data);
  ASSERT_THAT(Upload(*store_, hex, data, 100), IsOk());
  struct stat st;
  ASSERT_EQ(::stat(store_->BlobPath(hex).c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0444u);
  ASSERT_EQ(::stat(ChainPath(hex).c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0444u);
  EXPECT_THAT(FilesUnder(dir_.Join("blobs")),
              ::testing::UnorderedElementsAre(
                  absl::StrCat("sha256/", hex.substr(0, 2), "/", hex),
                  absl::StrCat("sha256/", hex.substr(0, 2), "/", hex, ".chain")));
}

TEST_F(BlobStoreTest, PartialTruncatedBehindOurBackIsNoticed) {
  const std::string data = RandomBytes(100, 15);
  const std::string hex = Sha256::HexOf(data);
  ASSERT_THAT(store_->Append(hex, 100, 0, data.substr(0, 60)), IsOk());
  ASSERT_EQ(::truncate(PartialPath(hex).c_str(), 25), 0);

  EXPECT_THAT(store_->UploadOffset(hex, 100), IsOkAndHolds(25));
  absl::Status status = store_->Append(hex, 100, 60, data.substr(60));
  EXPECT_THAT(status, StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("committed 25")));
  ASSERT_THAT(store_->Append(hex, 100, 25, data.substr(25)), IsOk());
  ASSERT_THAT(store_->Finish(hex, 100), IsOk());
  EXPECT_EQ(ReadAll(*store_, hex), data);
}

TEST_F(BlobStoreTest, PartialRemovedBehindOurBackRestartsAtZero) {
  const std::string data = RandomBytes(100, 16);
  const std::string hex = Sha256::HexOf(data);
  ASSERT_THAT(store_->Append(hex, 100, 0, data.substr(0, 60)), IsOk());
  ASSERT_EQ(::unlink(PartialPath(hex).c_str()), 0);

  EXPECT_THAT(store_->UploadOffset(hex, 100), IsOkAndHolds(0));
  EXPECT_THAT(store_->Append(hex, 100, 60, data.substr(60)),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("committed 0")));
  // Finishing now must not pass on the stale in-memory hash of 60 bytes.
  EXPECT_THAT(store_->Finish(hex, 60), StatusIs(absl::StatusCode::kDataLoss, _));
  EXPECT_THAT(Upload(*store_, hex, data, 33), IsOk());
  EXPECT_EQ(ReadAll(*store_, hex), data);
}

TEST_F(BlobStoreTest, OpenRemovesStaleTempFilesAndKeepsPartials) {
  const std::string data = RandomBytes(100, 17);
  const std::string hex = Sha256::HexOf(data);
  ASSERT_THAT(store_->Append(hex, 100, 0, data.substr(0, 50)), IsOk());
  const std::string stored = "already stored";
  const std::string stored_hex = Sha256::HexOf(stored);
  ASSERT_THAT(store_->Put(stored_hex, stored), IsOk());
  store_.reset();
  // Debris a crash can leave: a temp file, and a partial whose blob was already stored.
  for (const std::string& name : {std::string("junk.tmp"), absl::StrCat(hex, ".partial.tmp.123"),
                                  absl::StrCat(stored_hex, ".partial")}) {
    FILE* f = fopen(dir_.Join("uploads/" + name).c_str(), "w");
    ASSERT_NE(f, nullptr);
    fclose(f);
  }

  std::unique_ptr<BlobStore> reopened = OpenStore(dir_.path());
  ASSERT_NE(reopened, nullptr);
  EXPECT_THAT(FilesUnder(dir_.Join("uploads")),
              ::testing::ElementsAre(absl::StrCat(hex, ".partial")));
  EXPECT_THAT(reopened->UploadOffset(hex, 100), IsOkAndHolds(50));
  EXPECT_EQ(ReadAll(*reopened, stored_hex), stored);
}

TEST_F(BlobStoreTest, RewindUploadDropsTheBytesPastAChunkBoundary) {
  const std::string data = RandomBytes(2 * kChunkDigestBytes + 9, 8);
  const std::string hex = Sha256::HexOf(data);
  const int64_t size = static_cast<int64_t>(data.size());
  const int64_t six_mib = kChunkDigestBytes + kChunkDigestBytes / 2;
  ASSERT_TRUE(store_->Append(hex, size, 0, data.substr(0, six_mib)).ok());
  EXPECT_EQ(store_->RewindUpload(hex, 3).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(store_->RewindUpload(hex, 2 * kChunkDigestBytes).code(),
            absl::StatusCode::kInvalidArgument);  // past the bytes held
  ASSERT_TRUE(store_->RewindUpload(hex, kChunkDigestBytes).ok());
  absl::StatusOr<int64_t> offset = store_->UploadOffset(hex, size);
  ASSERT_TRUE(offset.ok()) << offset.status();
  EXPECT_EQ(*offset, kChunkDigestBytes);
  struct stat st;
  ASSERT_EQ(::stat(PartialPath(hex).c_str(), &st), 0);
  EXPECT_EQ(st.st_size, kChunkDigestBytes);
  // The rest again from the boundary: the store's hash agrees, and the blob is stored.
  ASSERT_TRUE(store_
                  ->Append(hex, size, kChunkDigestBytes,
                           data.substr(static_cast<size_t>(kChunkDigestBytes)))
                  .ok());
  ASSERT_TRUE(store_->Finish(hex, size).ok());
  EXPECT_TRUE(store_->Verify(hex).ok());
}

}  // namespace
}  // namespace modeldist::storage
