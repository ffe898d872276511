// The blob store's chunk chains: computed while uploading whatever the append sizes, kept in a
// `.chain` sidecar, recomputed (and checked) for blobs without a usable one, never a blob.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <string>
#include <thread>
#include <vector>

#include "absl/strings/escaping.h"
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
using ::testing::HasSubstr;
using ::testing::IsEmpty;

TEST_F(BlobStoreTest, ChunkChainIsRightWhateverTheAppendSizes) {
  // 1 MiB + 7 appends never line up with the 4 MiB chunks, so chunks end inside an append.
  constexpr size_t kAppend = kMiB + 7;
  for (int64_t size : {int64_t{1}, kChunkDigestBytes - 1, kChunkDigestBytes, kChunkDigestBytes + 1,
                       9 * kMiB + 123}) {
    SCOPED_TRACE(size);
    const std::string data = RandomBytes(static_cast<size_t>(size), static_cast<uint32_t>(size));
    const std::string hex = Sha256::HexOf(data);
    ASSERT_THAT(Upload(*store_, hex, data, kAppend), IsOk());

    const std::vector<std::string> expected = ExpectedChain(data);
    ASSERT_EQ(expected.size(),
              static_cast<size_t>((size + kChunkDigestBytes - 1) / kChunkDigestBytes));
    EXPECT_THAT(store_->ChunkChain(hex), HoldsChain(expected));
    // Finish persisted exactly these bytes, so the call above did not have to recompute.
    EXPECT_EQ(ReadFile(ChainPath(hex)), ExpectedSidecar(data));
  }
}

TEST_F(BlobStoreTest, PutWritesTheChainAndTheEmptyBlobHasNone) {
  const std::string data = RandomBytes(kChunkDigestBytes + 5, 20);
  const std::string hex = Sha256::HexOf(data);
  ASSERT_THAT(store_->Put(hex, data), IsOk());
  EXPECT_EQ(ReadFile(ChainPath(hex)), ExpectedSidecar(data));
  EXPECT_THAT(store_->ChunkChain(hex), HoldsChain(ExpectedChain(data)));

  const std::string empty = Sha256::HexOf("");
  ASSERT_THAT(store_->Put(empty, ""), IsOk());
  EXPECT_TRUE(Exists(ChainPath(empty)));
  EXPECT_EQ(ReadFile(ChainPath(empty)), ExpectedSidecar(""));
  EXPECT_THAT(store_->ChunkChain(empty), HoldsChain(std::vector<std::string>{}));
}

TEST_F(BlobStoreTest, ChunkChainSurvivesARestartInTheMiddleOfAChunk) {
  const std::string data = RandomBytes(9 * kMiB + 123, 21);
  const std::string hex = Sha256::HexOf(data);
  const int64_t size = static_cast<int64_t>(data.size());
  // One chunk complete, the second one 1 MiB + 3 bytes in, when the server stops.
  const int64_t stop = kChunkDigestBytes + kMiB + 3;
  ASSERT_THAT(store_->Append(hex, size, 0, data.substr(0, 3 * kMiB)), IsOk());
  ASSERT_THAT(store_->Append(hex, size, 3 * kMiB, data.substr(3 * kMiB, stop - 3 * kMiB)), IsOk());
  store_.reset();

  store_ = OpenStore(dir_.path());
  ASSERT_NE(store_, nullptr);
  ASSERT_THAT(store_->UploadOffset(hex, size), IsOkAndHolds(stop));
  for (int64_t off = stop; off < size; off += kMiB + 7) {
    ASSERT_THAT(store_->Append(hex, size, off,
                               absl::string_view(data).substr(static_cast<size_t>(off), kMiB + 7)),
                IsOk());
  }
  ASSERT_THAT(store_->Finish(hex, size), IsOk());
  EXPECT_EQ(ReadFile(ChainPath(hex)), ExpectedSidecar(data));
  EXPECT_THAT(store_->ChunkChain(hex), HoldsChain(ExpectedChain(data)));
}

TEST_F(BlobStoreTest, LegacyBlobWithoutSidecarGetsItsChainComputedAndKept) {
  const std::string data = RandomBytes(2 * kChunkDigestBytes + 77, 22);
  const std::string hex = Sha256::HexOf(data);
  WriteLegacyBlob(hex, data);
  ASSERT_TRUE(store_->Contains(hex));
  ASSERT_FALSE(Exists(ChainPath(hex)));

  EXPECT_THAT(store_->ChunkChain(hex), HoldsChain(ExpectedChain(data)));
  EXPECT_EQ(ReadFile(ChainPath(hex)), ExpectedSidecar(data));
  // The temp file went to uploads/ and is gone; the blob is untouched.
  EXPECT_THAT(FilesUnder(dir_.Join("uploads")), IsEmpty());
  EXPECT_EQ(ReadAll(*store_, hex), data);

  // Later calls are served from the sidecar: a recompute would rename a new file into place.
  struct stat before, after;
  ASSERT_EQ(::stat(ChainPath(hex).c_str(), &before), 0);
  EXPECT_THAT(store_->ChunkChain(hex), HoldsChain(ExpectedChain(data)));
  ASSERT_EQ(::stat(ChainPath(hex).c_str(), &after), 0);
  EXPECT_EQ(before.st_ino, after.st_ino);
}

