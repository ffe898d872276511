// DownloadChunks end to end: the real gRPC source against a real in-process server, wrapped in
// small fault-injecting sources for what a real server never does (corrupt a chunk, cut or
// stall a stream, send more than asked), and the HTTP source against a real nginx.
#include "client/agent/chunk_downloader.h"

#include <arpa/inet.h>
#include <grpc/grpc.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <fstream>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "common/digest.h"
#include "common/file_util.h"
#include "common/status.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/test_server.h"

extern char** environ;

namespace modeldist::agent {
namespace {

using ::modeldist::testing::IsOk;
using ::modeldist::testing::RandomBytes;
using ::modeldist::testing::ScratchDir;
using ::modeldist::testing::StatusIs;
using ::modeldist::testing::TestServer;
using ::testing::AllOf;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::Pair;

constexpr int64_t kChunk = 4 << 20;                      // the server's chunk digests cover 4 MiB
constexpr int64_t kSize = 2 * kChunk + (1 << 20) + 123;  // 3 chunks, the last one short
constexpr char kVersion[] = "models/llama8b/versions/2026.1.0";

using Sink = std::function<absl::Status(absl::string_view)>;

// gRPC shuts the library down when its last channel and server go away, and in 1.51 that
// can wait ~10 s for an executor thread parked in epoll. One reference held for the whole
// binary keeps each test's teardown fast.
class GrpcLibraryEnvironment : public ::testing::Environment {
 public:
  void SetUp() override { grpc_init(); }
};
::testing::Environment* const kGrpcEnvironment =
    ::testing::AddGlobalTestEnvironment(new GrpcLibraryEnvironment);

bool Exists(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0;
}

std::string Slurp(const std::string& path) {
  auto text = ReadFileToString(path);
  return text.ok() ? *text : "<missing: " + std::string(text.status().message()) + ">";
}

void FlipByteInFile(const std::string& path, int64_t offset) {
  std::fstream file(path, std::ios::in | std::ios::out | std::ios::binary);
  file.seekg(offset);
  char c = 0;
  file.get(c);
  file.seekp(offset);
  file.put(static_cast<char>(c ^ 0x5a));
}

void AppendToFile(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::app);
  out << bytes;
}

// Wraps a real source and injects faults into what it delivers. Records every Read.
class FaultySource final : public ByteSource {
 public:
  explicit FaultySource(ByteSource* inner) : inner_(inner) {}

  // Flips one byte of chunk `index` the first time it passes through.
  void CorruptChunkOnce(int64_t index) { corrupt_at_ = index * kChunk + 1000; }
  // Flips that byte every time.
  void CorruptChunkAlways(int64_t index) {
    corrupt_at_ = index * kChunk + 1000;
    corrupt_always_ = true;
  }
  // Delivers `bytes` in total over its life, then fails every Read with UNAVAILABLE: a
  // connection that dies, or a process killed mid-way.
  void FailAfter(int64_t bytes) { budget_ = bytes; }
  // The first Read ends cleanly (OK) after `bytes`, as a truncated stream would.
  void TruncateOnceAfter(int64_t bytes) { truncate_after_ = bytes; }
  // After the inner source is done, keeps sending bytes until the sink refuses them.
  void SendEndlessly() { endless_ = true; }
  void FailAlways(absl::StatusCode code) { fail_code_ = code; }
  // Asks the inner source for this digest whatever the downloader asks for.
  void ServeDigest(std::string digest) { digest_ = std::move(digest); }

  const std::vector<std::pair<int64_t, int64_t>>& reads() const { return reads_; }
  int extra_pieces_offered() const { return extra_pieces_offered_; }

