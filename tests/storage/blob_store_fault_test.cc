// The blob store on a failing disk (FaultInjectingFs, tests/testing/fault_fs.h): for each write
// of an upload (the partial's bytes, its fsync, the chain sidecar, the rename into blobs/), by
// digest and in a session, and for each fault a disk gives (ENOSPC, EIO, a short write, a
// failed fsync), the upload fails with a clear error (DISK_FULL or IO_ERROR, naming the file),
// no blob is stored or served, and once the disk is healthy again the same upload resumes and
// stores a blob that verifies. Also the free-space margin (Options::min_free_bytes).
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/digest.h"
#include "common/file_util.h"
#include "common/status.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "storage/blob_store.h"
#include "tests/storage/blob_store_fixture.h"
#include "tests/testing/fault_fs.h"
#include "tests/testing/test_util.h"

namespace modeldist::storage {
namespace {

using ::modeldist::testing::Fault;
using ::modeldist::testing::FaultInjectingFs;
using ::modeldist::testing::FaultRule;
using ::modeldist::testing::FsOp;
using ::modeldist::testing::IsOk;
using ::modeldist::testing::IsOkAndHolds;
using ::testing::HasSubstr;

// Upload ids are 16 to 64 characters (ValidateUploadId).
constexpr char kSession[] = "session-with-fault-01";
constexpr char kPipe[] = "pipe-of-unknown-size";

// Where in an upload the fault strikes.
enum class Stage { kAppend, kFinish };

struct FaultCase {
  const char* label;
  FsOp op;
  Fault fault;
  // Under the store's root; "" for every file.
  const char* path_under;
  Stage stage;
  absl::StatusCode code;
  const char* reason;
  // A word the message must contain, naming what failed.
  const char* what;
};

std::string PrintCase(const ::testing::TestParamInfo<FaultCase>& info) { return info.param.label; }

const FaultCase kCases[] = {
    {"PartialWriteNoSpace", FsOp::kWrite, Fault::kNoSpace, "uploads/", Stage::kAppend,
     absl::StatusCode::kResourceExhausted, "DISK_FULL", "write"},
    {"PartialWriteIoError", FsOp::kWrite, Fault::kIoError, "uploads/", Stage::kAppend,
     absl::StatusCode::kUnavailable, "IO_ERROR", "write"},
    {"PartialShortWrite", FsOp::kWrite, Fault::kShortWrite, "uploads/", Stage::kAppend,
     absl::StatusCode::kResourceExhausted, "DISK_FULL", "write"},
    {"PartialCreateNoSpace", FsOp::kOpen, Fault::kNoSpace, "uploads/", Stage::kAppend,
     absl::StatusCode::kResourceExhausted, "DISK_FULL", "open"},
    {"PartialFsyncFails", FsOp::kFsync, Fault::kIoError, "uploads/", Stage::kFinish,
     absl::StatusCode::kUnavailable, "IO_ERROR", "fsync"},
    {"SidecarWriteNoSpace", FsOp::kWrite, Fault::kNoSpace, "uploads/", Stage::kFinish,
     absl::StatusCode::kResourceExhausted, "DISK_FULL", ".chain"},
    {"FanOutMkdirNoSpace", FsOp::kMkdir, Fault::kNoSpace, "blobs/", Stage::kFinish,
     absl::StatusCode::kResourceExhausted, "DISK_FULL", "mkdir"},
    {"RenameIntoBlobsIoError", FsOp::kRename, Fault::kIoError, "blobs/", Stage::kFinish,
     absl::StatusCode::kUnavailable, "IO_ERROR", "rename"},
};

// A blob store on FaultInjectingFs in a scratch directory. `Base` is ::testing::Test or a
// ::testing::TestWithParam.
template <typename Base>
class FaultyDiskTest : public Base {
 protected:
  void SetUp() override {
    BlobStore::Options options;
    options.fs = &fs_;
    auto store = BlobStore::Open(dir_.path(), options);
    ASSERT_THAT(store, IsOk());
    store_ = *std::move(store);
  }

  ::modeldist::testing::ScratchDir dir_;
  FaultInjectingFs fs_;
  std::unique_ptr<BlobStore> store_;
};

class BlobStoreFaultTest : public FaultyDiskTest<::testing::TestWithParam<FaultCase>> {
 protected:
  // Arms the case's fault. A Finish-stage write fault must miss the partial's own appends,
  // so it targets the sidecar's temp file by name.
  void Arm(const std::string& hex) {
    const FaultCase& c = GetParam();
    FaultRule rule{c.op, c.fault, dir_.Join(c.path_under)};
    if (c.stage == Stage::kFinish && c.op == FsOp::kWrite) {
      rule.path_prefix = dir_.Join(absl::StrCat("uploads/", hex, ".chain"));
    }
    fs_.Inject(rule);
  }

