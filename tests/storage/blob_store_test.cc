#include "storage/blob_store.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "common/digest.h"
#include "common/file_util.h"
#include "common/status.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/test_util.h"

namespace modeldist::storage {
namespace {

using ::modeldist::testing::IsOk;
using ::modeldist::testing::IsOkAndHolds;
using ::modeldist::testing::RandomBytes;
using ::modeldist::testing::ScratchDir;
using ::modeldist::testing::StatusIs;
using ::testing::_;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

// Matches an OK StatusOr holding exactly the raw digests `expected`; explains a mismatch in
// hex instead of printing raw bytes.
MATCHER_P(HoldsChain, expected, "") {
  if (!arg.ok()) {
    *result_listener << "status is " << arg.status();
    return false;
  }
  const std::vector<std::string>& got = *arg;
  if (got.size() != expected.size()) {
    *result_listener << "has " << got.size() << " entries, expected " << expected.size();
    return false;
  }
  for (size_t i = 0; i < got.size(); ++i) {
    if (got[i] != expected[i]) {
      *result_listener << "entry " << i << " is " << HexEncode(got[i]) << ", expected "
                       << HexEncode(expected[i]);
      return false;
    }
  }
  return true;
}

constexpr int64_t kMiB = 1 << 20;

std::unique_ptr<BlobStore> OpenStore(const std::string& root) {
  auto store = BlobStore::Open(root);
  EXPECT_THAT(store, IsOk());
  return store.ok() ? std::move(store).value() : nullptr;
}

// Reads a whole stored blob through BlobReader, in deliberately odd-sized pieces.
std::string ReadAll(const BlobStore& store, const std::string& hex) {
  auto reader = store.OpenBlob(hex);
  EXPECT_THAT(reader, IsOk());
  if (!reader.ok()) return "";
  std::string out;
  char buf[70001];
  for (;;) {
    auto n = reader->ReadAt(static_cast<int64_t>(out.size()), buf, sizeof buf);
    EXPECT_THAT(n, IsOk());
    if (!n.ok() || *n == 0) break;
    out.append(buf, *n);
  }
  return out;
}

// Every regular file below `dir`, relative paths.
std::vector<std::string> FilesUnder(const std::string& dir) {
  std::vector<std::string> files;
  for (const auto& entry : std::filesystem::recursive_directory_iterator(dir)) {
    if (entry.is_regular_file()) {
      files.push_back(std::filesystem::relative(entry.path(), dir).string());
    }
  }
  return files;
}

// The raw SHA-256 of every kChunkDigestBytes slice of `data`, computed independently of the
// store's streaming hasher.
// The chunk chain of `data` by its definition (common/chunk_chain.h), from Sha256 alone:
// the chaining value after each whole chunk that more bytes follow, then the file digest.
std::vector<std::string> ExpectedChain(const std::string& data) {
  std::vector<std::string> chain;
  for (size_t end = kChunkDigestBytes; end < data.size(); end += kChunkDigestBytes) {
    Sha256 prefix;
    prefix.Update(absl::string_view(data).substr(0, end));
    chain.push_back(prefix.ChainingValue());
  }
  if (!data.empty()) chain.push_back(absl::HexStringToBytes(Sha256::HexOf(data)));
  return chain;
}

std::string Concat(const std::vector<std::string>& parts) {
  std::string out;
  for (const std::string& part : parts) out += part;
  return out;
}

// The `.chain` sidecar of `data`, as the store must write it (blob_record.h).
std::string ExpectedSidecar(absl::string_view data) {
  return EncodeChainSidecar(static_cast<int64_t>(data.size()),
                            Concat(ExpectedChain(std::string(data))));
}

std::string ReadFile(const std::string& path) {
  auto contents = ReadFileToString(path);
  EXPECT_THAT(contents, IsOk());
  return contents.ok() ? *contents : "";
}

// Uploads `data` in `chunk`-byte appends, then finishes.
absl::Status Upload(BlobStore& store, const std::string& hex, const std::string& data,
                    size_t chunk) {
  const int64_t size = static_cast<int64_t>(data.size());
  for (size_t off = 0; off < data.size(); off += chunk) {
    MD_RETURN_IF_ERROR(store.Append(hex, size, static_cast<int64_t>(off),
                                    absl::string_view(data).substr(off, chunk)));
  }
  return store.Finish(hex, size);
}

// Writes `data` to upload session `id` in `chunk`-byte appends, without finishing it.
absl::Status WriteSession(BlobStore& store, const std::string& id, const std::string& data,
                          size_t chunk, int64_t declared_size, size_t from = 0) {
  for (size_t off = from; off < data.size(); off += chunk) {
    MD_RETURN_IF_ERROR(store.AppendToSession(id, declared_size, static_cast<int64_t>(off),
                                             absl::string_view(data).substr(off, chunk)));
  }
  return absl::OkStatus();
}

// Sets the modification time of `path` to `age` ago.
void Age(const std::string& path, absl::Duration age) {
  struct timespec times[2];
  times[0] = absl::ToTimespec(absl::Now() - age);
  times[1] = times[0];
  ASSERT_EQ(::utimensat(AT_FDCWD, path.c_str(), times, 0), 0) << path;
}

class BlobStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    store_ = OpenStore(dir_.path());
    ASSERT_NE(store_, nullptr);
  }
  std::string PartialPath(const std::string& hex) const {
    return dir_.Join(absl::StrCat("uploads/", hex, ".partial"));
  }
  std::string ChainPath(const std::string& hex) const { return store_->BlobPath(hex) + ".chain"; }
  std::string SessionPartial(const std::string& id) const {
    return dir_.Join(absl::StrCat("uploads/session-", id, ".partial"));
  }
  std::string SessionRecord(const std::string& id) const {
    return dir_.Join(absl::StrCat("uploads/session-", id, ".done"));
  }
  // Writes a blob the way a version without sidecars left it: the blob file alone.
  void WriteLegacyBlob(const std::string& hex, const std::string& data) {
    const std::string path = store_->BlobPath(hex);
    std::filesystem::create_directories(std::filesystem::path(path).parent_path());
    FILE* f = fopen(path.c_str(), "wb");
    ASSERT_NE(f, nullptr);
    ASSERT_EQ(fwrite(data.data(), 1, data.size(), f), data.size());
    ASSERT_EQ(fclose(f), 0);
    ASSERT_EQ(::chmod(path.c_str(), 0444), 0);
  }
  bool Exists(const std::string& path) const { return ::access(path.c_str(), F_OK) == 0; }

