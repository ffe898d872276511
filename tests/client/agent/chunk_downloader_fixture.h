// File: chunk_downloader_fixture.h
//
// What the DownloadChunks suites share: a real in-process server holding one 3-chunk artifact
// (ChunkDownloaderTest), small fault-injecting sources wrapped around a real source for what a
// real server never does (corrupt a chunk, cut or stall a stream, send more than asked), and
// a port that accepts and never answers.
#ifndef MODELDIST_TESTS_CLIENT_AGENT_CHUNK_DOWNLOADER_FIXTURE_H_
#define MODELDIST_TESTS_CLIENT_AGENT_CHUNK_DOWNLOADER_FIXTURE_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "client/agent/chunk_downloader.h"
#include "gtest/gtest.h"
#include "tests/testing/test_server.h"
#include "tests/testing/test_util.h"

namespace modeldist::agent {

inline constexpr int64_t kChunk = 4 << 20;  // the server's chunk digests cover 4 MiB
inline constexpr int64_t kSize = 2 * kChunk + (1 << 20) + 123;  // 3 chunks, the last one short
inline constexpr char kVersion[] = "models/llama8b/versions/2026.1.0";

using Sink = std::function<absl::Status(absl::string_view)>;

bool Exists(const std::string& path);
// The file's bytes, or a "<missing: ...>" marker that no artifact equals.
std::string Slurp(const std::string& path);
void FlipByteInFile(const std::string& path, int64_t offset);
void AppendToFile(const std::string& path, const std::string& bytes);

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
                    const Sink& sink) override;
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
                    const Sink& sink) override;
  void Cancel() override;
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
  SilentServer();
  ~SilentServer();
  SilentServer(const SilentServer&) = delete;
  SilentServer& operator=(const SilentServer&) = delete;
  int port() const { return port_; }

 private:
  int fd_ = -1;
  int port_ = 0;
};

// The artifact (kSize random bytes, seed 7) published on a real in-process server, its
// manifest entry, a gRPC source to that server, and options whose backoff sleeps are recorded
// instead of slept.
class ChunkDownloaderTest : public ::testing::Test {
 protected:
  void SetUp() override;

  absl::StatusOr<ChunkDownloadStats> Download(const std::vector<ByteSource*>& sources) {
    return DownloadChunks(artifact_, sources, partial_, options_);
  }

  absl::Duration TotalSleep() const;

  void ExpectPartialIsTheArtifact();

  modeldist::testing::TestServer server_;
  modeldist::testing::ScratchDir dir_;
  std::string bytes_;
  v1::ManifestArtifact artifact_;
  std::unique_ptr<ByteSource> grpc_;
  std::string partial_;
  ChunkDownloadOptions options_;
  std::vector<absl::Duration> sleeps_;
};

}  // namespace modeldist::agent

#endif  // MODELDIST_TESTS_CLIENT_AGENT_CHUNK_DOWNLOADER_FIXTURE_H_
