// ArtifactService end to end: chunked reads by digest with offsets and limits, and the error
// codes for bad requests.
#include "services/artifact_service.h"

#include <fcntl.h>
#include <unistd.h>

#include <thread>
#include <vector>

#include "common/digest.h"
#include "gtest/gtest.h"
#include "tests/testing/test_server.h"

namespace modeldist::testing {
namespace {

class ArtifactServiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    digest_ =
        server_.PublishBlob("m", "1", v1::PLATFORM_LINUX, v1::ARCH_ANY, v1::FORMAT_GGUF, bytes_);
  }

  // Reads [offset, offset+limit) and checks chunk offsets are contiguous and bounded.
  grpc::Status Read(const std::string& digest, int64_t offset, int64_t limit, std::string* out) {
    v1::ReadRequest request;
    request.set_digest(digest);
    request.set_offset(offset);
    request.set_limit(limit);
    grpc::ClientContext context;
    auto reader = server_.artifacts().Read(&context, request);
    v1::ReadResponse chunk;
    int64_t expect = offset;
    while (reader->Read(&chunk)) {
      EXPECT_EQ(chunk.offset(), expect);
      EXPECT_LE(chunk.data().size(), 1024u * 1024);
      EXPECT_FALSE(chunk.data().empty());
      expect += static_cast<int64_t>(chunk.data().size());
      out->append(chunk.data());
    }
    return reader->Finish();
  }

  TestServer server_;
  const std::string bytes_ = RandomBytes(1024 * 1024 + 4097, 5);
  std::string digest_;
};

TEST_F(ArtifactServiceTest, ReadsWholeBlob) {
  std::string got;
  ASSERT_TRUE(Read(digest_, 0, 0, &got).ok());
  EXPECT_EQ(got.size(), bytes_.size());
  EXPECT_EQ(FormatDigest(Sha256::HexOf(got)), digest_);
}

TEST_F(ArtifactServiceTest, ReadsRanges) {
  struct Case {
    int64_t offset, limit;
  } cases[] = {{0, 1},
               {1, 300000},
               {262144, 262144},
               {1000000, 0},
               {static_cast<int64_t>(1024 * 1024 + 4096), 0},
               {5, 1 << 30}};
  for (const Case& c : cases) {
    std::string got;
    ASSERT_TRUE(Read(digest_, c.offset, c.limit, &got).ok()) << c.offset;
    EXPECT_EQ(got, bytes_.substr(c.offset, c.limit == 0 ? std::string::npos : c.limit));
  }
}

TEST_F(ArtifactServiceTest, OffsetAtEndIsEmptyPastEndIsOutOfRange) {
  std::string got;
  EXPECT_TRUE(Read(digest_, static_cast<int64_t>(bytes_.size()), 0, &got).ok());
  EXPECT_TRUE(got.empty());
  grpc::Status s = Read(digest_, static_cast<int64_t>(bytes_.size()) + 1, 0, &got);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::OUT_OF_RANGE);
  EXPECT_THAT(s.error_message(), ::testing::HasSubstr("past the end"));
}