  ScratchDir dir_;
  std::unique_ptr<BlobStore> store_;
};

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

// --- upload sessions -------------------------------------------------------------------------

constexpr char kSessionId[] = "ctl-0123456789abcdef_XYZ";

TEST_F(BlobStoreTest, SessionIsHashedAsWrittenAndStoredUnderTheWritersDigest) {
  // 1 MiB + 7 appends end inside the 4 MiB chunks, so the chain is built across appends.
  const std::string data = RandomBytes(9 * kMiB + 123, 40);
  const std::string hex = Sha256::HexOf(data);
  const int64_t size = static_cast<int64_t>(data.size());
  auto state = store_->QuerySession(kSessionId);
  ASSERT_THAT(state, IsOk());
  EXPECT_EQ(state->committed_size, 0);
  EXPECT_FALSE(state->finished());
  EXPECT_THAT(FilesUnder(dir_.path()), IsEmpty());  // A query creates nothing.

  ASSERT_THAT(WriteSession(*store_, kSessionId, data, kMiB + 7, size), IsOk());
  state = store_->QuerySession(kSessionId);
  ASSERT_THAT(state, IsOk());
  EXPECT_EQ(state->committed_size, size);
  EXPECT_FALSE(state->finished());
  EXPECT_FALSE(store_->Contains(hex));  // Not before it is finished.
  EXPECT_TRUE(Exists(SessionPartial(kSessionId)));

  EXPECT_THAT(store_->FinishSession(kSessionId, size, hex), IsOkAndHolds(size));
  EXPECT_EQ(ReadAll(*store_, hex), data);
  EXPECT_EQ(ReadFile(ChainPath(hex)), ExpectedSidecar(data));
  EXPECT_THAT(store_->ChunkChain(hex), HoldsChain(ExpectedChain(data)));
  struct stat st;
  ASSERT_EQ(::stat(store_->BlobPath(hex).c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0444u);
  // Only the record of which blob the session became is left in uploads/.
  EXPECT_THAT(FilesUnder(dir_.Join("uploads")),
              ElementsAre(absl::StrCat("session-", kSessionId, ".done")));
  state = store_->QuerySession(kSessionId);
  ASSERT_THAT(state, IsOk());
  EXPECT_TRUE(state->finished());
  EXPECT_EQ(state->digest_hex, hex);
  EXPECT_EQ(state->committed_size, size);
}

TEST_F(BlobStoreTest, SessionWithoutADeclaredSizeTakesWhatItGets) {
  const std::string data = RandomBytes(300001, 41);
  const std::string hex = Sha256::HexOf(data);
  ASSERT_THAT(WriteSession(*store_, kSessionId, data, 65536, /*declared_size=*/0), IsOk());
  EXPECT_THAT(store_->FinishSession(kSessionId, 0, hex), IsOkAndHolds(300001));
  EXPECT_EQ(ReadAll(*store_, hex), data);
}

TEST_F(BlobStoreTest, SessionResumesAfterRestartInTheMiddleOfAChunk) {
  const std::string data = RandomBytes(9 * kMiB + 123, 42);
  const std::string hex = Sha256::HexOf(data);
  const int64_t size = static_cast<int64_t>(data.size());
  const int64_t stop = kChunkDigestBytes + kMiB + 3;
  ASSERT_THAT(WriteSession(*store_, kSessionId, data.substr(0, stop), kMiB, size), IsOk());
  store_.reset();  // The server stops; only the partial survives.

  store_ = OpenStore(dir_.path());
  ASSERT_NE(store_, nullptr);
  auto state = store_->QuerySession(kSessionId);
  ASSERT_THAT(state, IsOk());
  EXPECT_EQ(state->committed_size, stop);
  absl::Status wrong = store_->AppendToSession(kSessionId, size, 0, data.substr(0, 10));
  EXPECT_THAT(wrong, StatusIs(absl::StatusCode::kInvalidArgument,
                              HasSubstr(absl::StrCat("upload session ", kSessionId,
                                                     " has committed ", stop, " bytes"))));
  EXPECT_EQ(ErrorReason(wrong), "WRONG_OFFSET");
  ASSERT_THAT(WriteSession(*store_, kSessionId, data, kMiB + 7, size, stop), IsOk());
  // The hash rebuilt from the partial, plus the bytes appended since, must verify.
  EXPECT_THAT(store_->FinishSession(kSessionId, size, hex), IsOkAndHolds(size));
  EXPECT_EQ(ReadAll(*store_, hex), data);
  EXPECT_EQ(ReadFile(ChainPath(hex)), ExpectedSidecar(data));
}

TEST_F(BlobStoreTest, WrongDigestAtFinishIsDataLossAndStoresNothing) {
  const std::string data = RandomBytes(kChunkDigestBytes + 5, 43);
  const int64_t size = static_cast<int64_t>(data.size());
  const std::string claimed = Sha256::HexOf("what the writer thought it sent");
  ASSERT_THAT(WriteSession(*store_, kSessionId, data, kMiB, size), IsOk());

  auto finished = store_->FinishSession(kSessionId, size, claimed);
  EXPECT_THAT(finished, StatusIs(absl::StatusCode::kDataLoss,
                                 AllOf(HasSubstr(Sha256::HexOf(data)), HasSubstr(claimed))));
  EXPECT_EQ(ErrorReason(finished.status()), "DIGEST_MISMATCH");
  // Nothing stored under either digest, no sidecar, and the session starts over at 0.
  EXPECT_FALSE(store_->Contains(claimed));
  EXPECT_FALSE(store_->Contains(Sha256::HexOf(data)));
  EXPECT_THAT(FilesUnder(dir_.path()), IsEmpty());
  auto state = store_->QuerySession(kSessionId);
  ASSERT_THAT(state, IsOk());
  EXPECT_EQ(state->committed_size, 0);
  EXPECT_FALSE(state->finished());

  // The same session id can then be written again, from 0.
  ASSERT_THAT(WriteSession(*store_, kSessionId, data, kMiB, size), IsOk());
  EXPECT_THAT(store_->FinishSession(kSessionId, size, Sha256::HexOf(data)), IsOkAndHolds(size));
}

TEST_F(BlobStoreTest, SessionShorterThanDeclaredIsDataLoss) {
  const std::string data = RandomBytes(1000, 44);
  ASSERT_THAT(WriteSession(*store_, kSessionId, data.substr(0, 999), 100, 1000), IsOk());
  auto finished = store_->FinishSession(kSessionId, 1000, Sha256::HexOf(data.substr(0, 999)));
  EXPECT_THAT(finished, StatusIs(absl::StatusCode::kDataLoss, HasSubstr("999 bytes")));
  EXPECT_EQ(ErrorReason(finished.status()), "SIZE_MISMATCH");
  EXPECT_THAT(FilesUnder(dir_.path()), IsEmpty());
}

TEST_F(BlobStoreTest, SessionRefusesBytesBeyondItsSize) {
  const std::string data = RandomBytes(100, 45);
  ASSERT_THAT(store_->AppendToSession(kSessionId, 100, 0, data.substr(0, 90)), IsOk());
  absl::Status status = store_->AppendToSession(kSessionId, 100, 90, data.substr(90) + "x");
  EXPECT_THAT(status, StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("exceeds")));
  EXPECT_EQ(ErrorReason(status), "TOO_MANY_BYTES");
  for (int64_t bad : {int64_t{-1}, kMaxBlobBytes + 1}) {
    SCOPED_TRACE(bad);
    absl::Status size = store_->AppendToSession(kSessionId, bad, 90, data.substr(90));
    EXPECT_THAT(size, StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("size_bytes")));
    EXPECT_EQ(ErrorMetadataValue(size, "field"), "size_bytes");
  }
  ASSERT_THAT(store_->AppendToSession(kSessionId, 100, 90, data.substr(90)), IsOk());
  EXPECT_THAT(store_->FinishSession(kSessionId, 100, Sha256::HexOf(data)), IsOkAndHolds(100));
}

