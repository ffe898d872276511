// The HTTP source under DownloadChunks against a real nginx: range requests, resume, a mirror
// that ignores Range, HTTPS with and without the CA file, a silent server, and no credentials
// in what it reports.
#include <unistd.h>

#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "client/agent/chunk_downloader.h"
#include "common/file_util.h"
#include "common/status.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/client/agent/chunk_downloader_fixture.h"
#include "tests/testing/nginx_server.h"

namespace modeldist::agent {
namespace {

using ::modeldist::testing::IsOk;
using ::modeldist::testing::ScratchDir;
using ::modeldist::testing::StatusIs;
using ::testing::AllOf;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::Pair;

// Debian's nginx-light on loopback (tests/testing/nginx_server.h).
using Nginx = ::modeldist::testing::NginxServer;

// The HTTP source against a real nginx.
class HttpSourceTest : public ChunkDownloaderTest {
 protected:
  void SetUp() override {
    ChunkDownloaderTest::SetUp();
    nginx_ = std::make_unique<Nginx>(web_.path(), /*tls=*/true);
    ASSERT_NE(nginx_->port(), 0) << "nginx did not start:\n" << Slurp(web_.Join("logs/error.log"));
    ASSERT_TRUE(WriteFileAtomically(nginx_->www() + "/model.gguf", bytes_, 0644).ok());
    http_ = NewHttpSource(nginx_->Url("/model.gguf"), "");
  }

  ScratchDir web_;
  std::unique_ptr<Nginx> nginx_;
  std::unique_ptr<ByteSource> http_;
};

TEST_F(HttpSourceTest, DownloadsWithRangeRequests) {
  auto stats = Download({http_.get()});
  ASSERT_THAT(stats, IsOk());
  EXPECT_EQ(stats->chunks_fetched, 3);
  EXPECT_EQ(stats->bytes_received, kSize);
  ExpectPartialIsTheArtifact();
  EXPECT_THAT(Slurp(web_.Join("logs/access.log")), HasSubstr("\"GET /model.gguf HTTP/1.1\" 206"));
}

TEST_F(HttpSourceTest, ResumesOverHttpAndRefetchesACorruptChunkAlone) {
  options_.retry.max_attempts = 1;
  FaultySource dying(http_.get());
  dying.FailAfter(kChunk + 5000);
  ASSERT_THAT(Download({&dying}), StatusIs(absl::StatusCode::kUnavailable, ::testing::_));

  options_.retry.max_attempts = 8;
  FaultySource flaky(http_.get());
  flaky.CorruptChunkOnce(2);
  auto stats = Download({&flaky});
  ASSERT_THAT(stats, IsOk());
  EXPECT_EQ(stats->chunks_reused, 1);
  EXPECT_EQ(stats->chunks_fetched, 3);  // chunks 1 and 2, and 2 again
  EXPECT_EQ(stats->chunks_refetched, 1);
  EXPECT_THAT(flaky.reads(),
              ElementsAre(Pair(kChunk, kSize - kChunk), Pair(2 * kChunk, kSize - 2 * kChunk)));
  ExpectPartialIsTheArtifact();
}

TEST_F(HttpSourceTest, RangeIgnoredPastByteZeroIsRefused) {
  auto norange = NewHttpSource(nginx_->Url("/norange/model.gguf"), "");
  std::string got;
  auto collect = [&](absl::string_view piece) {
    got.append(piece.data(), piece.size());
    return absl::OkStatus();
  };
  // At byte 0 a 200 is the file itself: take what was asked and stop.
  MD_EXPECT_OK(norange->Read(artifact_.digest(), 0, 1000, collect));
  EXPECT_TRUE(got == bytes_.substr(0, 1000));
  got.clear();
  absl::Status status = norange->Read(artifact_.digest(), kChunk, 1000, collect);
  EXPECT_THAT(status, StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("Range")));
  EXPECT_EQ(ErrorReason(status), "RANGE_IGNORED");
  EXPECT_TRUE(got.empty());

  // As a download source: the resume goes to the next source instead of splicing.
  options_.retry.max_attempts = 1;
  FaultySource dying(http_.get());
  dying.FailAfter(kChunk + 5000);
  ASSERT_THAT(Download({&dying}), StatusIs(absl::StatusCode::kUnavailable, ::testing::_));
  auto stats = Download({norange.get(), http_.get()});
  ASSERT_THAT(stats, IsOk());
  EXPECT_EQ(stats->chunks_reused, 1);
  ExpectPartialIsTheArtifact();
}

TEST_F(HttpSourceTest, HttpsWithTheCaFileDownloadsAndWithoutItIsRefused) {
  const std::string url = absl::StrCat("https://127.0.0.1:", nginx_->tls_port(), "/model.gguf");
  auto trusted = NewHttpSource(url, nginx_->ca_file());
  auto stats = Download({trusted.get()});
  ASSERT_THAT(stats, IsOk());
  ExpectPartialIsTheArtifact();

  // The system roots do not know the test certificate: refused at once, not retried.
  ::unlink(partial_.c_str());
  auto untrusted = NewHttpSource(url, "");
  FaultySource recording(untrusted.get());
  EXPECT_THAT(Download({&recording}), StatusIs(absl::StatusCode::kUnauthenticated, ::testing::_));
  EXPECT_EQ(recording.reads().size(), 1u);
}

TEST_F(HttpSourceTest, MissingFileIsNotFound) {
  auto missing = NewHttpSource(nginx_->Url("/nope.gguf"), "");
  auto stats = Download({missing.get()});
  EXPECT_THAT(stats, StatusIs(absl::StatusCode::kNotFound, HasSubstr("404")));
}

TEST_F(HttpSourceTest, SilentServerIsCancelledByTheWatchdog) {
  SilentServer silent;
  auto source = NewHttpSource(absl::StrCat("http://127.0.0.1:", silent.port(), "/m.gguf"), "");
  options_.stall_timeout = absl::Milliseconds(300);
  options_.retry.max_attempts = 2;
  const absl::Time start = absl::Now();
  auto stats = Download({source.get()});
  EXPECT_THAT(stats, StatusIs(absl::StatusCode::kDeadlineExceeded, ::testing::_));
  // curl looks at the cancel flag about once a second while nothing moves.
  EXPECT_LT(absl::Now() - start, absl::Seconds(8));
}

TEST(HttpSourceDescribeTest, NoCredentialsInDescriptionsOrErrors) {
  auto source =
      NewHttpSource(absl::StrCat("http://agent:s3cret@127.0.0.1:", ::modeldist::testing::FreePort(),
                                 "/m.gguf?token=t0ken#frag"),
                    "");
  EXPECT_EQ(source->Describe().find("s3cret"), std::string::npos);
  EXPECT_EQ(source->Describe().find("t0ken"), std::string::npos);
  EXPECT_THAT(source->Describe(), HasSubstr("/m.gguf"));
  absl::Status status =
      source->Read("sha256:x", 0, 10, [](absl::string_view) { return absl::OkStatus(); });
  EXPECT_THAT(status, StatusIs(absl::StatusCode::kUnavailable,
                               AllOf(Not(HasSubstr("s3cret")), Not(HasSubstr("t0ken")))));
}

}  // namespace
}  // namespace modeldist::agent
