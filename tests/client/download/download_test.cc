// DownloadArtifact end to end: against a real server for the normal paths, and against a
// small hand-written fake ArtifactService for what a real server never does (corrupt bytes,
// a stream cut in the middle).
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <fstream>
#include <sstream>

#include "client/download/artifact_download.h"
#include "common/digest.h"
#include "common/file_util.h"
#include "common/status.h"
#include "gtest/gtest.h"
#include "tests/testing/test_server.h"

namespace modeldist::testing {
namespace {

using client::DownloadArtifact;
using client::DownloadOptions;
using client::DownloadResult;
using client::PartialPath;

bool Exists(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0;
}

std::string Slurp(const std::string& path) {
  auto text = ReadFileToString(path);
  return text.ok() ? *text : "<missing: " + std::string(text.status().message()) + ">";
}

void Spit(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << bytes;
}

// Serves `bytes` under any digest, as ArtifactService.Read would, with faults on request.
class FakeArtifactService final : public v1::ArtifactService::Service {
 public:
  explicit FakeArtifactService(std::string bytes) : bytes_(std::move(bytes)) {}

  // The next Read stops with UNAVAILABLE once it has sent at least this many bytes.
  void FailNextReadAfter(int64_t bytes) { fail_after_ = bytes; }
  // Every Read flips the byte at this offset.
  void CorruptByteAt(int64_t offset) { corrupt_at_ = offset; }
  int64_t last_offset() const { return last_offset_; }

  grpc::Status Read(grpc::ServerContext*, const v1::ReadRequest* request,
                    grpc::ServerWriter<v1::ReadResponse>* writer) override {
    last_offset_ = request->offset();
    const int64_t fail_after = fail_after_.exchange(-1);
    int64_t sent = 0;
    for (int64_t offset = request->offset(); offset < static_cast<int64_t>(bytes_.size());) {
      if (fail_after >= 0 && sent >= fail_after) {
        return grpc::Status(grpc::StatusCode::UNAVAILABLE, "injected: connection lost");
      }
      v1::ReadResponse response;
      response.set_offset(offset);
      std::string data = bytes_.substr(offset, kChunk);
      if (corrupt_at_ >= offset && corrupt_at_ < offset + static_cast<int64_t>(data.size())) {
        data[corrupt_at_ - offset] ^= 0x5a;
      }
      response.set_data(data);
      if (!writer->Write(response)) return grpc::Status::CANCELLED;
      offset += static_cast<int64_t>(data.size());
      sent += static_cast<int64_t>(data.size());
    }
    return grpc::Status::OK;
  }

 private:
  static constexpr int64_t kChunk = 64 * 1024;
  const std::string bytes_;
  std::atomic<int64_t> fail_after_{-1};
  std::atomic<int64_t> corrupt_at_{-1};
  std::atomic<int64_t> last_offset_{-1};
};

// An in-process gRPC server around a FakeArtifactService.
class FakeServer {
 public:
  explicit FakeServer(const std::string& bytes) : service_(bytes) {
    grpc::ServerBuilder builder;
    builder.RegisterService(&service_);
    server_ = builder.BuildAndStart();
    grpc::ChannelArguments args;
    args.SetMaxReceiveMessageSize(-1);
    channel_ = server_->InProcessChannel(args);
  }
  ~FakeServer() { server_->Shutdown(); }

  FakeArtifactService& service() { return service_; }
  const std::shared_ptr<grpc::Channel>& channel() const { return channel_; }

 private:
  FakeArtifactService service_;
  std::unique_ptr<grpc::Server> server_;
  std::shared_ptr<grpc::Channel> channel_;
};

class DownloadTest : public ::testing::Test {
 protected:
  void SetUp() override {
    digest_ =
        server_.PublishBlob("m", "1", v1::PLATFORM_LINUX, v1::ARCH_ANY, v1::FORMAT_GGUF, bytes_);
  }

  int64_t size() const { return static_cast<int64_t>(bytes_.size()); }

