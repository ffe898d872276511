#include "services/wakeable_loop.h"

#include "common/status.h"

namespace modeldist::services {

absl::Status WakeableLoop::StoppingError() {
  return MakeError(absl::StatusCode::kCancelled, "SERVER_STOPPING", "the server is shutting down");
}

void WakeableLoop::Start() {
  if (thread_.joinable() || stopping()) return;
  thread_ = std::thread([this] { Run(); });
}

void WakeableLoop::Wake() {
  absl::MutexLock lock(&mu_);
  woken_ = true;
}

void WakeableLoop::Stop() {
  stopping_.store(true);
  Wake();
  if (thread_.joinable()) thread_.join();
}

void WakeableLoop::Run() {
  while (!stopping()) {
    const absl::Duration wait = round_();
    absl::MutexLock lock(&mu_);
    mu_.AwaitWithTimeout(absl::Condition(&woken_), wait);
    woken_ = false;
  }
}

}  // namespace modeldist::services
