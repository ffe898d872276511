// The server on a disk that fills up, through the real RegistryService.WriteArtifact: an
// upload that would leave less free space than --min-free-space is refused with
// RESOURCE_EXHAUSTED (INSUFFICIENT_SPACE) before a byte of it is written, while other clients
// are still served; and a disk that fails mid-upload (ENOSPC injected by FaultInjectingFs)
// gives RESOURCE_EXHAUSTED (DISK_FULL), stores nothing, and the upload resumes once there is
// room again.
#include <grpcpp/grpcpp.h>

#include <filesystem>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/digest.h"
#include "common/grpc_status.h"
#include "common/status.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "modeldist/v1/registry.grpc.pb.h"
#include "tests/testing/fault_fs.h"
#include "tests/testing/test_server.h"
#include "tests/testing/test_util.h"

namespace modeldist::testing {
namespace {

using ::testing::HasSubstr;

constexpr int64_t kMiB = 1 << 20;
constexpr int64_t kMargin = 64 * kMiB;

services::ServerConfig ConfigWith(FaultInjectingFs* fs) {
  services::ServerConfig config;
  config.fs = fs;
  config.min_free_bytes = kMargin;
  return config;
}

int64_t Committed(TestServer& server, const std::string& upload_id) {
  v1::QueryUploadRequest request;
  request.set_upload_id(upload_id);
  v1::QueryUploadResponse response;
  grpc::Status s = server.registry().QueryUpload(server.Admin().get(), request, &response);
  EXPECT_TRUE(s.ok()) << s.error_message();
  return response.committed_size();
}

// Files of upload session `upload_id` in the data directory (its partial, its record).
bool HasSessionFiles(TestServer& server, const std::string& upload_id) {
  for (const auto& entry :
       std::filesystem::directory_iterator(server.config().data_dir + "/uploads")) {
    if (absl::StrContains(entry.path().filename().string(), upload_id)) return true;
  }
  return false;
}

class DiskLimitsTest : public ::testing::Test {
 protected:
  DiskLimitsTest() : server_(ConfigWith(&fs_)) {}

  void SetUp() override {
    server_.PublishBlob("llama", "1", v1::PLATFORM_LINUX, v1::ARCH_X86_64, v1::FORMAT_GGUF,
                        RandomBytes(1000));
    server_.SetTier("llama8b", "", "models/llama/versions/1");
  }

  // Another client is still served: a small upload, and a device's manifest.
  void ExpectOthersServed(const std::string& upload_id) {
    SessionUpload small{.upload_id = upload_id, .bytes = RandomBytes(64 * 1024, 9)};
    grpc::Status s = server_.UploadSession(small);
    EXPECT_TRUE(s.ok()) << s.error_message();
    s = server_.GetManifest("llama8b", v1::PLATFORM_LINUX, v1::ARCH_X86_64);
    EXPECT_TRUE(s.ok()) << s.error_message();
  }

  // Declared before the server, which writes through it until it stops.
  FaultInjectingFs fs_;
  TestServer server_;
};

TEST_F(DiskLimitsTest, AnUploadThatWouldEatTheMarginIsRefusedWholeAndOthersAreServed) {
  fs_.SetFreeBytes(kMargin + 2 * kMiB);
  const std::string big = RandomBytes(4 * kMiB, 3);
  v1::WriteArtifactResponse response;
  grpc::Status s = server_.UploadSession(
      SessionUpload{.upload_id = "too-big-for-the-disk-1", .bytes = big}, &response);
  absl::Status status = FromGrpcStatus(s);
  EXPECT_EQ(status.code(), absl::StatusCode::kResourceExhausted) << status;
  EXPECT_EQ(ErrorReason(status), "INSUFFICIENT_SPACE") << status;
  EXPECT_THAT(s.error_message(), HasSubstr("--min-free-space"));
  EXPECT_THAT(s.error_message(), HasSubstr(absl::StrCat(kMargin)));
  // Nothing of it was written: no partial, and the session has no bytes.
  EXPECT_FALSE(HasSessionFiles(server_, "too-big-for-the-disk-1"));
  EXPECT_EQ(Committed(server_, "too-big-for-the-disk-1"), 0);

  ExpectOthersServed("small-upload-meanwhile-1");

  // With room again, the same upload goes through and verifies.
  fs_.SetFreeBytes(std::nullopt);
  s = server_.UploadSession(SessionUpload{.upload_id = "too-big-for-the-disk-1", .bytes = big},
                            &response);
  ASSERT_TRUE(s.ok()) << s.error_message();
  std::string read;
  ASSERT_TRUE(server_.ReadBlob(FormatDigest(Sha256::HexOf(big)), &read).ok());
  EXPECT_EQ(read, big);
}

TEST_F(DiskLimitsTest, ADiskThatFillsMidUploadGivesDiskFullStoresNothingAndTheUploadResumes) {
  const std::string data = RandomBytes(3 * kMiB, 4);
  // The second write of the partial fails: the first message's bytes are kept.
  fs_.Inject(FaultRule{.op = FsOp::kWrite,
                       .fault = Fault::kNoSpace,
                       .path_prefix = server_.config().data_dir + "/uploads/session-disk-fills-up",
                       .skip = 1});
  grpc::Status s = server_.UploadSession(SessionUpload{.upload_id = "disk-fills-up-0001",
                                                       .bytes = data,
                                                       .message_bytes = static_cast<size_t>(kMiB)});
  absl::Status status = FromGrpcStatus(s);
  EXPECT_GT(fs_.injected(), 0);
  EXPECT_EQ(status.code(), absl::StatusCode::kResourceExhausted) << status;
  EXPECT_EQ(ErrorReason(status), "DISK_FULL") << status;
  EXPECT_THAT(s.error_message(), HasSubstr("No space left on device"));
  std::string read;
  EXPECT_FALSE(server_.ReadBlob(FormatDigest(Sha256::HexOf(data)), &read).ok())
      << "nothing is served";
  const int64_t kept = Committed(server_, "disk-fills-up-0001");
  EXPECT_EQ(kept, kMiB);

  fs_.Clear();
  ExpectOthersServed("small-upload-meanwhile-2");
  s = server_.UploadSession(
      SessionUpload{.upload_id = "disk-fills-up-0001", .bytes = data, .offset = kept});
  ASSERT_TRUE(s.ok()) << s.error_message();
  read.clear();
  ASSERT_TRUE(server_.ReadBlob(FormatDigest(Sha256::HexOf(data)), &read).ok());
  EXPECT_EQ(read, data);
}

}  // namespace
}  // namespace modeldist::testing
