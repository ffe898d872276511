// File: hash_lane.h
//
// A second thread that hashes one chunk at a time, so that a download hashes two chunks at
// once. The chunk chain (common/chunk_chain.h) lets every chunk be verified on its own from the
// previous entry, so chunk k + 1 need not wait for chunk k's hash. Without the lane, SHA-256
// (~0.75 CPU-s per GiB) on the receiving thread was the longest thread of a sync while the
// second core idled part of the time (docs/benchmarks.md, agent).
//
// The caller hands the chunk's bytes in order with Add, which copies them into a ring (a copy
// is ~10x cheaper than hashing them; the source's buffers do not outlive the sink call), and
// collects the result with Wait. One chunk at a time: Begin, Add..., End, Wait (or Abandon).
#ifndef MODELDIST_CLIENT_AGENT_HASH_LANE_H_
#define MODELDIST_CLIENT_AGENT_HASH_LANE_H_

#include <cstdint>
#include <memory>
#include <string>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "common/digest.h"

namespace modeldist::agent {

class HashLane {
 public:
  // RESOURCE_EXHAUSTED when the thread cannot be started.
  static absl::StatusOr<std::unique_ptr<HashLane>> Start();
  ~HashLane();
  HashLane(const HashLane&) = delete;
  HashLane& operator=(const HashLane&) = delete;

  // Starts a chunk hashed from `start` (StartChunkHash); `last`: the artifact's last chunk, whose
  // result is the file digest. The lane must be idle (never begun, or after Wait or Abandon).
  void Begin(Sha256 start, bool last);
  // Copies `bytes`, the chunk's next ones, for hashing; waits while the ring is full.
  void Add(absl::string_view bytes);
  // Every byte of the chunk was added.
  void End();
  // Waits for the chunk's hash and returns what its chain entry must equal (EndChunkHash).
  // The lane is idle afterwards.
  std::string Wait();
  // Drops the chunk begun (e.g. after an error), waiting until the thread lets go of it.
  void Abandon();
  // Whether a chunk was begun and neither waited for nor abandoned.
  bool active() const { return active_; }

 private:
  HashLane();
  void Run();
  bool HasWork() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return stop_ || (active_ && !done_ && (hashed_ < added_ || ended_));
  }
  bool HasRoom() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return added_ - hashed_ < kRingBytes; }
  bool Done() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return done_; }

  // 2 MiB: the lane can fall half a 4 MiB chunk behind before the caller waits.
  static constexpr int64_t kRingBytes = 2 << 20;
  // Hashed per unlock, so that the caller's copies keep flowing in meanwhile.
  static constexpr int64_t kStepBytes = 256 << 10;

  std::unique_ptr<char[]> ring_;
  // Only the caller's thread reads or writes it (Begin, Wait and Abandon set it).
  bool active_ = false;
  absl::Mutex mu_;
  Sha256 hash_ ABSL_GUARDED_BY(mu_);  // touched by the thread only while !done_
  bool last_ ABSL_GUARDED_BY(mu_) = false;
  int64_t added_ ABSL_GUARDED_BY(mu_) = 0;   // bytes copied into the ring for this chunk
  int64_t hashed_ ABSL_GUARDED_BY(mu_) = 0;  // of which hashed
  bool ended_ ABSL_GUARDED_BY(mu_) = false;
  bool abandon_ ABSL_GUARDED_BY(mu_) = false;
  bool done_ ABSL_GUARDED_BY(mu_) = true;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  std::string result_ ABSL_GUARDED_BY(mu_);
  std::thread thread_;
};

}  // namespace modeldist::agent

#endif  // MODELDIST_CLIENT_AGENT_HASH_LANE_H_