  absl::Status Read(const std::string& digest, int64_t offset, int64_t limit,
                    const Sink& sink) override {
    reads_.emplace_back(offset, limit);
    if (fail_code_ != absl::StatusCode::kOk) return absl::Status(fail_code_, "injected failure");
    if (budget_ == 0) return absl::UnavailableError("injected: connection lost");
    const absl::Status stop = absl::AbortedError("fault injector stops here");
    int64_t position = offset;
    int64_t delivered = 0;
    auto wrapped = [&](absl::string_view piece) -> absl::Status {
      std::string copy(piece);
      if (corrupt_at_ >= position && corrupt_at_ < position + static_cast<int64_t>(copy.size())) {
        copy[corrupt_at_ - position] ^= 0x5a;
        if (!corrupt_always_) corrupt_at_ = -1;
      }
      position += static_cast<int64_t>(copy.size());
      bool cut = false;
      if (budget_ >= 0 && static_cast<int64_t>(copy.size()) >= budget_) {
        copy.resize(budget_);
        cut = true;
      }
      if (truncate_after_ >= 0 &&
          delivered + static_cast<int64_t>(copy.size()) >= truncate_after_) {
        copy.resize(truncate_after_ - delivered);
        cut = true;
      }
      if (budget_ >= 0) budget_ -= static_cast<int64_t>(copy.size());
      delivered += static_cast<int64_t>(copy.size());
      if (!copy.empty()) MD_RETURN_IF_ERROR(sink(copy));
      return cut ? stop : absl::OkStatus();
    };
    absl::Status status = inner_->Read(digest_.empty() ? digest : digest_, offset, limit, wrapped);
    if (status == stop) {
      if (truncate_after_ >= 0) {
        truncate_after_ = -1;
        return absl::OkStatus();
      }
      return absl::UnavailableError("injected: connection lost");
    }
    if (!status.ok() || !endless_) return status;
    const std::string more(64 * 1024, 'x');
    for (int i = 0; i < 10000; ++i) {  // bounded, so a broken downloader fails instead of hangs
      ++extra_pieces_offered_;
      if (!sink(more).ok()) return absl::OkStatus();
    }
    return absl::OkStatus();
  }
  void Cancel() override { inner_->Cancel(); }
  std::string Describe() const override { return "faulty+" + inner_->Describe(); }

 private:
  ByteSource* const inner_;
  int64_t corrupt_at_ = -1;
  bool corrupt_always_ = false;
  int64_t budget_ = -1;
  int64_t truncate_after_ = -1;
  bool endless_ = false;
  absl::StatusCode fail_code_ = absl::StatusCode::kOk;
  std::string digest_;
  std::vector<std::pair<int64_t, int64_t>> reads_;
  int extra_pieces_offered_ = 0;
};

// Delivers `before_stall` bytes of the first `stalls` Reads, then goes silent until cancelled.
class StallingSource final : public ByteSource {
 public:
  StallingSource(ByteSource* inner, int stalls, int64_t before_stall)
      : inner_(inner), stalls_(stalls), before_stall_(before_stall) {}

  int cancels() const { return cancels_.load(); }

  absl::Status Read(const std::string& digest, int64_t offset, int64_t limit,
                    const Sink& sink) override {
    {
      absl::MutexLock lock(&mu_);
      cancelled_ = false;
    }
    if (stalls_ == 0) return inner_->Read(digest, offset, limit, sink);
    --stalls_;
    if (before_stall_ > 0) {
      MD_RETURN_IF_ERROR(inner_->Read(digest, offset, std::min(limit, before_stall_), sink));
    }
    absl::MutexLock lock(&mu_);
    // Like a socket that stays open and silent. The bound only keeps a broken test finite.
    mu_.AwaitWithTimeout(absl::Condition(&cancelled_), absl::Seconds(30));
    return absl::CancelledError("stalled read cancelled");
  }
  void Cancel() override {
    cancels_.fetch_add(1);
    absl::MutexLock lock(&mu_);
    cancelled_ = true;
  }
  std::string Describe() const override { return "stalling+" + inner_->Describe(); }

 private:
  ByteSource* const inner_;
  int stalls_;
  const int64_t before_stall_;
  absl::Mutex mu_;
  bool cancelled_ ABSL_GUARDED_BY(mu_) = false;
  std::atomic<int> cancels_{0};
};

// A TCP port that accepts connections (the kernel completes the handshake) and never
// answers: the most patient kind of stalled origin.
class SilentServer {
 public:
  SilentServer() {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof addr;
    EXPECT_EQ(::bind(fd_, reinterpret_cast<sockaddr*>(&addr), len), 0);
    EXPECT_EQ(::listen(fd_, 16), 0);
    EXPECT_EQ(::getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len), 0);
    port_ = ntohs(addr.sin_port);
  }
  ~SilentServer() { ::close(fd_); }
  int port() const { return port_; }