TEST_F(BlobStoreTest, FinishedSessionRefusesBytesAndRepeatsItsAnswer) {
  const std::string data = RandomBytes(5000, 46);
  const std::string hex = Sha256::HexOf(data);
  ASSERT_THAT(WriteSession(*store_, kSessionId, data, 5000, 5000), IsOk());
  ASSERT_THAT(store_->FinishSession(kSessionId, 5000, hex), IsOkAndHolds(5000));

  // A retried finish whose first answer was lost succeeds again.
  EXPECT_THAT(store_->FinishSession(kSessionId, 5000, hex), IsOkAndHolds(5000));
  absl::Status append = store_->AppendToSession(kSessionId, 5000, 0, data);
  EXPECT_THAT(append, StatusIs(absl::StatusCode::kAlreadyExists, HasSubstr(hex)));
  EXPECT_EQ(ErrorReason(append), "UPLOAD_SESSION_FINISHED");
  EXPECT_THAT(store_->FinishSession(kSessionId, 5000, Sha256::HexOf("other")),
              StatusIs(absl::StatusCode::kAlreadyExists, HasSubstr(hex)));
  EXPECT_FALSE(Exists(SessionPartial(kSessionId)));
  EXPECT_EQ(ReadAll(*store_, hex), data);
}

TEST_F(BlobStoreTest, SessionOfAStoredBlobKeepsTheOneCopy) {
  const std::string data = RandomBytes(70000, 47);
  const std::string hex = Sha256::HexOf(data);
  ASSERT_THAT(store_->Put(hex, data), IsOk());
  struct stat before, after;
  ASSERT_EQ(::stat(store_->BlobPath(hex).c_str(), &before), 0);

  ASSERT_THAT(WriteSession(*store_, kSessionId, data, 7000, 70000), IsOk());
  EXPECT_THAT(store_->FinishSession(kSessionId, 70000, hex), IsOkAndHolds(70000));
  ASSERT_EQ(::stat(store_->BlobPath(hex).c_str(), &after), 0);
  EXPECT_EQ(before.st_ino, after.st_ino);
  EXPECT_FALSE(Exists(SessionPartial(kSessionId)));
  auto state = store_->QuerySession(kSessionId);
  ASSERT_THAT(state, IsOk());
  EXPECT_EQ(state->digest_hex, hex);
}

