// File: blocking_pool.h
//
// A few threads for work that may block on the disk, such as the preads of ArtifactService.Read.
// gRPC runs callback-API reactions on the threads that also poll the network: a pread that
// waits for a cold disk there would stall every call on the server, so such work is posted
// here and its result handed back to gRPC (e.g. with StartWrite) from a pool thread.
//
// Example:
//   BlockingPool pool(4);
//   pool.Run([this] { ReadNextChunkAndWrite(); });
#ifndef MODELDIST_SERVICES_BLOCKING_POOL_H_
#define MODELDIST_SERVICES_BLOCKING_POOL_H_

#include <deque>
#include <functional>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"

namespace modeldist::services {

class BlockingPool {
 public:
  // Starts `threads` (>= 1) threads.
  explicit BlockingPool(int threads);
  // Runs every task already posted, then joins the threads.
  ~BlockingPool();
  BlockingPool(const BlockingPool&) = delete;
  BlockingPool& operator=(const BlockingPool&) = delete;

  // Queues `task` to run on one of the threads, in posting order. Thread-safe.
  void Run(std::function<void()> task);

 private:
  void Loop();
  bool HasWorkOrStopping() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return !tasks_.empty() || stopping_;
  }

  absl::Mutex mu_;
  std::deque<std::function<void()>> tasks_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<std::thread> threads_;
};

}  // namespace modeldist::services

#endif  // MODELDIST_SERVICES_BLOCKING_POOL_H_