 private:
  int fd_ = -1;
  int port_ = 0;
};

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

class ChunkDownloaderTest : public ::testing::Test {
 protected:
  void SetUp() override {
    bytes_ = RandomBytes(kSize, 7);
    server_.PublishBlob("llama8b", "2026.1.0", v1::PLATFORM_LINUX, v1::ARCH_X86_64, v1::FORMAT_GGUF,
                        bytes_);
    server_.SetTier("llama8b", "", kVersion);
    v1::SignedManifest signed_manifest;
    ASSERT_TRUE(
        server_.GetManifest("llama8b", v1::PLATFORM_LINUX, v1::ARCH_X86_64, &signed_manifest).ok());
    v1::Manifest manifest;
    ASSERT_TRUE(manifest.ParseFromString(signed_manifest.manifest()));
    artifact_ = manifest.artifact();
    ASSERT_EQ(artifact_.chunk_size(), kChunk);
    ASSERT_EQ(artifact_.chunk_chain_size(), 3);

    grpc_ = *NewGrpcSource(absl::StrCat("127.0.0.1:", server_.server().port()), "");
    partial_ = dir_.Join("model.partial");
    options_.retry.initial_backoff = absl::Milliseconds(100);
    options_.retry.max_backoff = absl::Seconds(2);
    options_.sleep = [this](absl::Duration d) { sleeps_.push_back(d); };
  }

  absl::StatusOr<ChunkDownloadStats> Download(const std::vector<ByteSource*>& sources) {
    return DownloadChunks(artifact_, sources, partial_, options_);
  }

  absl::Duration TotalSleep() const {
    absl::Duration total;
    for (absl::Duration d : sleeps_) total += d;
    return total;
  }

  void ExpectPartialIsTheArtifact() {
    EXPECT_TRUE(Slurp(partial_) == bytes_) << "the partial differs from the artifact";
    EXPECT_FALSE(Exists(partial_ + ".journal"));
  }

  TestServer server_;
  ScratchDir dir_;
  std::string bytes_;
  v1::ManifestArtifact artifact_;
  std::unique_ptr<ByteSource> grpc_;
  std::string partial_;
  ChunkDownloadOptions options_;
  std::vector<absl::Duration> sleeps_;
};

TEST_F(ChunkDownloaderTest, DownloadsAndVerifiesEveryChunk) {
  std::vector<int64_t> progress;
  options_.on_progress = [&](int64_t done, int64_t total) {
    EXPECT_EQ(total, kSize);
    progress.push_back(done);
  };
  auto stats = Download({grpc_.get()});
  ASSERT_THAT(stats, IsOk());
  EXPECT_EQ(stats->chunks_total, 3);
  EXPECT_EQ(stats->chunks_fetched, 3);
  EXPECT_EQ(stats->chunks_reused, 0);
  EXPECT_EQ(stats->chunks_refetched, 0);
  EXPECT_EQ(stats->retries, 0);
  EXPECT_EQ(stats->bytes_received, kSize);
  EXPECT_THAT(progress, ElementsAre(kChunk, 2 * kChunk, kSize));
  EXPECT_TRUE(sleeps_.empty());
  ExpectPartialIsTheArtifact();
}

TEST_F(ChunkDownloaderTest, CorruptChunkIsRefetchedAlone) {
  FaultySource faulty(grpc_.get());
  faulty.CorruptChunkOnce(1);
  auto stats = Download({&faulty});
  ASSERT_THAT(stats, IsOk());
  EXPECT_EQ(stats->chunks_refetched, 1);
  EXPECT_EQ(stats->chunks_fetched, 4);
  EXPECT_EQ(stats->retries, 1);
  // The stream stops at the bad chunk; that chunk comes alone, then the rest.
  EXPECT_THAT(faulty.reads(), ElementsAre(Pair(0, kSize), Pair(kChunk, kChunk),
                                          Pair(2 * kChunk, kSize - 2 * kChunk)));
  ExpectPartialIsTheArtifact();
}