TEST_F(BlobStoreTest, BadUploadIdsNeverReachTheFileSystem) {
  const std::string hex = Sha256::HexOf("x");
  for (const std::string& bad :
       {std::string(""), std::string("short-id"), std::string(15, 'a'), std::string(65, 'a'),
        std::string("../../../../etc/passwd"), std::string("aaaaaaaaaaaaaaa/"),
        std::string("aaaaaaaaaaaaaaaa.partial"), std::string("..aaaaaaaaaaaaaaaa"),
        std::string("aaaaaaaa aaaaaaaa"), std::string("aaaaaaaa\0aaaaaaaa", 17),
        std::string("aaaaaaaa\naaaaaaaa")}) {
    SCOPED_TRACE(absl::CHexEscape(bad));
    auto state = store_->QuerySession(bad);
    EXPECT_THAT(state, StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("upload_id")));
    EXPECT_EQ(ErrorReason(state.status()), "INVALID_UPLOAD_ID");
    EXPECT_EQ(ErrorMetadataValue(state.status(), "field"), "upload_id");
    EXPECT_THAT(store_->AppendToSession(bad, 1, 0, "x"),
                StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("upload_id")));
    EXPECT_THAT(store_->FinishSession(bad, 1, hex),
                StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("upload_id")));
  }
  EXPECT_THAT(FilesUnder(dir_.path()), IsEmpty());
  // The longest and shortest good ids work.
  EXPECT_THAT(store_->AppendToSession(std::string(64, 'Z'), 1, 0, "x"), IsOk());
  EXPECT_THAT(store_->AppendToSession(std::string(16, '-'), 1, 0, "x"), IsOk());
}

