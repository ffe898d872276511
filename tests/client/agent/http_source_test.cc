// The HTTP source under DownloadChunks against a real nginx: range requests, resume, a mirror
// that ignores Range, HTTPS with and without the CA file, a silent server, and no credentials
// in what it reports.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
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

extern char** environ;

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

int FreePort() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof addr;
  int port = 0;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), len) == 0 &&
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0) {
    port = ntohs(addr.sin_port);
  }
  ::close(fd);
  return port;
}

bool CanConnect(int port) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(static_cast<uint16_t>(port));
  const bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
  ::close(fd);
  return ok;
}

// Debian's nginx-light serving `<prefix>/www` on 127.0.0.1 from its own temp prefix, in the
// foreground (`daemon off`) so that the test owns its PID and stops it.
// /norange/ serves the same files with byte ranges turned off (a Range-ignoring mirror).
class Nginx {
 public:
  // With `tls`, also serves HTTPS on tls_port() with a fresh self-signed certificate for
  // 127.0.0.1, written to ca_file().
  Nginx(const std::string& prefix, bool tls) : prefix_(prefix), tls_(tls) {
    for (const char* dir : {"www", "logs", "tmp"}) MD_EXPECT_OK(MakeDirs(prefix_ + "/" + dir));
    if (tls_) {
      const std::string command = absl::StrCat(
          "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 "
          "-subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1 -keyout ",
          prefix_, "/key.pem -out ", ca_file(), " 2>/dev/null");
      EXPECT_EQ(std::system(command.c_str()), 0) << command;
    }
    for (int attempt = 0; attempt < 5 && port_ == 0; ++attempt) {
      TryStart(FreePort(), tls_ ? FreePort() : 0);
    }
  }
  ~Nginx() {
    if (pid_ > 0) {
      ::kill(pid_, SIGTERM);
      int status = 0;
      ::waitpid(pid_, &status, 0);
    }
  }
  // 0 when nginx could not start.
  int port() const { return port_; }
  int tls_port() const { return tls_port_; }
  std::string ca_file() const { return prefix_ + "/cert.pem"; }
  std::string www() const { return prefix_ + "/www"; }
  std::string Url(const std::string& path) const {
    return absl::StrCat("http://127.0.0.1:", port_, path);
  }

 private:
  void TryStart(int port, int tls_port) {
    const std::string& p = prefix_;
    const std::string config = absl::StrCat(
        // As root, workers would switch to `nobody`, which cannot read the 0700 temp prefix.
        ::geteuid() == 0 ? "user root;\n" : "", "worker_processes 1;\ndaemon off;\npid ", p,
        "/nginx.pid;\nerror_log ", p, "/logs/error.log warn;\nevents { worker_connections 64; }\n",
        "http {\n  access_log ", p, "/logs/access.log;\n  client_body_temp_path ", p,
        "/tmp/body;\n  proxy_temp_path ", p, "/tmp/proxy;\n  fastcgi_temp_path ", p,
        "/tmp/fcgi;\n  uwsgi_temp_path ", p, "/tmp/uwsgi;\n  scgi_temp_path ", p,
        "/tmp/scgi;\n  default_type application/octet-stream;\n  server {\n    listen 127.0.0.1:",
        port, ";\n    root ", p, "/www;\n    location /norange/ { alias ", p,
        "/www/; max_ranges 0; }\n  }\n",
        tls_port == 0
            ? ""
            : absl::StrCat("  server {\n    listen 127.0.0.1:", tls_port, " ssl;\n    root ", p,
                           "/www;\n    ssl_certificate ", ca_file(), ";\n    ssl_certificate_key ",
                           p, "/key.pem;\n  }\n"),
        "}\n");
    MD_EXPECT_OK(WriteFileAtomically(p + "/nginx.conf", config, 0644));
    const std::string conf = p + "/nginx.conf";
    const std::string prefix = p + "/";
    const std::string log = p + "/logs/error.log";
    std::vector<const char*> argv = {"nginx",      "-p", prefix.c_str(), "-c",
                                     conf.c_str(), "-e", log.c_str(),    nullptr};
    pid_t pid = 0;
    if (::posix_spawn(&pid, "/usr/sbin/nginx", nullptr, nullptr,
                      const_cast<char* const*>(argv.data()), environ) != 0) {
      return;
    }
    // Ready once the port answers; if nginx exits first, the bind failed (port taken).
    for (int i = 0; i < 100; ++i) {
      int status = 0;
      if (::waitpid(pid, &status, WNOHANG) == pid) return;
      if (CanConnect(port) && (tls_port == 0 || CanConnect(tls_port))) {
        pid_ = pid;
        port_ = port;
        tls_port_ = tls_port;
        return;
      }
      absl::SleepFor(absl::Milliseconds(50));
    }
    ::kill(pid, SIGKILL);
    ::waitpid(pid, nullptr, 0);
  }

  const std::string prefix_;
  const bool tls_;
  pid_t pid_ = -1;
  int port_ = 0;
  int tls_port_ = 0;
};

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
  auto source = NewHttpSource(
      absl::StrCat("http://agent:s3cret@127.0.0.1:", FreePort(), "/m.gguf?token=t0ken#frag"), "");
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
