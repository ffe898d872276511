// BackgroundAppender: appends run on another thread, in order; the first error stops the rest
// and is reported by the next call; the caller's buffer comes back empty for reuse; at most
// kMaxQueued appends wait.
#include "storage/background_appender.h"

#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/test_util.h"

namespace modeldist::storage {
namespace {

using ::modeldist::testing::IsOk;
using ::modeldist::testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::Pair;

TEST(BackgroundAppenderTest, AppendsInOrderOnAnotherThreadTakingTheBytes) {
  std::vector<std::pair<int64_t, std::string>> appended;
  std::thread::id appender_thread;
  BackgroundAppender appender([&](int64_t offset, absl::string_view data) {
    appender_thread = std::this_thread::get_id();
    appended.emplace_back(offset, std::string(data));
    return absl::OkStatus();
  });
  std::string data = "abc";
  ASSERT_THAT(appender.Append(0, &data), IsOk());
  EXPECT_TRUE(data.empty());
  data = "defg";
  ASSERT_THAT(appender.Append(3, &data), IsOk());
  data = "h";
  ASSERT_THAT(appender.Append(7, &data), IsOk());
  ASSERT_THAT(appender.Drain(), IsOk());
  EXPECT_THAT(appended, ElementsAre(Pair(0, "abc"), Pair(3, "defg"), Pair(7, "h")));
  EXPECT_NE(appender_thread, std::this_thread::get_id());
}

TEST(BackgroundAppenderTest, TheFirstErrorStopsTheRestAndIsReportedByTheNextCall) {
  std::vector<int64_t> appended;
  BackgroundAppender appender([&](int64_t offset, absl::string_view) {
    appended.push_back(offset);
    if (offset == 1) return absl::InvalidArgumentError("wrong offset");
    return absl::OkStatus();
  });
  std::string data = "x";
  ASSERT_THAT(appender.Append(0, &data), IsOk());
  data = "x";
  ASSERT_THAT(appender.Append(1, &data), IsOk());  // fails in the background
  EXPECT_THAT(appender.Drain(), StatusIs(absl::StatusCode::kInvalidArgument, "wrong offset"));
  data = "x";
  EXPECT_THAT(appender.Append(2, &data),
              StatusIs(absl::StatusCode::kInvalidArgument, "wrong offset"));
  EXPECT_EQ(data, "x");  // not taken
  EXPECT_THAT(appender.Drain(), StatusIs(absl::StatusCode::kInvalidArgument, "wrong offset"));
  EXPECT_THAT(appended, ElementsAre(0, 1));
}

TEST(BackgroundAppenderTest, AtMostMaxQueuedAppendsWaitBehindTheRunningOne) {
  absl::Mutex mu;
  bool release = false;
  int started = 0;
  BackgroundAppender appender([&](int64_t, absl::string_view) {
    absl::MutexLock lock(&mu);
    ++started;
    mu.Await(absl::Condition(&release));
    return absl::OkStatus();
  });
  // One runs (blocked) and kMaxQueued wait; the next Append has to wait for room.
  for (size_t i = 0; i <= BackgroundAppender::kMaxQueued; ++i) {
    std::string data = "x";
    ASSERT_THAT(appender.Append(static_cast<int64_t>(i), &data), IsOk());
  }
  bool appended_last = false;
  std::thread caller([&] {
    std::string data = "x";
    EXPECT_THAT(appender.Append(BackgroundAppender::kMaxQueued + 1, &data), IsOk());
    absl::MutexLock lock(&mu);
    appended_last = true;
  });
  {
    absl::MutexLock lock(&mu);
    mu.Await(absl::Condition(
        +[](int* n) { return *n == 1; }, &started));
    // Give the caller time to block; it must still be waiting for room.
    mu.AwaitWithTimeout(absl::Condition(&appended_last), absl::Milliseconds(100));
    EXPECT_FALSE(appended_last);
    release = true;
  }
  caller.join();
  EXPECT_THAT(appender.Drain(), IsOk());
  absl::MutexLock lock(&mu);
  EXPECT_EQ(started, static_cast<int>(BackgroundAppender::kMaxQueued) + 2);
}

}  // namespace
}  // namespace modeldist::storage
