// File: chunk_downloader_fixture.cc
//
// The shared pieces of the DownloadChunks suites (see chunk_downloader_fixture.h).
#include "tests/client/agent/chunk_downloader_fixture.h"

#include <arpa/inet.h>
#include <grpc/grpc.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "common/status.h"

namespace modeldist::agent {
namespace {

using ::modeldist::testing::RandomBytes;

// gRPC shuts the library down when its last channel and server go away, and in 1.51 that
// can wait ~10 s for an executor thread parked in epoll. One reference held for the whole
// binary keeps each test's teardown fast.
class GrpcLibraryEnvironment : public ::testing::Environment {
 public:
  void SetUp() override { grpc_init(); }
};
// This registration lives in the same file as ChunkDownloaderTest::SetUp, which every suite
// links, so the linker never drops it from the static library.
::testing::Environment* const kGrpcEnvironment =
    ::testing::AddGlobalTestEnvironment(new GrpcLibraryEnvironment);

}  // namespace

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

absl::Status FaultySource::Read(const std::string& digest, int64_t offset, int64_t limit,
                                const Sink& sink) {
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
    if (truncate_after_ >= 0 && delivered + static_cast<int64_t>(copy.size()) >= truncate_after_) {
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

absl::Status StallingSource::Read(const std::string& digest, int64_t offset, int64_t limit,
                                  const Sink& sink) {
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

void StallingSource::Cancel() {
  cancels_.fetch_add(1);
  absl::MutexLock lock(&mu_);
  cancelled_ = true;
}

SilentServer::SilentServer() {
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

SilentServer::~SilentServer() { ::close(fd_); }

void ChunkDownloaderTest::SetUp() {
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

absl::Duration ChunkDownloaderTest::TotalSleep() const {
  absl::Duration total;
  for (absl::Duration d : sleeps_) total += d;
  return total;
}

void ChunkDownloaderTest::ExpectPartialIsTheArtifact() {
  EXPECT_TRUE(Slurp(partial_) == bytes_) << "the partial differs from the artifact";
  EXPECT_FALSE(Exists(partial_ + ".journal"));
}

}  // namespace modeldist::agent