TEST_F(BlobStoreTest, ALegacyChunkDigestSidecarIsReplacedByTheChain) {
  // Versions before chunk chains kept each chunk's own SHA-256 in `<hex>.chunks`, a file of
  // the same length as the chain: it must be neither served nor left behind.
  const std::string data = RandomBytes(2 * kChunkDigestBytes + 77, 29);
  const std::string hex = Sha256::HexOf(data);
  WriteLegacyBlob(hex, data);
  std::string legacy;
  for (size_t off = 0; off < data.size(); off += kChunkDigestBytes) {
    legacy += absl::HexStringToBytes(
        Sha256::HexOf(absl::string_view(data).substr(off, kChunkDigestBytes)));
  }
  const std::string legacy_path = store_->BlobPath(hex) + ".chunks";
  {
    FILE* f = fopen(legacy_path.c_str(), "wb");
    ASSERT_NE(f, nullptr);
    ASSERT_EQ(fwrite(legacy.data(), 1, legacy.size(), f), legacy.size());
    fclose(f);
  }
  ASSERT_NE(legacy, Concat(ExpectedChain(data)));

  EXPECT_THAT(store_->ChunkChain(hex), HoldsChain(ExpectedChain(data)));
  EXPECT_EQ(ReadFile(ChainPath(hex)), ExpectedSidecar(data));
  EXPECT_FALSE(Exists(legacy_path));
}

TEST_F(BlobStoreTest, ConcurrentFirstUsesOfALegacyBlobAgree) {
  const std::string data = RandomBytes(kChunkDigestBytes + 9, 23);
  const std::string hex = Sha256::HexOf(data);
  WriteLegacyBlob(hex, data);
  std::vector<absl::StatusOr<std::vector<std::string>>> results(6);
  std::vector<std::thread> threads;
  for (auto& result : results) {
    threads.emplace_back([&] { result = store_->ChunkChain(hex); });
  }
  for (auto& t : threads) t.join();
  for (const auto& result : results) EXPECT_THAT(result, HoldsChain(ExpectedChain(data)));
  EXPECT_EQ(ReadFile(ChainPath(hex)), ExpectedSidecar(data));
  EXPECT_THAT(FilesUnder(dir_.Join("uploads")), IsEmpty());
}

TEST_F(BlobStoreTest, SidecarOfTheWrongLengthIsRecomputed) {
  const std::string data = RandomBytes(9 * kMiB + 123, 24);
  const std::string hex = Sha256::HexOf(data);
  ASSERT_THAT(store_->Put(hex, data), IsOk());
  const std::string chunks = ChainPath(hex);
  // Three chunks make 16 + 96 bytes; shorter (truncated) and longer (zero-filled) both fail,
  // and so does the layout of older stores (the entries alone, 96 bytes). The store keeps
  // what it read in memory, so each damaged sidecar is seen by a store opened afterwards.
  for (off_t length : {off_t{0}, off_t{40}, off_t{96}, off_t{128}}) {
    SCOPED_TRACE(length);
    ASSERT_EQ(::chmod(chunks.c_str(), 0644), 0);
    ASSERT_EQ(::truncate(chunks.c_str(), length), 0);
    store_.reset();
    store_ = OpenStore(dir_.path());
    EXPECT_THAT(store_->ChunkChain(hex), HoldsChain(ExpectedChain(data)));
    EXPECT_EQ(ReadFile(chunks), ExpectedSidecar(data));
  }
  // An older store's sidecar with the right entries is upgraded to the current layout.
  ASSERT_EQ(::chmod(chunks.c_str(), 0644), 0);
  ASSERT_EQ(::truncate(chunks.c_str(), 0), 0);
  {
    FILE* f = fopen(chunks.c_str(), "wb");
    ASSERT_NE(f, nullptr);
    const std::string old = Concat(ExpectedChain(data));
    ASSERT_EQ(fwrite(old.data(), 1, old.size(), f), old.size());
    fclose(f);
  }
  store_.reset();
  store_ = OpenStore(dir_.path());
  EXPECT_THAT(store_->Size(hex), IsOkAndHolds(static_cast<int64_t>(data.size())));
  EXPECT_EQ(ReadFile(chunks), ExpectedSidecar(data));
}

