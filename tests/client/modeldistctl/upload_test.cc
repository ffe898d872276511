// Tests of upload.h against FakeRegistry: the retry policy, and the resumable uploader that
// hashes the file as it sends it, resumes from the server's committed size and never vouches
// for bytes that changed.
#include "client/modeldistctl/upload.h"

#include <sys/stat.h>

#include <fstream>
#include <string>
#include <thread>

#include "absl/strings/match.h"
#include "absl/time/time.h"
#include "client/modeldistctl/errors.h"
#include "client/modeldistctl/hashing_file_reader.h"
#include "common/digest.h"
#include "common/names.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/client/modeldistctl/ctl_fixture.h"
#include "tests/testing/test_util.h"

namespace modeldist::ctl {
namespace {

using ::modeldist::testing::IsOk;
using ::modeldist::testing::StatusIs;
using ::testing::_;
using ::testing::AllOf;
using ::testing::HasSubstr;

// The policy itself (codes, backoff, jitter) is tested in tests/common/retry_policy_test.cc;
// this is what the upload adds to it.
TEST(UploadRetryTest, RetriesOnlyTheNamedCodesOfServerErrors) {
  RetryPolicy policy;
  EXPECT_TRUE(IsRetryableUploadError(policy, absl::UnavailableError("x")));
  EXPECT_TRUE(IsRetryableUploadError(policy, absl::DeadlineExceededError("x")));
  EXPECT_FALSE(IsRetryableUploadError(policy, absl::OkStatus()));
  EXPECT_FALSE(IsRetryableUploadError(policy, absl::NotFoundError("x")));
  EXPECT_FALSE(IsRetryableUploadError(policy, absl::DataLossError("x")));
  EXPECT_FALSE(IsRetryableUploadError(policy, absl::UnauthenticatedError("x")));
  EXPECT_FALSE(IsRetryableUploadError(policy, LocalError(absl::UnavailableError("disk"))));
  policy.retryable_codes.insert(absl::StatusCode::kAborted);
  EXPECT_TRUE(IsRetryableUploadError(policy, absl::AbortedError("x")));
}

constexpr char kUploadId[] = "ctl-test-0123456789abcdef";

TEST_F(FakeServerTest, UploadReadsTheFileOnceHashingItAsItSends) {
  HashingFileReader file = OpenFile();
  ArtifactUploader uploader(client_.get(), FastUpload());
  UploadStats stats;
  absl::StatusOr<FileDigest> uploaded = uploader.Upload(file, kUploadId, &stats);
  ASSERT_THAT(uploaded, IsOk());
  EXPECT_EQ(FormatDigest(uploaded->hex), digest_);
  EXPECT_EQ(uploaded->size, kFileSize);
  EXPECT_EQ(fake_.blob(digest_).data, contents_);
  EXPECT_TRUE(fake_.blob(digest_).complete);
  EXPECT_EQ(stats.resumed_from, 0);
  EXPECT_EQ(stats.bytes_sent, kFileSize);
  EXPECT_EQ(stats.bytes_read, kFileSize);  // One pass: hashing did not read it again.
  EXPECT_EQ(stats.streams, 1);
  EXPECT_TRUE(sleeps_.empty());
}

TEST_F(FakeServerTest, DroppedStreamIsRetriedFromTheCommittedSize) {
  fake_.DropNextStreamAfter(2 << 20);
  HashingFileReader file = OpenFile();
  ArtifactUploader uploader(client_.get(), FastUpload());
  UploadStats stats;
  absl::StatusOr<FileDigest> uploaded = uploader.Upload(file, kUploadId, &stats);
  ASSERT_THAT(uploaded, IsOk());
  EXPECT_EQ(FormatDigest(uploaded->hex), digest_);
  EXPECT_EQ(fake_.blob(digest_).data, contents_);
  EXPECT_EQ(stats.streams, 2);
  ASSERT_EQ(sleeps_.size(), 1u);
  EXPECT_EQ(sleeps_[0], RetryPolicy().initial_backoff);
  // The server received each byte once: the retry resumed instead of starting over. Only
  // what was in flight when the stream broke may have been read from the file again.
  EXPECT_EQ(fake_.bytes_received(), kFileSize);
  EXPECT_GE(stats.bytes_read, kFileSize);
  EXPECT_LE(stats.bytes_read, stats.bytes_sent + (1 << 20));  // Resent bytes, one message.
}

TEST_F(FakeServerTest, GivesUpAfterMaxAttemptsWithoutProgress) {
  fake_.FailQueries(100);
  UploadOptions options = FastUpload();
  options.retry.max_attempts = 3;
  HashingFileReader file = OpenFile();
  ArtifactUploader uploader(client_.get(), options);
  UploadStats stats;
  EXPECT_THAT(uploader.Upload(file, kUploadId, &stats),
              StatusIs(absl::StatusCode::kUnavailable, HasSubstr("gave up after 3 attempts")));
  ASSERT_EQ(sleeps_.size(), 2u);
  EXPECT_EQ(sleeps_[1], 2 * sleeps_[0]);
  EXPECT_EQ(fake_.write_streams(), 0);
  EXPECT_EQ(stats.bytes_read, 0);
}

TEST_F(FakeServerTest, DigestMismatchAtTheServerIsNotRetried) {
  // A byte damaged on its way in: the server's hash cannot match the digest sent.
  fake_.CorruptNextByte();
  HashingFileReader file = OpenFile();
  ArtifactUploader uploader(client_.get(), FastUpload());
  UploadStats stats;
  EXPECT_THAT(uploader.Upload(file, kUploadId, &stats),
              StatusIs(absl::StatusCode::kDataLoss, HasSubstr("digest mismatch")));
  EXPECT_TRUE(sleeps_.empty());
  EXPECT_EQ(stats.streams, 1);
  EXPECT_FALSE(fake_.blob(digest_).complete);
}

TEST_F(FakeServerTest, FileThatChangesDuringTheUploadIsALocalErrorAndNeverFinished) {
  UploadOptions options = FastUpload();
  bool changed = false;
  options.on_progress = [&](int64_t position) {
    if (changed || position < (1 << 20)) return;
    changed = true;
    std::ofstream(path_, std::ios::binary | std::ios::app) << "more";
  };
  HashingFileReader file = OpenFile();
  ArtifactUploader uploader(client_.get(), options);
  UploadStats stats;
  absl::StatusOr<FileDigest> uploaded = uploader.Upload(file, kUploadId, &stats);
  EXPECT_THAT(uploaded, StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("changed")));
  EXPECT_EQ(ExitCodeFor(uploaded.status()), kExitLocal);
  EXPECT_TRUE(changed);
  EXPECT_TRUE(sleeps_.empty());
  // Bytes went out (the stream was cancelled, so maybe not all arrived), but no finish_write
  // vouched for them.
  EXPECT_FALSE(fake_.blob(digest_).complete);
  EXPECT_TRUE(absl::StartsWith(contents_, fake_.session_data(kUploadId)));
}

TEST_F(FakeServerTest, ByteCapStopsAndAResumeReadsThePrefixOnlyToHashIt) {
  HashingFileReader first_run = OpenFile();
  ArtifactUploader capped(client_.get(), WithCap(3 << 20));
  UploadStats first;
  EXPECT_THAT(capped.Upload(first_run, kUploadId, &first), StatusIs(absl::StatusCode::kAborted, _));
  EXPECT_EQ(first.bytes_sent, 3 << 20);
  EXPECT_EQ(first.bytes_read, 3 << 20);
  EXPECT_EQ(fake_.session_data(kUploadId), contents_.substr(0, 3 << 20));

  // A new run (a new reader, as after a restart) hashes the 3 MiB the server holds, then
  // sends only the rest.
  HashingFileReader second_run = OpenFile();
  ArtifactUploader rest(client_.get(), FastUpload());
  UploadStats second;
  ASSERT_THAT(rest.Upload(second_run, kUploadId, &second), IsOk());
  EXPECT_EQ(second.resumed_from, 3 << 20);
  EXPECT_EQ(second.bytes_sent, kFileSize - (3 << 20));
  EXPECT_EQ(second.bytes_read, kFileSize);
  EXPECT_EQ(fake_.blob(digest_).data, contents_);

  // Once finished, nothing more is sent; the file is hashed to check it is what was stored.
  HashingFileReader third_run = OpenFile();
  UploadStats third;
  absl::StatusOr<FileDigest> again = rest.Upload(third_run, kUploadId, &third);
  ASSERT_THAT(again, IsOk());
  EXPECT_EQ(FormatDigest(again->hex), digest_);
  EXPECT_TRUE(third.already_complete);
  EXPECT_EQ(third.bytes_sent, 0);
  EXPECT_EQ(third.bytes_read, kFileSize);
  EXPECT_EQ(fake_.bytes_received(), kFileSize);
}

TEST_F(FakeServerTest, AFinishedSessionOfOtherBytesIsALocalError) {
  HashingFileReader file = OpenFile();
  ArtifactUploader uploader(client_.get(), FastUpload());
  UploadStats stats;
  ASSERT_THAT(uploader.Upload(file, kUploadId, &stats), IsOk());
  // Same size, other bytes, and the session id of the old file (as if the modification time
  // had been forged back).
  WriteFile(path_, modeldist::testing::RandomBytes(kFileSize, 8));
  HashingFileReader changed = OpenFile();
  UploadStats again;
  absl::StatusOr<FileDigest> status = uploader.Upload(changed, kUploadId, &again);
  EXPECT_THAT(status, StatusIs(absl::StatusCode::kFailedPrecondition,
                               AllOf(HasSubstr(digest_), HasSubstr("touch it"))));
  EXPECT_EQ(ExitCodeFor(status.status()), kExitLocal);
}

TEST_F(FakeServerTest, PipesAreReadOnceAndUploadedWithoutADeclaredSize) {
  const std::string fifo = dir_.Join("model.fifo");
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  std::thread writer([&] { std::ofstream(fifo, std::ios::binary) << contents_; });
  absl::StatusOr<HashingFileReader> file = HashingFileReader::Open(fifo);
  ASSERT_THAT(file, IsOk());
  EXPECT_TRUE(file->is_pipe());
  EXPECT_EQ(file->size(), -1);
  const std::string id = UploadIdFor(*file);
  EXPECT_THAT(ValidateUploadId("upload_id", id), IsOk());
  ArtifactUploader uploader(client_.get(), FastUpload());
  UploadStats stats;
  absl::StatusOr<FileDigest> uploaded = uploader.Upload(*file, id, &stats);
  writer.join();
  ASSERT_THAT(uploaded, IsOk());
  EXPECT_EQ(FormatDigest(uploaded->hex), digest_);
  EXPECT_EQ(uploaded->size, kFileSize);
  EXPECT_EQ(fake_.blob(digest_).data, contents_);
  EXPECT_EQ(stats.bytes_read, kFileSize);
}

TEST_F(FakeServerTest, UploadIdsFollowTheFilesIdentity) {
  const std::string id = UploadIdFor(OpenFile());
  EXPECT_THAT(ValidateUploadId("upload_id", id), IsOk());
  EXPECT_TRUE(absl::StartsWith(id, "ctl-"));
  EXPECT_EQ(UploadIdFor(OpenFile()), id);  // The same, unchanged file: resume.
  EXPECT_NE(UploadIdFor(*HashingFileReader::Open(zip_path_)), id);
  WriteFile(path_, contents_ + "x");
  EXPECT_NE(UploadIdFor(OpenFile()), id);  // Changed: a new session.
}

}  // namespace
}  // namespace modeldist::ctl
