// File: wakeable_loop.h
//
// A background thread that runs a round of work again and again: after each round it sleeps
// for as long as the round asks, or until Wake. The replicator and the repair from origins
// run on one each (services/replicator.h, services/origin_repair.h).
//
// Stop ends the thread after the round in progress; a long round polls stopping() to end
// sooner. stopping() is set by Stop whether or not the thread was started, so work run on the
// caller's thread (a test's RunOnce) sees it too.
//
// Thread-safe.
#ifndef MODELDIST_SERVICES_WAKEABLE_LOOP_H_
#define MODELDIST_SERVICES_WAKEABLE_LOOP_H_

#include <atomic>
#include <functional>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace modeldist::services {

class WakeableLoop {
 public:
  // `round` does one round of work and returns how long to sleep before the next.
  explicit WakeableLoop(std::function<absl::Duration()> round) : round_(std::move(round)) {}
  ~WakeableLoop() { Stop(); }
  WakeableLoop(const WakeableLoop&) = delete;
  WakeableLoop& operator=(const WakeableLoop&) = delete;

  // Starts the thread; the first round runs at once. Idempotent.
  void Start();
  // Ends the current sleep: the next round starts now (or after the one in progress).
  void Wake() ABSL_LOCKS_EXCLUDED(mu_);
  // Sets stopping(), wakes the thread and joins it. Idempotent.
  void Stop() ABSL_LOCKS_EXCLUDED(mu_);

  bool stopping() const { return stopping_.load(); }
  // What work cut short by stopping() returns: CANCELLED, reason SERVER_STOPPING.
  static absl::Status StoppingError();

 private:
  void Run() ABSL_LOCKS_EXCLUDED(mu_);

  const std::function<absl::Duration()> round_;
  std::atomic<bool> stopping_{false};
  absl::Mutex mu_;
  bool woken_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;
};

}  // namespace modeldist::services

#endif  // MODELDIST_SERVICES_WAKEABLE_LOOP_H_
