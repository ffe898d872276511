// The blob store's upload sessions: hashed as written and stored under the writer's digest
// once it agrees, resumed after a restart, refused when wrong, and removed when expired with
// the blobs nothing wants any more.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <set>
#include <string>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
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
