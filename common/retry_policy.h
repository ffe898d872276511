// File: retry_policy.h
//
// The one retry policy of modeldist's clients (modeldistctl's uploads, the agent's downloads):
// which status codes are worth another attempt, exponential backoff with jitter between
// attempts, a cap on failures in a row, and an optional deadline for the whole operation.
//
// RetryPolicy is the plain description (a struct callers tune); Retrier is one loop's state
// over it. The caller decides what counts as progress: an attempt that moved forward calls
// Retrier::Progressed, so a flaky link that keeps making progress finishes a multi-GB
// transfer while a dead peer still makes the loop give up after max_attempts.
#ifndef MODELDIST_COMMON_RETRY_POLICY_H_
#define MODELDIST_COMMON_RETRY_POLICY_H_

#include <functional>
#include <optional>
#include <set>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace modeldist {

struct RetryPolicy {
  // Failed attempts in a row (without progress) before giving up; the first try counts.
  int max_attempts = 5;
  absl::Duration initial_backoff = absl::Milliseconds(500);
  absl::Duration max_backoff = absl::Seconds(30);
  double multiplier = 2.0;
  // The wait is scaled by a random factor in (1 - jitter, 1], so that many clients cut off by
  // the same outage do not come back in lockstep. 1 is "full jitter" (any wait up to the cap).
  double jitter = 0.5;
  // No new attempt starts once this much time has passed since the first one (the wait before
  // it included). Infinite by default: the attempt count alone decides.
  absl::Duration deadline = absl::InfiniteDuration();
  // The codes that say "the peer or the path to it may recover"; any other code is final.
  std::set<absl::StatusCode> retryable_codes = {absl::StatusCode::kUnavailable,
                                                absl::StatusCode::kDeadlineExceeded};

  // True for a non-OK status whose code is in retryable_codes.
  bool IsRetryable(const absl::Status& status) const;
  // The wait before retry number `retry` (1 for the first retry); `random` in [0, 1) picks
  // the jitter. min(max_backoff, initial_backoff * multiplier^(retry-1)) * (1 - jitter*random).
  absl::Duration Backoff(int retry, double random) const;
};

// Where a Retrier gets the time and its jitter; tests inject both.
struct RetryClock {
  std::function<absl::Time()> now = absl::Now;
  std::function<double()> random;  // [0, 1); a seeded engine when empty
};

// The state of one retry loop over a RetryPolicy (which must outlive it).
class Retrier {
 public:
  explicit Retrier(const RetryPolicy& policy, RetryClock clock = RetryClock());

  // After a failed attempt with `status`: the wait before the next attempt, or nullopt when
  // the loop should give up (a code the policy does not retry, max_attempts failures in a row,
  // or the deadline).
  std::optional<absl::Duration> NextWait(const absl::Status& status);
  // The last attempt made progress: the count of failures in a row starts again.
  void Progressed() { failures_ = 0; }
  // Starts over, deadline included (e.g. the agent moving on to its next source).
  void Reset();

  // Failed attempts in a row so far (after NextWait: including that failure).
  int failures() const { return failures_; }

 private:
  const RetryPolicy& policy_;
  RetryClock clock_;
  absl::Time start_;
  int failures_ = 0;
};

namespace retry_internal {
inline const absl::Status& StatusOf(const absl::Status& status) { return status; }
template <typename T>
const absl::Status& StatusOf(const absl::StatusOr<T>& result) {
  return result.status();
}
}  // namespace retry_internal

// Runs `attempt` (returning absl::Status or absl::StatusOr) until it succeeds or the policy
// gives up, sleeping between attempts, and returns its last result. For calls that are safe to
// repeat whole and keep no progress between attempts (a HEAD, a small request); a transfer
// that can resume keeps its own Retrier and calls Progressed.
template <typename Attempt>
auto RetryCall(const RetryPolicy& policy, Attempt&& attempt) -> decltype(attempt()) {
  Retrier retrier(policy);
  for (;;) {
    auto result = attempt();
    if (result.ok()) return result;
    std::optional<absl::Duration> wait = retrier.NextWait(retry_internal::StatusOf(result));
    if (!wait.has_value()) return result;
    absl::SleepFor(*wait);
  }
}

}  // namespace modeldist

#endif  // MODELDIST_COMMON_RETRY_POLICY_H_