TEST_F(ChunkDownloaderTest, SourceThatAlwaysCorruptsIsDataLossAndKeepsTheVerifiedPrefix) {
  options_.retry.max_attempts = 3;
  FaultySource faulty(grpc_.get());
  faulty.CorruptChunkAlways(1);
  auto stats = Download({&faulty});
  EXPECT_THAT(stats, StatusIs(absl::StatusCode::kDataLoss, HasSubstr("chunk 1")));
  EXPECT_EQ(ErrorReason(stats.status()), "CHUNK_DIGEST_MISMATCH");
  EXPECT_EQ(faulty.reads().size(), 3u);
  // Chunk 0 stays for a resume; nothing unverified was written.
  EXPECT_TRUE(Slurp(partial_) == bytes_.substr(0, kChunk));
  EXPECT_THAT(Slurp(partial_ + ".journal"), HasSubstr("verified_chunks 1"));
}

TEST_F(ChunkDownloaderTest, TruncatedStreamIsResumedWhereItStopped) {
  FaultySource faulty(grpc_.get());
  faulty.TruncateOnceAfter(5 << 20);
  auto stats = Download({&faulty});
  ASSERT_THAT(stats, IsOk());
  EXPECT_EQ(stats->retries, 1);
  EXPECT_EQ(stats->chunks_fetched, 3);
  EXPECT_EQ(stats->bytes_received, kSize);
  // The bytes of the unfinished chunk held in memory are kept: the retry asks for the rest.
  EXPECT_THAT(faulty.reads(), ElementsAre(Pair(0, kSize), Pair(5 << 20, kSize - (5 << 20))));
  ExpectPartialIsTheArtifact();
}

TEST_F(ChunkDownloaderTest, TruncatedStreamOnEveryAttemptIsDataLoss) {
  options_.retry.max_attempts = 2;
  artifact_.set_size_bytes(kSize + 1);  // the source always ends one byte short of this
  auto stats = Download({grpc_.get()});
  EXPECT_THAT(stats, StatusIs(absl::StatusCode::kDataLoss, HasSubstr("ended after")));
  EXPECT_EQ(ErrorReason(stats.status()), "SOURCE_ENDED_EARLY");
}

TEST_F(ChunkDownloaderTest, EndlessStreamIsCutOffAtTheSize) {
  FaultySource faulty(grpc_.get());
  faulty.SendEndlessly();
  auto stats = Download({&faulty});
  ASSERT_THAT(stats, IsOk());
  // The first byte past what was asked is refused, and nothing past the size is written.
  EXPECT_EQ(faulty.extra_pieces_offered(), 1);
  EXPECT_EQ(stats->bytes_received, kSize);
  ExpectPartialIsTheArtifact();
}

TEST_F(ChunkDownloaderTest, EndlessStreamOnARefetchIsCutOffAfterTheChunk) {
  FaultySource faulty(grpc_.get());
  faulty.CorruptChunkOnce(0);
  faulty.SendEndlessly();
  auto stats = Download({&faulty});
  ASSERT_THAT(stats, IsOk());
  EXPECT_EQ(stats->chunks_refetched, 1);
  EXPECT_EQ(faulty.reads()[1], std::make_pair(int64_t{0}, kChunk));
  ExpectPartialIsTheArtifact();
}

TEST_F(ChunkDownloaderTest, WrongSizeInTheManifestIsDataLoss) {
  options_.retry.max_attempts = 2;
  artifact_.set_size_bytes(kSize - 1);  // same chunk count, last chunk one byte short
  auto stats = Download({grpc_.get()});
  EXPECT_THAT(stats, StatusIs(absl::StatusCode::kDataLoss, HasSubstr("chunk 2")));
}

