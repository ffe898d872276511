// Integrity at rest, end to end: a stored blob damaged on disk (a flipped byte, a lost or an
// extra byte, a deleted file) is never served as good. Read ends with DATA_LOSS before the
// damaged chunk is complete on the wire, Stat reports no wrong size, the blob is quarantined
// and recorded (audit log), GetManifest withholds its manifests, and storing the right bytes
// again heals it.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <string>

#include "absl/strings/str_cat.h"
#include "common/digest.h"
#include "common/status.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "common/grpc_status.h"
#include "storage/blob_record.h"
#include "tests/testing/test_server.h"

namespace modeldist::testing {
namespace {

using ::testing::HasSubstr;

constexpr int64_t kChunk = storage::kChunkDigestBytes;

using Damage = FileDamage;

class IntegrityTest : public ::testing::Test {
 protected:
  void SetUp() override {
    digest_ =
        server_.PublishBlob("m", "1", v1::PLATFORM_LINUX, v1::ARCH_ANY, v1::FORMAT_GGUF, bytes_);
    server_.SetTier("t", "stable", "models/m/versions/1");
    hex_ = digest_.substr(kSha256Prefix.size());
  }

  std::string BlobPath() const {
    return absl::StrCat(server_.data_dir(), "/data/blobs/sha256/", hex_.substr(0, 2), "/", hex_);
  }

  // Damages the stored blob the way an operator or a disk would (bypassing the store).
  void Break(Damage damage, int64_t at = kChunk + 5) { DamageFile(BlobPath(), damage, at); }

  // Reads [offset, offset + limit) of the blob; `got` gets every byte received.
  absl::Status Read(std::string* got, int64_t offset = 0, int64_t limit = 0) {
    return FromGrpcStatus(server_.ReadBlob(digest_, got, offset, limit));
  }

  absl::StatusOr<int64_t> Stat() {
    v1::StatRequest request;
    request.set_digest(digest_);
    v1::StatResponse response;
    grpc::ClientContext context;
    absl::Status s = FromGrpcStatus(server_.artifacts().Stat(&context, request, &response));
    if (!s.ok()) return s;
    return response.size_bytes();
  }

  absl::StatusOr<v1::Manifest> GetManifest() {
    v1::SignedManifest signed_manifest;
    absl::Status s = FromGrpcStatus(
        server_.GetManifest("t", v1::PLATFORM_LINUX, v1::ARCH_X86_64, &signed_manifest));
    if (!s.ok()) return s;
    v1::Manifest m;
    EXPECT_TRUE(m.ParseFromString(signed_manifest.manifest()));
    return m;
  }

  // The actions of the audit log, newest first.
  std::vector<std::string> AuditActions() {
    v1::ListAuditLogRequest request;
    request.set_page_size(1000);
    v1::ListAuditLogResponse response;
    EXPECT_TRUE(server_.registry().ListAuditLog(server_.Admin().get(), request, &response).ok());
    std::vector<std::string> actions;
    for (const v1::AuditEntry& e : response.entries()) actions.push_back(e.action());
    return actions;
  }

  bool Quarantined() const {
    struct stat st;
    return ::stat(absl::StrCat(server_.data_dir(), "/data/quarantine/", hex_).c_str(), &st) == 0;
  }

  // What must hold once damage was detected: contained, recorded, withheld.
  void ExpectContained() {
    struct stat st;
    EXPECT_NE(::stat(BlobPath().c_str(), &st), 0) << "the damaged file is still in blobs/";
    EXPECT_TRUE(Quarantined());
    absl::StatusOr<v1::Manifest> m = GetManifest();
    EXPECT_EQ(m.status().code(), absl::StatusCode::kUnavailable) << m.status();
    EXPECT_EQ(ErrorReason(m.status()), "ARTIFACT_DAMAGED");
    EXPECT_THAT(m.status().message(), HasSubstr(digest_));
    EXPECT_THAT(AuditActions(), ::testing::Contains("BlobDamaged"));
    absl::StatusOr<int64_t> size = Stat();
    EXPECT_EQ(size.status().code(), absl::StatusCode::kNotFound);
    EXPECT_EQ(ErrorReason(size.status()), "BLOB_QUARANTINED");
    v1::GetVersionRequest get;
    get.set_name("models/m/versions/1");
    v1::Version version;
    ASSERT_TRUE(server_.registry().GetVersion(server_.Admin().get(), get, &version).ok());
    EXPECT_FALSE(version.artifacts(0).uploaded());
  }