TEST_F(BlobStoreTest, ACrashBetweenTheRecordAndTheRenameFinishesAgain) {
  const std::string data = RandomBytes(3000, 48);
  const std::string hex = Sha256::HexOf(data);
  ASSERT_THAT(WriteSession(*store_, kSessionId, data, 1000, 3000), IsOk());
  store_.reset();
  // What FinishSession leaves if the machine stops after the record, before the rename.
  {
    FILE* f = fopen(SessionRecord(kSessionId).c_str(), "w");
    ASSERT_NE(f, nullptr);
    fputs(hex.c_str(), f);
    fclose(f);
  }
  store_ = OpenStore(dir_.path());
  ASSERT_NE(store_, nullptr);
  auto state = store_->QuerySession(kSessionId);
  ASSERT_THAT(state, IsOk());
  EXPECT_FALSE(state->finished());  // The blob is not stored: the partial wins.
  EXPECT_EQ(state->committed_size, 3000);
  EXPECT_THAT(store_->FinishSession(kSessionId, 3000, hex), IsOkAndHolds(3000));
  EXPECT_EQ(ReadAll(*store_, hex), data);
}

TEST_F(BlobStoreTest, ExpiredSessionsAreRemovedAtOpen) {
  const std::string old_id = "old-session-0000001";
  const std::string done_id = "done-session-000001";
  const std::string live_id = "live-session-000001";
  const std::string digest_data = RandomBytes(100, 49);
  const std::string digest_hex = Sha256::HexOf(digest_data);
  ASSERT_THAT(store_->AppendToSession(old_id, 0, 0, "stale bytes"), IsOk());
  ASSERT_THAT(store_->AppendToSession(done_id, 0, 0, "finished"), IsOk());
  ASSERT_THAT(store_->FinishSession(done_id, 0, Sha256::HexOf("finished")), IsOk());
  ASSERT_THAT(store_->AppendToSession(live_id, 0, 0, "recent bytes"), IsOk());
  ASSERT_THAT(store_->Append(digest_hex, 100, 0, digest_data.substr(0, 50)), IsOk());
  store_.reset();
  Age(SessionPartial(old_id), kUploadSessionTtl + absl::Hours(1));
  Age(SessionRecord(done_id), kUploadSessionTtl + absl::Hours(1));
  Age(SessionPartial(live_id), kUploadSessionTtl - absl::Hours(1));
  Age(PartialPath(digest_hex), kUploadSessionTtl + absl::Hours(1));  // Not a session: kept.
  // A session file name whose id is not valid is debris.
  {
    FILE* f = fopen(dir_.Join("uploads/session-short.partial").c_str(), "w");
    ASSERT_NE(f, nullptr);
    fclose(f);
  }

  store_ = OpenStore(dir_.path());
  ASSERT_NE(store_, nullptr);
  EXPECT_THAT(FilesUnder(dir_.Join("uploads")),
              ::testing::UnorderedElementsAre(absl::StrCat("session-", live_id, ".partial"),
                                              absl::StrCat(digest_hex, ".partial")));
  auto old_state = store_->QuerySession(old_id);
  ASSERT_THAT(old_state, IsOk());
  EXPECT_EQ(old_state->committed_size, 0);
  auto done_state = store_->QuerySession(done_id);
  ASSERT_THAT(done_state, IsOk());
  EXPECT_FALSE(done_state->finished());  // Its blob stays; only the record expired.
  EXPECT_TRUE(store_->Contains(Sha256::HexOf("finished")));
  auto live_state = store_->QuerySession(live_id);
  ASSERT_THAT(live_state, IsOk());
  EXPECT_EQ(live_state->committed_size, 12);

  // A week without writes later, the live one expires too.
  ASSERT_THAT(store_->RemoveExpiredSessions(absl::Now() + absl::Hours(2)), IsOk());
  EXPECT_FALSE(Exists(SessionPartial(live_id)));
  EXPECT_TRUE(Exists(PartialPath(digest_hex)));
}