TEST_F(ChunkDownloaderTest, MalformedManifestArtifactIsInvalidArgument) {
  v1::ManifestArtifact bad = artifact_;
  bad.set_size_bytes(kSize + kChunk);  // needs 4 chain entries, has 3
  EXPECT_THAT(DownloadChunks(bad, {grpc_.get()}, partial_, options_),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("3 entries")));
  bad = artifact_;
  bad.set_chunk_chain(1, "short");
  EXPECT_THAT(DownloadChunks(bad, {grpc_.get()}, partial_, options_),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("32")));
  bad = artifact_;
  bad.set_chunk_size(0);
  EXPECT_THAT(DownloadChunks(bad, {grpc_.get()}, partial_, options_),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("chunk_size")));
  bad = artifact_;
  bad.set_chunk_size(kChunk + 1);  // chains need whole SHA-256 blocks
  EXPECT_THAT(DownloadChunks(bad, {grpc_.get()}, partial_, options_),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("multiple of 64")));
  bad = artifact_;
  bad.set_digest("sha256:XYZ");
  EXPECT_THAT(DownloadChunks(bad, {grpc_.get()}, partial_, options_),
              StatusIs(absl::StatusCode::kInvalidArgument, ::testing::_));
  EXPECT_THAT(DownloadChunks(artifact_, {}, partial_, options_),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("source")));
}

TEST_F(ChunkDownloaderTest, AChainThatDoesNotEndInTheDigestIsRefusedBeforeAnyByte) {
  // Verifying the last chunk against the chain is what checks the whole file, so a manifest
  // whose chain ends elsewhere than its digest contradicts itself.
  FaultySource source(grpc_.get());
  source.ServeDigest(artifact_.digest());
  artifact_.set_digest(FormatDigest(Sha256::HexOf("something else")));
  auto stats = Download({&source});
  EXPECT_THAT(stats, StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("contradicts")));
  EXPECT_EQ(ErrorReason(stats.status()), "CHAIN_DIGEST_MISMATCH");
  EXPECT_TRUE(source.reads().empty());
  EXPECT_FALSE(Exists(partial_));
}

TEST_F(ChunkDownloaderTest, AWrongChainEntryFailsOnlyItsChunk) {
  // Entry 0 altered: chunk 0 can never verify, and chunk 1 (checked from the true entry 0)
  // is not affected by it.
  options_.retry.max_attempts = 2;
  std::string entry = artifact_.chunk_chain(0);
  entry[5] = static_cast<char>(entry[5] ^ 0x40);
  artifact_.set_chunk_chain(0, entry);
  auto stats = Download({grpc_.get()});
  EXPECT_THAT(stats, StatusIs(absl::StatusCode::kDataLoss, HasSubstr("chunk 0")));
  EXPECT_EQ(ErrorReason(stats.status()), "CHUNK_DIGEST_MISMATCH");
  // Nothing was counted: the journal claims no chunk, and a resume keeps no byte.
  auto journal = ReadFileToString(partial_ + ".journal");
  ASSERT_THAT(journal, IsOk());
  EXPECT_THAT(*journal, HasSubstr("verified_chunks 0\n"));
}

TEST_F(ChunkDownloaderTest, StalledReadIsCancelledAndRetried) {
  options_.stall_timeout = absl::Milliseconds(200);
  StallingSource stalling(grpc_.get(), /*stalls=*/1, /*before_stall=*/1 << 20);
  const absl::Time start = absl::Now();
  auto stats = Download({&stalling});
  ASSERT_THAT(stats, IsOk());
  EXPECT_LT(absl::Now() - start, absl::Seconds(10));
  EXPECT_GE(stalling.cancels(), 1);
  EXPECT_EQ(stats->retries, 1);
  EXPECT_EQ(stats->bytes_received, kSize);
  ExpectPartialIsTheArtifact();
}

TEST_F(ChunkDownloaderTest, SourceThatAlwaysStallsIsDeadlineExceeded) {
  options_.stall_timeout = absl::Milliseconds(100);
  options_.retry.max_attempts = 2;
  StallingSource stalling(grpc_.get(), /*stalls=*/100, /*before_stall=*/0);
  auto stats = Download({&stalling});
  EXPECT_THAT(stats, StatusIs(absl::StatusCode::kDeadlineExceeded, HasSubstr("no byte for")));
  EXPECT_EQ(ErrorReason(stats.status()), "SOURCE_STALLED");
}

