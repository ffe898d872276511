#include "common/retry_policy.h"

#include <algorithm>
#include <cmath>
#include <memory>
#include <random>
#include <utility>

namespace modeldist {

bool RetryPolicy::IsRetryable(const absl::Status& status) const {
  return !status.ok() && retryable_codes.count(status.code()) > 0;
}

absl::Duration RetryPolicy::Backoff(int retry, double random) const {
  double scale = std::pow(multiplier, std::max(0, retry - 1));
  absl::Duration base = std::min(max_backoff, initial_backoff * scale);
  return base * (1.0 - jitter * std::clamp(random, 0.0, 1.0));
}

Retrier::Retrier(const RetryPolicy& policy, RetryClock clock)
    : policy_(policy), clock_(std::move(clock)) {
  if (!clock_.random) {
    auto engine = std::make_shared<std::mt19937_64>(std::random_device{}());
    clock_.random = [engine] { return std::uniform_real_distribution<double>(0.0, 1.0)(*engine); };
  }
  start_ = clock_.now();
}

std::optional<absl::Duration> Retrier::NextWait(const absl::Status& status) {
  ++failures_;
  if (!policy_.IsRetryable(status) || failures_ >= policy_.max_attempts) return std::nullopt;
  const absl::Duration wait = policy_.Backoff(failures_, clock_.random());
  if (clock_.now() + wait - start_ > policy_.deadline) return std::nullopt;
  return wait;
}

void Retrier::Reset() {
  failures_ = 0;
  start_ = clock_.now();
}

}  // namespace modeldist