// A store whose catalog declares exactly `declared` (hex digests); `asked` counts the questions.
std::unique_ptr<BlobStore> OpenStoreWithCatalog(const std::string& root,
                                                const std::set<std::string>* declared,
                                                int* asked = nullptr) {
  BlobStore::Options options;
  options.is_referenced = [declared, asked](absl::string_view hex) -> absl::StatusOr<bool> {
    if (asked != nullptr) ++*asked;
    return declared->count(std::string(hex)) > 0;
  };
  auto store = BlobStore::Open(root, options);
  EXPECT_THAT(store, IsOk());
  return store.ok() ? std::move(store).value() : nullptr;
}

TEST_F(BlobStoreTest, AnExpiredSessionsBlobThatNoVersionDeclaresIsRemovedWithItsRecord) {
  std::set<std::string> declared;
  store_ = OpenStoreWithCatalog(dir_.path(), &declared);
  const std::string orphan = RandomBytes(3000, 61);
  const std::string kept = RandomBytes(3000, 62);
  ASSERT_THAT(store_->AppendToSession("orphan-session-0001", 0, 0, orphan), IsOk());
  ASSERT_THAT(store_->FinishSession("orphan-session-0001", 0, Sha256::HexOf(orphan)), IsOk());
  ASSERT_THAT(store_->AppendToSession("kept-session-000001", 0, 0, kept), IsOk());
  ASSERT_THAT(store_->FinishSession("kept-session-000001", 0, Sha256::HexOf(kept)), IsOk());
  declared.insert(Sha256::HexOf(kept));  // its publish went on to create the version
  ASSERT_TRUE(Exists(ChainPath(Sha256::HexOf(orphan))));

  // Before the records expire nothing is removed, declared or not.
  ASSERT_THAT(store_->RemoveExpiredSessions(absl::Now()), IsOk());
  EXPECT_TRUE(store_->Contains(Sha256::HexOf(orphan)));

  ASSERT_THAT(store_->RemoveExpiredSessions(absl::Now() + kUploadSessionTtl + absl::Hours(1)),
              IsOk());
  EXPECT_FALSE(store_->Contains(Sha256::HexOf(orphan)));
  EXPECT_FALSE(Exists(ChainPath(Sha256::HexOf(orphan))));
  EXPECT_THAT(store_->OpenBlob(Sha256::HexOf(orphan)), StatusIs(absl::StatusCode::kNotFound, _));
  EXPECT_TRUE(store_->Contains(Sha256::HexOf(kept)));
  EXPECT_EQ(ReadAll(*store_, Sha256::HexOf(kept)), kept);
  EXPECT_FALSE(Exists(SessionRecord("orphan-session-0001")));
  EXPECT_FALSE(Exists(SessionRecord("kept-session-000001")));
}