TEST_F(ChunkDownloaderTest, GrpcSourceToASilentServerIsCancelledByTheWatchdog) {
  SilentServer silent;
  auto source = *NewGrpcSource(absl::StrCat("127.0.0.1:", silent.port()), "");
  options_.stall_timeout = absl::Milliseconds(300);
  options_.retry.max_attempts = 2;
  const absl::Time start = absl::Now();
  auto stats = Download({source.get()});
  EXPECT_THAT(stats, StatusIs(absl::StatusCode::kDeadlineExceeded, ::testing::_));
  EXPECT_LT(absl::Now() - start, absl::Seconds(10));
}

TEST_F(ChunkDownloaderTest, ResumesFromTheLastVerifiedChunkAfterAnInterruption) {
  options_.retry.max_attempts = 2;
  FaultySource dying(grpc_.get());
  dying.FailAfter((5 << 20) + 17);  // chunk 0 verified, chunk 1 half received
  auto first = Download({&dying});
  ASSERT_THAT(first, StatusIs(absl::StatusCode::kUnavailable, HasSubstr("injected")));
  EXPECT_EQ(Slurp(partial_).size(), static_cast<size_t>(kChunk));
  EXPECT_THAT(Slurp(partial_ + ".journal"), HasSubstr("verified_chunks 1"));
  // A write the journal never covered (say, torn by a kill -9) is dropped on resume.
  AppendToFile(partial_, "torn write");

  FaultySource recording(grpc_.get());
  auto second = Download({&recording});
  ASSERT_THAT(second, IsOk());
  EXPECT_EQ(second->chunks_reused, 1);
  EXPECT_EQ(second->chunks_fetched, 2);
  EXPECT_EQ(second->bytes_received, kSize - kChunk);
  EXPECT_THAT(recording.reads(), ElementsAre(Pair(kChunk, kSize - kChunk)));
  ExpectPartialIsTheArtifact();
}

TEST_F(ChunkDownloaderTest, CorruptJournaledChunkOnDiskIsRefetchedWithWhatFollows) {
  options_.retry.max_attempts = 1;
  FaultySource dying(grpc_.get());
  dying.FailAfter(2 * kChunk + 100);
  ASSERT_THAT(Download({&dying}), StatusIs(absl::StatusCode::kUnavailable, ::testing::_));
  ASSERT_THAT(Slurp(partial_ + ".journal"), HasSubstr("verified_chunks 2"));
  FlipByteInFile(partial_, kChunk + 4242);

  FaultySource recording(grpc_.get());
  auto stats = Download({&recording});
  ASSERT_THAT(stats, IsOk());
  EXPECT_EQ(stats->chunks_reused, 1);
  EXPECT_EQ(stats->chunks_fetched, 2);
  EXPECT_THAT(recording.reads(), ElementsAre(Pair(kChunk, kSize - kChunk)));
  ExpectPartialIsTheArtifact();
}

TEST_F(ChunkDownloaderTest, CompletePartialIsReverifiedWithoutTheNetwork) {
  ASSERT_THAT(Download({grpc_.get()}), IsOk());
  // As after a crash between the last journal write and its removal.
  ASSERT_TRUE(
      WriteFileAtomically(partial_ + ".journal",
                          absl::StrCat("modeldist-chunk-journal-v1\ndigest ", artifact_.digest(),
                                       "\nchunk_size ", kChunk, "\nverified_chunks 3\n"),
                          0644)
          .ok());
  FaultySource never(grpc_.get());
  never.FailAlways(absl::StatusCode::kUnavailable);
  auto stats = Download({&never});
  ASSERT_THAT(stats, IsOk());
  EXPECT_EQ(stats->chunks_reused, 3);
  EXPECT_EQ(stats->chunks_fetched, 0);
  EXPECT_TRUE(never.reads().empty());
  ExpectPartialIsTheArtifact();
}