  TestServer server_;
  // Three chain chunks, the last one short.
  const std::string bytes_ = RandomBytes(2 * kChunk + 12345, 9);
  std::string digest_;
  std::string hex_;
};

TEST_F(IntegrityTest, FlippedByteEndsReadWithDataLossBeforeItsChunkIsComplete) {
  ASSERT_TRUE(GetManifest().ok());
  Break(Damage::kFlip);
  std::string got;
  absl::Status s = Read(&got);
  EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss) << s;
  EXPECT_EQ(ErrorReason(s), "BLOB_CORRUPT");
  EXPECT_THAT(s.message(), HasSubstr("chunk 1 of 3"));
  // Chunk 0 went out whole; chunk 1, the damaged one, never completely.
  EXPECT_GE(got.size(), static_cast<size_t>(kChunk));
  EXPECT_LT(got.size(), static_cast<size_t>(2 * kChunk));
  EXPECT_EQ(got.substr(0, kChunk), bytes_.substr(0, kChunk));
  ExpectContained();
}

TEST_F(IntegrityTest, DamageAfterAVerifiedReadIsStillCaught) {
  // The first read verifies every chunk (and leaves them in the page cache); the damage then
  // changes the file, so nothing verified before may be trusted.
  std::string first;
  ASSERT_TRUE(Read(&first).ok());
  ASSERT_EQ(first, bytes_);
  std::string second;
  ASSERT_TRUE(Read(&second).ok()) << "a clean second read (chunks skipped) must succeed";
  ASSERT_EQ(second, bytes_);
  Break(Damage::kFlip, 2 * kChunk + 7);
  std::string got;
  absl::Status s = Read(&got);
  EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss) << s;
  EXPECT_LT(got.size(), bytes_.size());
  ExpectContained();
}

TEST_F(IntegrityTest, ReadsThatStartOrEndInsideADamagedChunkFail) {
  Break(Damage::kFlip, kChunk - 1);  // the last byte of chunk 0
  std::string got;
  absl::Status head = Read(&got, 0, 100);  // ends long before the damaged byte
  EXPECT_EQ(head.code(), absl::StatusCode::kDataLoss) << head;
  EXPECT_TRUE(got.empty()) << "the only message completes the read, so it is held back";
  // The first check quarantined the blob; the next read finds it gone.
  got.clear();
  EXPECT_EQ(Read(&got, kChunk - 10, 5).code(), absl::StatusCode::kNotFound);
  ExpectContained();
}

TEST_F(IntegrityTest, ReadInsideAChunkThatStartsMidwayIsChecked) {
  Break(Damage::kFlip, 10);
  std::string got;
  absl::Status s = Read(&got, kChunk - 100, 50);  // never touches byte 10 itself
  EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss) << s;
  EXPECT_TRUE(got.empty());
}

TEST_F(IntegrityTest, TruncatedFileFailsStat) {
  Break(Damage::kTruncate);
  absl::StatusOr<int64_t> size = Stat();
  EXPECT_EQ(size.status().code(), absl::StatusCode::kDataLoss) << size.status();
  EXPECT_EQ(ErrorReason(size.status()), "BLOB_SIZE_MISMATCH");
  ExpectContained();
}

TEST_F(IntegrityTest, ExtendedFileFailsStatAndRead) {
  Break(Damage::kExtend);
  std::string got;
  absl::Status s = Read(&got);
  EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss) << s;
  EXPECT_EQ(ErrorReason(s), "BLOB_SIZE_MISMATCH");
  EXPECT_TRUE(got.empty());
  ExpectContained();
}

TEST_F(IntegrityTest, TruncatedFileFailsReadAtTheOldLastOffset) {
  Break(Damage::kTruncate);
  std::string got;
  absl::Status s = Read(&got, static_cast<int64_t>(bytes_.size()) - 1, 0);
  EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss) << s;
  EXPECT_TRUE(got.empty());
  ExpectContained();
}

TEST_F(IntegrityTest, DeletedFileIsFoundByReadAndWithheld) {
  Break(Damage::kDelete);
  std::string got;
  EXPECT_EQ(Read(&got).code(), absl::StatusCode::kNotFound);
  ExpectContained();
}

TEST_F(IntegrityTest, ServerRestartsWithADeletedBlobAndWithholdsIt) {
  Break(Damage::kDelete);
  server_.Restart();  // before: the start failed on the missing chain
  ExpectContained();
}

TEST_F(IntegrityTest, StoringTheBytesAgainHeals) {
  ASSERT_TRUE(GetManifest().ok());
  const int64_t sequence = GetManifest()->sequence();
  Break(Damage::kFlip);
  std::string got;
  ASSERT_EQ(Read(&got).code(), absl::StatusCode::kDataLoss);
  ExpectContained();

  SessionUpload upload;
  upload.upload_id = "heal-0123456789abcdef";
  upload.bytes = bytes_;
  ASSERT_TRUE(server_.UploadSession(upload).ok());
  absl::StatusOr<v1::Manifest> m = GetManifest();
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ(m->artifact().digest(), digest_);
  EXPECT_EQ(m->sequence(), sequence) << "healing changes nothing devices must act on";
  EXPECT_EQ(AuditActions().front(), "BlobRestored");
  got.clear();
  ASSERT_TRUE(Read(&got).ok());
  EXPECT_EQ(got, bytes_);
  EXPECT_EQ(*Stat(), static_cast<int64_t>(bytes_.size()));
}

TEST_F(IntegrityTest, AnUndamagedReadIsNotRecorded) {
  std::string got;
  ASSERT_TRUE(Read(&got).ok());
  EXPECT_EQ(got, bytes_);
  EXPECT_FALSE(Quarantined());
  EXPECT_THAT(AuditActions(), ::testing::Not(::testing::Contains("BlobDamaged")));
  ASSERT_TRUE(GetManifest().ok());
}

}  // namespace
}  // namespace modeldist::testing