TEST_F(BlobStoreTest, ABlobAnotherLiveSessionNamesIsKept) {
  std::set<std::string> declared;
  store_ = OpenStoreWithCatalog(dir_.path(), &declared);
  const std::string data = RandomBytes(2000, 63);
  const std::string hex = Sha256::HexOf(data);
  // An old session stored the bytes; a recent one uploaded the same bytes and is about to
  // create its version.
  ASSERT_THAT(store_->AppendToSession("first-session-00001", 0, 0, data), IsOk());
  ASSERT_THAT(store_->FinishSession("first-session-00001", 0, hex), IsOk());
  ASSERT_THAT(store_->AppendToSession("second-session-0001", 0, 0, data), IsOk());
  ASSERT_THAT(store_->FinishSession("second-session-0001", 0, hex), IsOk());
  Age(SessionRecord("first-session-00001"), kUploadSessionTtl + absl::Hours(1));

  ASSERT_THAT(store_->RemoveExpiredSessions(absl::Now()), IsOk());
  EXPECT_FALSE(Exists(SessionRecord("first-session-00001")));
  EXPECT_TRUE(store_->Contains(hex));
  auto state = store_->QuerySession("second-session-0001");
  ASSERT_THAT(state, IsOk());
  EXPECT_EQ(state->digest_hex, hex);  // the recent writer can still learn its digest
}

TEST_F(BlobStoreTest, WithoutACatalogOrWhenItCannotAnswerNoBlobIsRemoved) {
  const std::string data = RandomBytes(2000, 64);
  const std::string hex = Sha256::HexOf(data);
  ASSERT_THAT(store_->AppendToSession("plain-session-00001", 0, 0, data), IsOk());
  ASSERT_THAT(store_->FinishSession("plain-session-00001", 0, hex), IsOk());
  ASSERT_THAT(store_->RemoveExpiredSessions(absl::Now() + kUploadSessionTtl + absl::Hours(1)),
              IsOk());
  EXPECT_TRUE(store_->Contains(hex));  // no is_referenced: the store never removes a blob

  const std::string data2 = RandomBytes(2000, 65);
  const std::string hex2 = Sha256::HexOf(data2);
  BlobStore::Options failing;
  failing.is_referenced = [](absl::string_view) -> absl::StatusOr<bool> {
    return absl::UnavailableError("catalog is busy");
  };
  store_.reset();
  auto store = BlobStore::Open(dir_.path(), failing);
  ASSERT_THAT(store, IsOk());
  ASSERT_THAT((*store)->AppendToSession("failing-session-001", 0, 0, data2), IsOk());
  ASSERT_THAT((*store)->FinishSession("failing-session-001", 0, hex2), IsOk());
  ASSERT_THAT((*store)->RemoveExpiredSessions(absl::Now() + kUploadSessionTtl + absl::Hours(1)),
              IsOk());
  EXPECT_TRUE((*store)->Contains(hex2));
}

TEST_F(BlobStoreTest, OrphanBlobsGoAtOpenToo) {
  std::set<std::string> declared;
  int asked = 0;
  const std::string data = RandomBytes(2000, 66);
  const std::string hex = Sha256::HexOf(data);
  ASSERT_THAT(store_->AppendToSession("restart-session-01", 0, 0, data), IsOk());
  ASSERT_THAT(store_->FinishSession("restart-session-01", 0, hex), IsOk());
  store_.reset();
  Age(SessionRecord("restart-session-01"), kUploadSessionTtl + absl::Hours(1));
  store_ = OpenStoreWithCatalog(dir_.path(), &declared, &asked);
  ASSERT_NE(store_, nullptr);
  EXPECT_EQ(asked, 1);
  EXPECT_FALSE(store_->Contains(hex));
}

TEST_F(BlobStoreTest, SessionsAndDigestUploadsOfTheSameBytesDoNotMeet) {
  const std::string data = RandomBytes(4000, 50);
  const std::string hex = Sha256::HexOf(data);
  ASSERT_THAT(store_->Append(hex, 4000, 0, data.substr(0, 1000)), IsOk());
  ASSERT_THAT(WriteSession(*store_, kSessionId, data, 3000, 4000), IsOk());
  EXPECT_THAT(store_->UploadOffset(hex, 4000), IsOkAndHolds(1000));
  ASSERT_THAT(store_->FinishSession(kSessionId, 4000, hex), IsOkAndHolds(4000));
  // The digest upload now finds its blob stored.
  EXPECT_THAT(store_->UploadOffset(hex, 4000), IsOkAndHolds(4000));
  EXPECT_THAT(store_->Finish(hex, 4000), IsOk());
  EXPECT_EQ(ReadAll(*store_, hex), data);
}

}  // namespace
}  // namespace modeldist::storage