// A kill between activation and the partial's removal leaves the partial as a hard link of the
// installed model file. A later download of the same digest may read it but never write it.
TEST_F(ChunkDownloaderTest, APartialLinkedToAnInstalledFileIsRepairedInACopy) {
  const std::string installed = partial_ + ".installed";
  ASSERT_TRUE(WriteFileAtomically(installed, bytes_, 0644).ok());
  FlipByteInFile(installed, kChunk + 4242);  // the installed copy rotted on disk
  const std::string rotted = Slurp(installed);
  ASSERT_EQ(::link(installed.c_str(), partial_.c_str()), 0);

  FaultySource recording(grpc_.get());
  auto stats = Download({&recording});
  ASSERT_THAT(stats, IsOk());
  EXPECT_EQ(stats->chunks_reused, 1);
  EXPECT_EQ(stats->chunks_fetched, 2);
  ExpectPartialIsTheArtifact();
  EXPECT_EQ(Slurp(installed), rotted) << "the repair wrote through the link";
  struct stat st;
  ASSERT_EQ(::stat(partial_.c_str(), &st), 0);
  EXPECT_EQ(st.st_nlink, 1u);
}

TEST_F(ChunkDownloaderTest, AnIntactPartialLinkedToAnInstalledFileIsUsedAsItIs) {
  const std::string installed = partial_ + ".installed";
  ASSERT_TRUE(WriteFileAtomically(installed, bytes_, 0644).ok());
  ASSERT_EQ(::link(installed.c_str(), partial_.c_str()), 0);
  FaultySource never(grpc_.get());
  never.FailAlways(absl::StatusCode::kUnavailable);
  auto stats = Download({&never});
  ASSERT_THAT(stats, IsOk());
  EXPECT_EQ(stats->chunks_reused, 3);
  EXPECT_TRUE(never.reads().empty());
  EXPECT_EQ(Slurp(installed), bytes_);
}

TEST_F(ChunkDownloaderTest, PartialOfAnotherArtifactIsNotTrusted) {
  // Same chunk size, another digest: the bytes may be anything, so start over.
  ASSERT_TRUE(WriteFileAtomically(partial_, bytes_.substr(0, kChunk), 0644).ok());
  ASSERT_TRUE(WriteFileAtomically(
                  partial_ + ".journal",
                  absl::StrCat("modeldist-chunk-journal-v1\ndigest sha256:", std::string(64, 'a'),
                               "\nchunk_size ", kChunk, "\nverified_chunks 1\n"),
                  0644)
                  .ok());
  auto stats = Download({grpc_.get()});
  ASSERT_THAT(stats, IsOk());
  EXPECT_EQ(stats->chunks_reused, 0);
  EXPECT_EQ(stats->chunks_fetched, 3);
  ExpectPartialIsTheArtifact();
}

// Moved from the DownloadArtifact tests (that downloader is gone): a partial longer than the
// artifact, without a journal, cannot be a prefix of it.
TEST_F(ChunkDownloaderTest, APartialLongerThanTheArtifactIsNotTrusted) {
  ASSERT_TRUE(WriteFileAtomically(partial_, bytes_ + "trailing", 0644).ok());
  auto stats = Download({grpc_.get()});
  ASSERT_THAT(stats, IsOk());
  EXPECT_EQ(stats->chunks_reused, 0);
  EXPECT_EQ(stats->chunks_fetched, 3);
  ExpectPartialIsTheArtifact();
}

// Moved from the DownloadArtifact tests: the server's NOT_FOUND for a digest it does not hold
// is final (no retry) and reaches the caller, and no byte is kept.
TEST_F(ChunkDownloaderTest, AnArtifactTheServerDoesNotHoldIsNotFound) {
  const std::string other = "not published";
  v1::ManifestArtifact artifact;
  artifact.set_digest(FormatDigest(Sha256::HexOf(other)));
  artifact.set_size_bytes(static_cast<int64_t>(other.size()));
  artifact.set_chunk_size(kChunk);
  // One chunk: its chain entry is the file's digest.
  Sha256 hash;
  hash.Update(other);
  artifact.add_chunk_chain(hash.FinishRaw());
  auto stats = DownloadChunks(artifact, {grpc_.get()}, partial_, options_);
  EXPECT_THAT(stats, StatusIs(absl::StatusCode::kNotFound, ::testing::_));
  EXPECT_TRUE(sleeps_.empty());
  EXPECT_EQ(Slurp(partial_), "");
}

