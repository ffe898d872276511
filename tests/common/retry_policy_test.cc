#include "common/retry_policy.h"

#include <optional>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"

namespace modeldist {
namespace {

TEST(RetryPolicyTest, RetriesOnlyTheNamedCodes) {
  RetryPolicy policy;
  EXPECT_TRUE(policy.IsRetryable(absl::UnavailableError("x")));
  EXPECT_TRUE(policy.IsRetryable(absl::DeadlineExceededError("x")));
  EXPECT_FALSE(policy.IsRetryable(absl::OkStatus()));
  EXPECT_FALSE(policy.IsRetryable(absl::NotFoundError("x")));
  EXPECT_FALSE(policy.IsRetryable(absl::DataLossError("x")));
  EXPECT_FALSE(policy.IsRetryable(absl::UnauthenticatedError("x")));
  policy.retryable_codes.insert(absl::StatusCode::kAborted);
  EXPECT_TRUE(policy.IsRetryable(absl::AbortedError("x")));
}

TEST(RetryPolicyTest, BackoffGrowsExponentiallyUpToTheCapWithJitterBelow) {
  RetryPolicy policy;
  policy.initial_backoff = absl::Seconds(1);
  policy.max_backoff = absl::Seconds(10);
  policy.multiplier = 2;
  policy.jitter = 0.5;
  EXPECT_EQ(policy.Backoff(1, 0.0), absl::Seconds(1));
  EXPECT_EQ(policy.Backoff(2, 0.0), absl::Seconds(2));
  EXPECT_EQ(policy.Backoff(3, 0.0), absl::Seconds(4));
  EXPECT_EQ(policy.Backoff(5, 0.0), absl::Seconds(10));
  EXPECT_EQ(policy.Backoff(50, 0.0), absl::Seconds(10));
  EXPECT_EQ(policy.Backoff(2, 0.5), absl::Milliseconds(1500));
  EXPECT_GT(policy.Backoff(2, 0.999), absl::Seconds(1));
}

TEST(RetryPolicyTest, FullJitterWaitsAnythingUpToTheCap) {
  RetryPolicy policy;
  policy.initial_backoff = absl::Seconds(4);
  policy.jitter = 1.0;
  EXPECT_EQ(policy.Backoff(1, 0.0), absl::Seconds(4));
  EXPECT_EQ(policy.Backoff(1, 0.75), absl::Seconds(1));
}

// A clock the test moves by hand: every wait the retrier hands out is "slept" by the test.
struct FakeClock {
  absl::Time now = absl::FromUnixSeconds(1000);
  RetryClock Get() {
    return {.now = [this] { return now; }, .random = [] { return 0.0; }};
  }
};

TEST(RetrierTest, GivesUpAfterMaxAttemptsInARow) {
  RetryPolicy policy;
  policy.max_attempts = 3;
  FakeClock clock;
  Retrier retrier(policy, clock.Get());
  EXPECT_EQ(retrier.NextWait(absl::UnavailableError("1")), absl::Milliseconds(500));
  EXPECT_EQ(retrier.NextWait(absl::UnavailableError("2")), absl::Seconds(1));
  EXPECT_EQ(retrier.NextWait(absl::UnavailableError("3")), std::nullopt);
  EXPECT_EQ(retrier.failures(), 3);
}

TEST(RetrierTest, ProgressStartsTheCountAgain) {
  RetryPolicy policy;
  policy.max_attempts = 2;
  FakeClock clock;
  Retrier retrier(policy, clock.Get());
  for (int i = 0; i < 10; ++i) {
    ASSERT_EQ(retrier.NextWait(absl::UnavailableError("x")), absl::Milliseconds(500)) << i;
    retrier.Progressed();
  }
  EXPECT_EQ(retrier.NextWait(absl::UnavailableError("x")), absl::Milliseconds(500));
  EXPECT_EQ(retrier.NextWait(absl::UnavailableError("x")), std::nullopt);
}

TEST(RetrierTest, AFinalCodeEndsTheLoopAtOnce) {
  RetryPolicy policy;
  FakeClock clock;
  Retrier retrier(policy, clock.Get());
  EXPECT_EQ(retrier.NextWait(absl::PermissionDeniedError("no")), std::nullopt);
}

TEST(RetrierTest, NoAttemptStartsAfterTheDeadline) {
  RetryPolicy policy;
  policy.max_attempts = 100;
  policy.initial_backoff = absl::Seconds(1);
  policy.multiplier = 1;
  policy.deadline = absl::Seconds(10);
  FakeClock clock;
  Retrier retrier(policy, clock.Get());
  clock.now += absl::Seconds(8);  // the first attempt took 8 s
  EXPECT_EQ(retrier.NextWait(absl::UnavailableError("x")), absl::Seconds(1));
  clock.now += absl::Seconds(1);
  EXPECT_EQ(retrier.NextWait(absl::UnavailableError("x")), absl::Seconds(1));  // starts at 10 s
  clock.now += absl::Seconds(1);
  EXPECT_EQ(retrier.NextWait(absl::UnavailableError("x")), std::nullopt);  // would start at 11 s
  retrier.Reset();
  EXPECT_EQ(retrier.NextWait(absl::UnavailableError("x")), absl::Seconds(1));
}

RetryPolicy Quick(int max_attempts) {
  RetryPolicy policy;
  policy.max_attempts = max_attempts;
  policy.initial_backoff = absl::Microseconds(1);
  return policy;
}

TEST(RetryCallTest, RepeatsARetryableFailureUntilItSucceeds) {
  int calls = 0;
  absl::StatusOr<int> result = RetryCall(Quick(5), [&]() -> absl::StatusOr<int> {
    if (++calls < 3) return absl::UnavailableError("busy");
    return 42;
  });
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(*result, 42);
  EXPECT_EQ(calls, 3);
}

TEST(RetryCallTest, StopsAtAFinalErrorOrWhenThePolicyGivesUp) {
  int calls = 0;
  absl::Status denied = RetryCall(Quick(5), [&] {
    ++calls;
    return absl::PermissionDeniedError("no");
  });
  EXPECT_EQ(denied.code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(calls, 1);

  calls = 0;
  absl::Status busy = RetryCall(Quick(3), [&] {
    ++calls;
    return absl::UnavailableError(absl::StrCat("busy ", calls));
  });
  EXPECT_EQ(busy.message(), "busy 3");  // the last attempt's error
  EXPECT_EQ(calls, 3);
}

}  // namespace
}  // namespace modeldist