TEST_F(BlobStoreTest, CorruptBlobOnDiskIsDataLossFromChunkChain) {
  const std::string data = RandomBytes(kChunkDigestBytes + 1000, 25);
  const std::string hex = Sha256::HexOf(data);
  ASSERT_THAT(store_->Put(hex, data), IsOk());
  const std::string blob = store_->BlobPath(hex);
  ASSERT_EQ(::unlink(ChainPath(hex).c_str()), 0);
  ASSERT_EQ(::chmod(blob.c_str(), 0644), 0);
  {
    FILE* f = fopen(blob.c_str(), "r+b");
    ASSERT_NE(f, nullptr);
    ASSERT_EQ(fseek(f, kChunkDigestBytes + 10, SEEK_SET), 0);
    fputc(data[kChunkDigestBytes + 10] ^ 0x01, f);
    fclose(f);
  }

  auto chain = store_->ChunkChain(hex);
  EXPECT_THAT(chain, StatusIs(absl::StatusCode::kDataLoss, HasSubstr(hex)));
  EXPECT_EQ(ErrorReason(chain.status()), "BLOB_CORRUPT");
  // A chain of damaged bytes is never persisted.
  EXPECT_FALSE(Exists(ChainPath(hex)));
  EXPECT_THAT(FilesUnder(dir_.Join("uploads")), IsEmpty());

  // A blob that lost bytes no longer matches its sidecar's length, so it is re-hashed too.
  const std::string other = RandomBytes(3000, 26);
  const std::string other_hex = Sha256::HexOf(other);
  ASSERT_THAT(store_->Put(other_hex, other), IsOk());
  ASSERT_EQ(::chmod(store_->BlobPath(other_hex).c_str(), 0644), 0);
  ASSERT_EQ(::truncate(store_->BlobPath(other_hex).c_str(), 0), 0);
  EXPECT_THAT(store_->ChunkChain(other_hex), StatusIs(absl::StatusCode::kDataLoss, _));
}

TEST_F(BlobStoreTest, DataLossOnUploadLeavesNoSidecar) {
  const std::string data = RandomBytes(kChunkDigestBytes + 5, 27);
  const std::string wrong_hex = Sha256::HexOf("other bytes");
  ASSERT_THAT(Upload(*store_, wrong_hex, data, kMiB + 7), StatusIs(absl::StatusCode::kDataLoss, _));
  const std::string hex = Sha256::HexOf(data);
  ASSERT_THAT(store_->Append(hex, 2 * kChunkDigestBytes, 0, data), IsOk());
  ASSERT_THAT(store_->Finish(hex, 2 * kChunkDigestBytes), StatusIs(absl::StatusCode::kDataLoss, _));

  EXPECT_THAT(FilesUnder(dir_.path()), IsEmpty());
  EXPECT_THAT(store_->ChunkChain(wrong_hex), StatusIs(absl::StatusCode::kNotFound, _));
  EXPECT_THAT(store_->ChunkChain(hex), StatusIs(absl::StatusCode::kNotFound, _));
}

TEST_F(BlobStoreTest, ASidecarIsNeverABlob) {
  const std::string data = "a blob";
  const std::string hex = Sha256::HexOf(data);
  ASSERT_THAT(store_->Put(hex, data), IsOk());
  const std::string sidecar_name = hex + ".chain";
  EXPECT_FALSE(store_->Contains(sidecar_name));
  EXPECT_THAT(store_->Size(sidecar_name), StatusIs(absl::StatusCode::kInvalidArgument, _));
  EXPECT_THAT(store_->OpenBlob(sidecar_name), StatusIs(absl::StatusCode::kInvalidArgument, _));

  // A sidecar left without its blob (a crash between the two renames of Finish) does not make
  // the blob exist, and the next upload of that digest completes normally.
  const std::string orphan = RandomBytes(100, 28);
  const std::string orphan_hex = Sha256::HexOf(orphan);
  ASSERT_THAT(store_->Put(orphan_hex, orphan), IsOk());
  ASSERT_EQ(::unlink(store_->BlobPath(orphan_hex).c_str()), 0);
  EXPECT_FALSE(store_->Contains(orphan_hex));
  EXPECT_THAT(store_->ChunkChain(orphan_hex), StatusIs(absl::StatusCode::kNotFound, _));
  EXPECT_THAT(store_->UploadOffset(orphan_hex, 100), IsOkAndHolds(0));
  ASSERT_THAT(Upload(*store_, orphan_hex, orphan, 33), IsOk());
  EXPECT_THAT(store_->ChunkChain(orphan_hex), HoldsChain(ExpectedChain(orphan)));
}

TEST_F(BlobStoreTest, OpenRemovesATempSidecarLeftByACrash) {
  const std::string hex = Sha256::HexOf("x");
  const std::string tmp = dir_.Join(absl::StrCat("uploads/", hex, ".chain.tmp.1.0"));
  FILE* f = fopen(tmp.c_str(), "w");
  ASSERT_NE(f, nullptr);
  fclose(f);
  store_.reset();
  store_ = OpenStore(dir_.path());
  ASSERT_NE(store_, nullptr);
  EXPECT_FALSE(Exists(tmp));
}

}  // namespace
}  // namespace modeldist::storage