TEST_F(ChunkDownloaderTest, BandwidthCapPacesThroughTheInjectedSleep) {
  options_.max_bytes_per_second = 256 << 10;
  auto stats = Download({grpc_.get()});
  ASSERT_THAT(stats, IsOk());
  // size / cap is ~36 s; the bucket's 100 ms burst and the real time the download took
  // (which a real sleep would not need to cover) come off that.
  const double ideal = static_cast<double>(kSize) / static_cast<double>(256 << 10);
  const double slept = absl::ToDoubleSeconds(TotalSleep());
  EXPECT_GT(slept, 0.95 * ideal);
  EXPECT_LE(slept, ideal);
  ExpectPartialIsTheArtifact();
}

TEST_F(ChunkDownloaderTest, NextSourceIsUsedWhenTheFirstKeepsFailing) {
  options_.retry.max_attempts = 3;
  FaultySource down(grpc_.get());
  down.FailAlways(absl::StatusCode::kUnavailable);
  FaultySource good(grpc_.get());
  auto stats = Download({&down, &good});
  ASSERT_THAT(stats, IsOk());
  EXPECT_EQ(down.reads().size(), 3u);
  EXPECT_EQ(good.reads().size(), 1u);
  EXPECT_EQ(stats->retries, 3);
  // Backoff between attempts on one source, full jitter under an exponential cap; none
  // before switching sources.
  ASSERT_EQ(sleeps_.size(), 2u);
  EXPECT_LE(sleeps_[0], absl::Milliseconds(100));
  EXPECT_LE(sleeps_[1], absl::Milliseconds(200));
  ExpectPartialIsTheArtifact();
}

TEST_F(ChunkDownloaderTest, SourceWithoutTheArtifactIsSkippedAtOnce) {
  FaultySource missing(grpc_.get());
  missing.FailAlways(absl::StatusCode::kNotFound);
  auto stats = Download({&missing, grpc_.get()});
  ASSERT_THAT(stats, IsOk());
  EXPECT_EQ(missing.reads().size(), 1u);
  EXPECT_TRUE(sleeps_.empty());
  ExpectPartialIsTheArtifact();
}

TEST_F(ChunkDownloaderTest, EverySourceFailingNamesEachOne) {
  options_.retry.max_attempts = 2;
  FaultySource a(grpc_.get());
  a.CorruptChunkAlways(0);
  FaultySource b(grpc_.get());
  b.CorruptChunkAlways(0);
  auto stats = Download({&a, &b});
  EXPECT_THAT(stats, StatusIs(absl::StatusCode::kDataLoss,
                              AllOf(HasSubstr("every source"), HasSubstr("faulty+grpc://"))));
  EXPECT_EQ(a.reads().size(), 2u);
  EXPECT_EQ(b.reads().size(), 2u);
  for (absl::Duration d : sleeps_) EXPECT_LE(d, options_.retry.max_backoff);
}

TEST_F(ChunkDownloaderTest, GrpcSourceCancelStopsAReadInProgress) {
  int pieces = 0;
  absl::Status status = grpc_->Read(artifact_.digest(), 0, kSize, [&](absl::string_view) {
    if (++pieces == 1) {
      std::thread([&] { grpc_->Cancel(); }).join();  // the watchdog's thread, in miniature
    }
    return absl::OkStatus();
  });
  EXPECT_THAT(status, StatusIs(absl::StatusCode::kCancelled, ::testing::_));
  // A cancel never leaks into the next Read.
  int64_t received = 0;
  MD_EXPECT_OK(grpc_->Read(artifact_.digest(), 0, 1000, [&](absl::string_view piece) {
    received += static_cast<int64_t>(piece.size());
    return absl::OkStatus();
  }));
  EXPECT_EQ(received, 1000);
}

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