  void ExpectClearError(const absl::Status& status) {
    const FaultCase& c = GetParam();
    EXPECT_GT(fs_.injected(), 0) << "the fault was never reached";
    EXPECT_EQ(status.code(), c.code) << status;
    EXPECT_EQ(ErrorReason(status), c.reason) << status;
    EXPECT_THAT(std::string(status.message()), HasSubstr(c.what));
    EXPECT_THAT(std::string(status.message()), HasSubstr(dir_.path()));
  }

  // Nothing of blob `hex` is stored, listed or served, and uploads/ holds no temp file.
  void ExpectNotStored(const std::string& hex) {
    EXPECT_FALSE(store_->Contains(hex));
    EXPECT_TRUE(IsNotStored(store_->OpenBlob(hex).status()));
    EXPECT_THAT(store_->ListBlobs(), IsOkAndHolds(::testing::IsEmpty()));
    for (const std::string& file : FilesUnder(dir_.path())) {
      EXPECT_THAT(file, ::testing::Not(HasSubstr(".tmp"))) << "temp file left behind";
      EXPECT_THAT(file, ::testing::Not(::testing::StartsWith("blobs/"))) << file;
    }
  }

  void ExpectStoredAndVerified(const std::string& hex, const std::string& data) {
    ASSERT_TRUE(store_->Contains(hex));
    EXPECT_EQ(ReadAll(*store_, hex), data);
    EXPECT_THAT(store_->Verify(hex), IsOk());
    EXPECT_THAT(store_->ChunkChain(hex), HoldsChain(ExpectedChain(data)));
  }
};

TEST_P(BlobStoreFaultTest, DigestUploadFailsClearlyStoresNothingAndResumes) {
  // More than one chunk, so that the chain has several entries.
  const std::string data = ::modeldist::testing::RandomBytes(kChunkDigestBytes + 12345, 7);
  const std::string hex = Sha256::HexOf(data);
  const int64_t size = static_cast<int64_t>(data.size());
  const size_t half = data.size() / 2;
  MD_ASSERT_OK(store_->Append(hex, size, 0, data.substr(0, half)));

  Arm(hex);
  absl::Status status = store_->Append(hex, size, static_cast<int64_t>(half), data.substr(half));
  if (GetParam().stage == Stage::kFinish) {
    MD_ASSERT_OK(status);
    status = store_->Finish(hex, size);
  }
  ExpectClearError(status);
  ExpectNotStored(hex);
  // The partial holds exactly the committed bytes: none of a failed write stays behind.
  absl::StatusOr<int64_t> offset = store_->UploadOffset(hex, size);
  ASSERT_THAT(offset, IsOk());
  EXPECT_EQ(*offset, GetParam().stage == Stage::kAppend ? static_cast<int64_t>(half) : size);

  fs_.Clear();
  if (*offset < size) {
    MD_ASSERT_OK(store_->Append(hex, size, *offset, data.substr(static_cast<size_t>(*offset))));
  }
  MD_ASSERT_OK(store_->Finish(hex, size));
  ExpectStoredAndVerified(hex, data);
}

TEST_P(BlobStoreFaultTest, SessionFailsClearlyStoresNothingAndResumes) {
  const std::string data = ::modeldist::testing::RandomBytes(kChunkDigestBytes + 777, 8);
  const std::string hex = Sha256::HexOf(data);
  const int64_t size = static_cast<int64_t>(data.size());
  const size_t half = data.size() / 2;
  MD_ASSERT_OK(store_->AppendToSession(kSession, size, 0, data.substr(0, half)));

  Arm(hex);
  absl::Status status =
      store_->AppendToSession(kSession, size, static_cast<int64_t>(half), data.substr(half));
  if (GetParam().stage == Stage::kFinish) {
    MD_ASSERT_OK(status);
    status = store_->FinishSession(kSession, size, hex).status();
  }
  ExpectClearError(status);
  ExpectNotStored(hex);
  absl::StatusOr<UploadSessionState> state = store_->QuerySession(kSession);
  ASSERT_THAT(state, IsOk());
  EXPECT_FALSE(state->finished());
  EXPECT_EQ(state->committed_size,
            GetParam().stage == Stage::kAppend ? static_cast<int64_t>(half) : size);

  fs_.Clear();
  const size_t from = static_cast<size_t>(state->committed_size);
  if (from < data.size()) {
    MD_ASSERT_OK(store_->AppendToSession(kSession, size, state->committed_size, data.substr(from)));
  }
  EXPECT_THAT(store_->FinishSession(kSession, size, hex), IsOkAndHolds(size));
  ExpectStoredAndVerified(hex, data);
}

INSTANTIATE_TEST_SUITE_P(EveryWriteAndFault, BlobStoreFaultTest, ::testing::ValuesIn(kCases),
                         PrintCase);

// A failed fsync leaves the partial's bytes on disk unknown, whatever the page cache shows. A
// retried finish must verify what the file holds then, not commit on the hash it had before.
class BlobStoreFsyncTest : public FaultyDiskTest<::testing::Test> {
 protected:
  // Makes what the disk holds differ from what was hashed (the byte at `offset` of `data`
  // lost in the failed write-back), while the file looks the same: size and mtime unchanged.
  static void FlipByteKeepingMtime(const std::string& path, const std::string& data,
                                   size_t offset) {
    struct stat before;
    ASSERT_EQ(::stat(path.c_str(), &before), 0);
    ScopedFd fd(::open(path.c_str(), O_WRONLY | O_CLOEXEC));
    ASSERT_TRUE(fd.valid());
    const char flipped = static_cast<char>(data[offset] ^ 0x5a);
    ASSERT_EQ(::pwrite(fd.get(), &flipped, 1, static_cast<off_t>(offset)), 1);
    const struct timespec times[2] = {before.st_atim, before.st_mtim};
    ASSERT_EQ(::futimens(fd.get(), times), 0);
  }
};

TEST_F(BlobStoreFsyncTest, AFinishRetriedAfterAFailedFsyncVerifiesTheBytesAgain) {
  const std::string data = ::modeldist::testing::RandomBytes(kChunkDigestBytes + 4321, 9);
  const std::string hex = Sha256::HexOf(data);
  const int64_t size = static_cast<int64_t>(data.size());
  const std::string partial = dir_.Join(absl::StrCat("uploads/", hex, ".partial"));
  MD_ASSERT_OK(store_->Append(hex, size, 0, data));

  fs_.Inject({FsOp::kFsync, Fault::kIoError, partial, /*skip=*/0, /*times=*/1});
  absl::Status failed = store_->Finish(hex, size);
  ASSERT_EQ(fs_.injected(), 1);
  EXPECT_EQ(ErrorReason(failed), "IO_ERROR") << failed;
  EXPECT_FALSE(store_->Contains(hex));

  ASSERT_NO_FATAL_FAILURE(FlipByteKeepingMtime(partial, data, data.size() / 2));

  absl::Status retried = store_->Finish(hex, size);
  EXPECT_EQ(retried.code(), absl::StatusCode::kDataLoss) << retried;
  EXPECT_EQ(ErrorReason(retried), "DIGEST_MISMATCH") << retried;
  EXPECT_FALSE(store_->Contains(hex)) << "bytes that do not hash to the digest were stored";

  // The upload starts over and stores the right bytes.
  EXPECT_THAT(store_->UploadOffset(hex, size), IsOkAndHolds(0));
  MD_ASSERT_OK(store_->Append(hex, size, 0, data));
  MD_ASSERT_OK(store_->Finish(hex, size));
  EXPECT_EQ(ReadAll(*store_, hex), data);
  EXPECT_THAT(store_->Verify(hex), IsOk());
}

// The same for an upload session, whose finish goes through the same commit.
TEST_F(BlobStoreFsyncTest, ASessionFinishRetriedAfterAFailedFsyncVerifiesTheBytesAgain) {
  const std::string data = ::modeldist::testing::RandomBytes(kChunkDigestBytes + 99, 10);
  const std::string hex = Sha256::HexOf(data);
  const int64_t size = static_cast<int64_t>(data.size());
  const std::string partial = dir_.Join(absl::StrCat("uploads/session-", kSession, ".partial"));
  MD_ASSERT_OK(store_->AppendToSession(kSession, size, 0, data));

  fs_.Inject({FsOp::kFsync, Fault::kIoError, partial, /*skip=*/0, /*times=*/1});
  EXPECT_EQ(ErrorReason(store_->FinishSession(kSession, size, hex).status()), "IO_ERROR");
  ASSERT_EQ(fs_.injected(), 1);
  ASSERT_NO_FATAL_FAILURE(FlipByteKeepingMtime(partial, data, 7));
  absl::StatusOr<int64_t> retried = store_->FinishSession(kSession, size, hex);
  EXPECT_EQ(ErrorReason(retried.status()), "DIGEST_MISMATCH") << retried.status();
  EXPECT_FALSE(store_->Contains(hex)) << "bytes that do not hash to the digest were stored";
}

// The free-space margin: an upload that would leave less than Options::min_free_bytes is
// refused before a byte is written, and smaller uploads still go through.
class BlobStoreMarginTest : public ::testing::Test {
 protected:
  static constexpr int64_t kMargin = 4 * kMiB;