TEST_F(ArtifactServiceTest, BadRequests) {
  std::string got;
  EXPECT_EQ(Read("sha256:00", 0, 0, &got).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(Read("../../etc/passwd", 0, 0, &got).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(Read(digest_, -1, 0, &got).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(Read(digest_, 0, -1, &got).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(Read(FormatDigest(std::string(64, 'a')), 0, 0, &got).error_code(),
            grpc::StatusCode::NOT_FOUND);
  EXPECT_TRUE(got.empty());
}

TEST_F(ArtifactServiceTest, StatReportsSizeAndChunk) {
  v1::StatRequest request;
  request.set_digest(digest_);
  v1::StatResponse response;
  grpc::ClientContext context;
  ASSERT_TRUE(server_.artifacts().Stat(&context, request, &response).ok());
  EXPECT_EQ(response.size_bytes(), static_cast<int64_t>(bytes_.size()));
  EXPECT_EQ(response.read_message_bytes(), 1024 * 1024);
  grpc::ClientContext context2;
  request.set_digest(FormatDigest(std::string(64, 'b')));
  EXPECT_EQ(server_.artifacts().Stat(&context2, request, &response).error_code(),
            grpc::StatusCode::NOT_FOUND);
}

TEST_F(ArtifactServiceTest, DraftUploadsAreReadableOnlyOnceVerified) {
  // A declared but unfinished upload is not served.
  const std::string other = RandomBytes(5000, 99);
  v1::CreateVersionRequest version;
  version.set_parent("models/m");
  version.set_version_id("2");
  *version.add_artifacts() =
      MakeArtifact(v1::PLATFORM_LINUX, v1::ARCH_ARM64, v1::FORMAT_GGUF, other);
  v1::Version v;
  ASSERT_TRUE(server_.registry().CreateVersion(server_.Admin().get(), version, &v).ok());
  const std::string digest = version.artifacts(0).digest();
  ASSERT_TRUE(server_.Upload(digest, other.substr(0, 4000), 0, false).ok());
  std::string got;
  EXPECT_EQ(Read(digest, 0, 0, &got).error_code(), grpc::StatusCode::NOT_FOUND);
}

TEST_F(ArtifactServiceTest, ConcurrentReadsAndCancelledReads) {
  // Half the streams read everything, half cancel after their first message; every stream's
  // reactor must finish (the server's destructor waits for them).
  std::vector<std::thread> threads;
  std::vector<std::string> got(8);
  std::vector<grpc::Status> status(8);
  for (int i = 0; i < 8; ++i) {
    threads.emplace_back([&, i] {
      v1::ReadRequest request;
      request.set_digest(digest_);
      grpc::ClientContext context;
      auto reader = server_.artifacts().Read(&context, request);
      v1::ReadResponse chunk;
      while (reader->Read(&chunk)) {
        got[i].append(chunk.data());
        if (i % 2 == 1) context.TryCancel();
      }
      status[i] = reader->Finish();
    });
  }
  for (std::thread& t : threads) t.join();
  for (int i = 0; i < 8; ++i) {
    if (i % 2 == 0) {
      EXPECT_TRUE(status[i].ok()) << status[i].error_message();
      EXPECT_EQ(got[i], bytes_);
    } else {
      EXPECT_EQ(status[i].error_code(), grpc::StatusCode::CANCELLED);
      EXPECT_EQ(got[i], bytes_.substr(0, got[i].size()));
    }
  }
}

TEST_F(ArtifactServiceTest, ReadsABlobThePageCacheDropped) {
  // With the blob's pages dropped, the cached-only reads on gRPC's threads find part of a
  // message or nothing (only readahead's pages) and the pool reads the rest: the bytes must
  // come out the same.
  const std::string big = RandomBytes(12 * 1024 * 1024 + 5, 6);
  const std::string digest =
      server_.PublishBlob("big", "1", v1::PLATFORM_LINUX, v1::ARCH_ANY, v1::FORMAT_GGUF, big);
  const std::string hex = digest.substr(std::string("sha256:").size());
  const std::string path =
      server_.data_dir() + "/data/blobs/sha256/" + hex.substr(0, 2) + "/" + hex;
  for (int64_t offset : {0, 3000}) {
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    ASSERT_GE(fd, 0) << path;
    ::fdatasync(fd);
    EXPECT_EQ(::posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED), 0);
    ::close(fd);
    std::string got;
    ASSERT_TRUE(Read(digest, offset, 0, &got).ok());
    EXPECT_TRUE(got == big.substr(offset)) << "offset " << offset;
  }
}

TEST(ReadResponseHeaderTest, HeaderPlusDataIsProtobufsSerialization) {
  for (int64_t offset : {int64_t{0}, int64_t{1}, int64_t{127}, int64_t{128}, int64_t{16384},
                         int64_t{1} << 40, INT64_MAX, int64_t{-1}}) {
    for (size_t size : {size_t{0}, size_t{1}, size_t{127}, size_t{128}, size_t{4096},
                        size_t{1} << 20, size_t{4} << 20}) {
      v1::ReadResponse response;
      response.set_offset(offset);
      response.set_data(std::string(size, 'x'));
      char header[services::kMaxReadResponseHeaderBytes];
      const size_t n = services::ReadResponseHeader(offset, size, header);
      EXPECT_EQ(std::string(header, n) + response.data(), response.SerializeAsString())
          << "offset " << offset << ", size " << size;
    }
  }
}

}  // namespace
}  // namespace modeldist::testing