  TestServer server_;
  ScratchDir dir_;
  const std::string out_ = dir_.Join("model.gguf");
  // Several server chunks (256 KiB) and a ragged tail.
  const std::string bytes_ = RandomBytes(1024 * 1024 + 4097, 7);
  std::string digest_;
};

TEST_F(DownloadTest, DownloadsAndVerifies) {
  std::vector<int64_t> progress;
  DownloadOptions options;
  options.on_progress = [&](int64_t done, int64_t total) {
    EXPECT_EQ(total, size());
    progress.push_back(done);
  };
  auto result = DownloadArtifact(server_.channel(), digest_, size(), out_, options);
  MD_ASSERT_OK(result);
  EXPECT_EQ(result->path, out_);
  EXPECT_EQ(result->digest, digest_);
  EXPECT_EQ(result->size_bytes, size());
  EXPECT_EQ(result->resumed_from, 0);
  EXPECT_EQ(result->bytes_received, size());
  EXPECT_EQ(Slurp(out_), bytes_);
  EXPECT_FALSE(Exists(PartialPath(out_)));
  ASSERT_FALSE(progress.empty());
  EXPECT_TRUE(std::is_sorted(progress.begin(), progress.end()));
  EXPECT_EQ(progress.back(), size());
}

TEST_F(DownloadTest, FsyncOptionStillDownloads) {
  DownloadOptions options;
  options.fsync = true;
  MD_ASSERT_OK(DownloadArtifact(server_.channel(), digest_, size(), out_, options));
  EXPECT_EQ(Slurp(out_), bytes_);
}

TEST_F(DownloadTest, ReplacesAnExistingFile) {
  Spit(out_, "an older model");
  MD_ASSERT_OK(DownloadArtifact(server_.channel(), digest_, size(), out_));
  EXPECT_EQ(Slurp(out_), bytes_);
}

TEST_F(DownloadTest, ResumesFromPartial) {
  const int64_t have = 300000;  // not on a chunk boundary
  Spit(PartialPath(out_), bytes_.substr(0, have));
  auto result = DownloadArtifact(server_.channel(), digest_, size(), out_);
  MD_ASSERT_OK(result);
  EXPECT_EQ(result->resumed_from, have);
  EXPECT_EQ(result->bytes_received, size() - have);
  EXPECT_EQ(Slurp(out_), bytes_);
  EXPECT_FALSE(Exists(PartialPath(out_)));
}

TEST_F(DownloadTest, ResumeOffsetDiscardsBytesPastIt) {
  // The caller knows only 300000 bytes were synced; what follows is garbage from a crash.
  Spit(PartialPath(out_), bytes_.substr(0, 300000) + std::string(200000, 'x'));
  DownloadOptions options;
  options.resume_offset = 300000;
  auto result = DownloadArtifact(server_.channel(), digest_, size(), out_, options);
  MD_ASSERT_OK(result);
  EXPECT_EQ(result->resumed_from, 300000);
  EXPECT_EQ(Slurp(out_), bytes_);
}

TEST_F(DownloadTest, ResumeOffVersusAPartialStartsOver) {
  Spit(PartialPath(out_), std::string(1000, 'x'));
  DownloadOptions options;
  options.resume = false;
  auto result = DownloadArtifact(server_.channel(), digest_, size(), out_, options);
  MD_ASSERT_OK(result);
  EXPECT_EQ(result->resumed_from, 0);
  EXPECT_EQ(Slurp(out_), bytes_);
}

TEST_F(DownloadTest, PartialLongerThanArtifactStartsOver) {
  Spit(PartialPath(out_), bytes_ + "trailing");
  auto result = DownloadArtifact(server_.channel(), digest_, size(), out_);
  MD_ASSERT_OK(result);
  EXPECT_EQ(result->resumed_from, 0);
  EXPECT_EQ(Slurp(out_), bytes_);
}

TEST_F(DownloadTest, CorruptPartialIsDataLossThenRetrySucceeds) {
  std::string bad = bytes_.substr(0, 300000);
  bad[12345] ^= 1;
  Spit(PartialPath(out_), bad);
  auto result = DownloadArtifact(server_.channel(), digest_, size(), out_);
  EXPECT_THAT(result, StatusIs(absl::StatusCode::kDataLoss, ::testing::HasSubstr("hash to")));
  EXPECT_FALSE(Exists(out_));
  EXPECT_FALSE(Exists(PartialPath(out_)));
  // The bad partial is gone, so the retry starts at 0 and succeeds.
  result = DownloadArtifact(server_.channel(), digest_, size(), out_);
  MD_ASSERT_OK(result);
  EXPECT_EQ(result->resumed_from, 0);
  EXPECT_EQ(Slurp(out_), bytes_);
}

TEST_F(DownloadTest, ArtifactLongerThanExpectedIsDataLoss) {
  Spit(out_, "previous");
  auto result = DownloadArtifact(server_.channel(), digest_, size() - 1, out_);
  EXPECT_THAT(result, StatusIs(absl::StatusCode::kDataLoss, ::testing::HasSubstr("longer")));
  EXPECT_EQ(Slurp(out_), "previous");  // untouched
  EXPECT_FALSE(Exists(PartialPath(out_)));
}

TEST_F(DownloadTest, ArtifactShorterThanExpectedIsDataLoss) {
  auto result = DownloadArtifact(server_.channel(), digest_, size() + 1, out_);
  EXPECT_THAT(result, StatusIs(absl::StatusCode::kDataLoss, ::testing::HasSubstr("ended")));
  EXPECT_FALSE(Exists(out_));
  EXPECT_FALSE(Exists(PartialPath(out_)));
}

TEST_F(DownloadTest, UnknownDigestIsNotFoundAndLeavesNoFile) {
  const std::string other = FormatDigest(Sha256::HexOf("not published"));
  auto result = DownloadArtifact(server_.channel(), other, 13, out_);
  EXPECT_THAT(result, StatusIs(absl::StatusCode::kNotFound, ::testing::_));
  EXPECT_FALSE(Exists(out_));
  EXPECT_FALSE(Exists(PartialPath(out_)));
}

TEST_F(DownloadTest, RejectsBadArguments) {
  EXPECT_THAT(DownloadArtifact(server_.channel(), "sha256:XYZ", size(), out_),
              StatusIs(absl::StatusCode::kInvalidArgument, ::testing::_));
  EXPECT_THAT(DownloadArtifact(server_.channel(), digest_, -1, out_),
              StatusIs(absl::StatusCode::kInvalidArgument, ::testing::_));
  EXPECT_THAT(DownloadArtifact(server_.channel(), digest_, size(), ""),
              StatusIs(absl::StatusCode::kInvalidArgument, ::testing::_));
  EXPECT_FALSE(Exists(PartialPath(out_)));
}

class FakeDownloadTest : public ::testing::Test {
 protected:
  ScratchDir dir_;
  const std::string out_ = dir_.Join("model.bin");
  const std::string bytes_ = RandomBytes(500000, 9);
  const std::string digest_ = FormatDigest(Sha256::HexOf(bytes_));
  FakeServer fake_{bytes_};
};

TEST_F(FakeDownloadTest, CorruptedBytesAreDataLossAndLeaveNoFile) {
  fake_.service().CorruptByteAt(400000);
  Spit(out_, "previous");
  auto result = DownloadArtifact(fake_.channel(), digest_, 500000, out_);
  EXPECT_THAT(result, StatusIs(absl::StatusCode::kDataLoss, ::testing::HasSubstr(digest_)));
  EXPECT_EQ(ErrorReason(result.status()), "DIGEST_MISMATCH");
  EXPECT_EQ(Slurp(out_), "previous");
  EXPECT_FALSE(Exists(PartialPath(out_)));
}

TEST_F(FakeDownloadTest, MismatchedDigestIsDataLossAndLeavesNoFile) {
  const std::string wrong = FormatDigest(Sha256::HexOf("something else"));
  auto result = DownloadArtifact(fake_.channel(), wrong, 500000, out_);
  EXPECT_THAT(result, StatusIs(absl::StatusCode::kDataLoss, ::testing::_));
  EXPECT_FALSE(Exists(out_));
  EXPECT_FALSE(Exists(PartialPath(out_)));
}

TEST_F(FakeDownloadTest, InterruptedStreamKeepsPartialAndNextCallResumes) {
  fake_.service().FailNextReadAfter(200000);
  auto first = DownloadArtifact(fake_.channel(), digest_, 500000, out_);
  EXPECT_THAT(first, StatusIs(absl::StatusCode::kUnavailable, ::testing::HasSubstr("injected")));
  EXPECT_FALSE(Exists(out_));
  const std::string partial = Slurp(PartialPath(out_));
  ASSERT_GE(partial.size(), 200000u);
  ASSERT_LT(partial.size(), 500000u);
  EXPECT_EQ(partial, bytes_.substr(0, partial.size()));

  auto second = DownloadArtifact(fake_.channel(), digest_, 500000, out_);
  MD_ASSERT_OK(second);
  EXPECT_EQ(fake_.service().last_offset(), static_cast<int64_t>(partial.size()));
  EXPECT_EQ(second->resumed_from, static_cast<int64_t>(partial.size()));
  EXPECT_EQ(second->bytes_received, 500000 - static_cast<int64_t>(partial.size()));
  EXPECT_EQ(Slurp(out_), bytes_);
  EXPECT_FALSE(Exists(PartialPath(out_)));
}

}  // namespace
}  // namespace modeldist::testing