  void SetUp() override {
    BlobStore::Options options;
    options.fs = &fs_;
    options.min_free_bytes = kMargin;
    auto store = BlobStore::Open(dir_.path(), options);
    ASSERT_THAT(store, IsOk());
    store_ = *std::move(store);
    fs_.SetFreeBytes(kMargin + kMiB);  // 1 MiB may still be written
  }

  static void ExpectRefused(const absl::Status& status) {
    EXPECT_EQ(status.code(), absl::StatusCode::kResourceExhausted) << status;
    EXPECT_EQ(ErrorReason(status), "INSUFFICIENT_SPACE") << status;
    EXPECT_THAT(std::string(status.message()), HasSubstr("--min-free-space"));
    EXPECT_EQ(ErrorMetadataValue(status, "min_free_bytes"), absl::StrCat(kMargin));
    EXPECT_EQ(ErrorMetadataValue(status, "free_bytes"), absl::StrCat(kMargin + kMiB));
  }

  ::modeldist::testing::ScratchDir dir_;
  FaultInjectingFs fs_;
  std::unique_ptr<BlobStore> store_;
};

TEST_F(BlobStoreMarginTest, RefusesAnUploadByItsDeclaredSizeBeforeWritingAndServesSmallOnes) {
  // Declares 2 MiB but sends only its first 1000 bytes: refused on the declared size.
  const std::string big = ::modeldist::testing::RandomBytes(2 * kMiB, 1);
  const std::string big_hex = Sha256::HexOf(big);
  absl::Status status = store_->Append(big_hex, 2 * kMiB, 0, big.substr(0, 1000));
  ExpectRefused(status);
  EXPECT_EQ(ErrorMetadataValue(status, "needed_bytes"), absl::StrCat(2 * kMiB));
  EXPECT_THAT(FilesUnder(dir_.path()), ::testing::IsEmpty()) << "nothing may be half-written";
  EXPECT_THAT(store_->UploadOffset(big_hex, 2 * kMiB), IsOkAndHolds(0));

  const std::string small = ::modeldist::testing::RandomBytes(100 * 1024, 2);
  MD_ASSERT_OK(store_->Put(Sha256::HexOf(small), small));
  EXPECT_EQ(ReadAll(*store_, Sha256::HexOf(small)), small);

  // Once there is room, the refused upload goes through.
  fs_.SetFreeBytes(kMargin + 3 * kMiB);
  MD_ASSERT_OK(store_->Put(big_hex, big));
  EXPECT_THAT(store_->Verify(big_hex), IsOk());
}

TEST_F(BlobStoreMarginTest, ChecksASessionOfUnknownSizeAsItsBytesArrive) {
  const std::string data = ::modeldist::testing::RandomBytes(2 * kMiB, 3);
  const std::string hex = Sha256::HexOf(data);
  // Declared size 0 (unknown): each write is checked on its own bytes.
  MD_ASSERT_OK(store_->AppendToSession(kPipe, 0, 0, data.substr(0, 512 * 1024)));
  const std::string rest = data.substr(512 * 1024);
  ExpectRefused(store_->AppendToSession(kPipe, 0, 512 * 1024, rest));
  // The refused write added nothing: the session still has exactly its first bytes.
  absl::StatusOr<UploadSessionState> state = store_->QuerySession(kPipe);
  ASSERT_THAT(state, IsOk());
  EXPECT_EQ(state->committed_size, 512 * 1024);
  struct stat st;
  ASSERT_EQ(::stat(dir_.Join("uploads/session-pipe-of-unknown-size.partial").c_str(), &st), 0);
  EXPECT_EQ(st.st_size, 512 * 1024);

  fs_.SetFreeBytes(std::nullopt);  // the real disk: far more than the margin here
  MD_ASSERT_OK(store_->AppendToSession(kPipe, 0, 512 * 1024, rest));
  EXPECT_THAT(store_->FinishSession(kPipe, 0, hex), IsOkAndHolds(2 * kMiB));
  EXPECT_THAT(store_->Verify(hex), IsOk());
}

}  // namespace
}  // namespace modeldist::storage
