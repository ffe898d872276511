// ReadAheadBody (common/http/read_ahead_body.h): bytes and hook in order whatever the read
// sizes, the source's error after the bytes before it, a rewind refused, and memory bounded
// by `depth` blocks when nobody reads. Its use under real transfers is in the S3 origin's
// tests against Swift (tests/storage/origin) and the replication tests (tests/services).
#include "common/http/read_ahead_body.h"

#include <atomic>
#include <string>

#include "absl/time/clock.h"
#include "common/status.h"
#include "gtest/gtest.h"
#include "tests/testing/test_util.h"

namespace modeldist::http {
namespace {

using ::modeldist::testing::RandomBytes;

constexpr size_t kBlock = 1000;

// A source over `data` that counts the bytes it gave and fails at `fail_at` (when set).
struct Source {
  std::string data;
  int64_t fail_at = -1;
  std::atomic<int64_t> given{0};

  BodyReader Reader() {
    return [this](int64_t offset, char* buf, size_t size) -> absl::StatusOr<size_t> {
      if (fail_at >= 0 && offset + static_cast<int64_t>(size) > fail_at) {
        return MakeError(absl::StatusCode::kDataLoss, "TEST", "bad chunk");
      }
      // Short reads, as a file or a check may give.
      const size_t n = std::min<size_t>({size, 333, data.size() - static_cast<size_t>(offset)});
      std::copy_n(data.data() + offset, n, buf);
      given += static_cast<int64_t>(n);
      return n;
    };
  }
};

// Reads the body to its end in pieces of `piece` bytes, as curl does; stops at an error.
absl::Status ReadAll(ReadAheadBody& body, int64_t length, size_t piece, std::string* out) {
  std::string buf(piece, '\0');
  while (static_cast<int64_t>(out->size()) < length) {
    absl::StatusOr<size_t> got =
        body.Read(static_cast<int64_t>(out->size()), buf.data(), buf.size());
    if (!got.ok()) return got.status();
    if (*got == 0) return absl::InternalError("a read gave 0 bytes before the end");
    out->append(buf.data(), *got);
  }
  return absl::OkStatus();
}

TEST(ReadAheadBodyTest, GivesTheBytesAndShowsEveryBlockToTheHookInOrder) {
  Source source{RandomBytes(5 * kBlock + 17, 1)};
  std::string hooked;
  ReadAheadBody body(
      source.Reader(), static_cast<int64_t>(source.data.size()),
      [&hooked](absl::string_view block) { hooked.append(block.data(), block.size()); },
      {.block_bytes = kBlock, .depth = 2});
  std::string out;
  ASSERT_TRUE(ReadAll(body, static_cast<int64_t>(source.data.size()), 64, &out).ok());
  EXPECT_TRUE(out == source.data);
  EXPECT_TRUE(hooked == source.data);
  char c;
  EXPECT_EQ(*body.Read(static_cast<int64_t>(out.size()), &c, 1), 0u);  // the end
}

TEST(ReadAheadBodyTest, TheSourcesErrorComesAfterTheBytesBeforeIt) {
  Source source{RandomBytes(6 * kBlock, 2), /*fail_at=*/3 * kBlock + 5};
  ReadAheadBody body(source.Reader(), 6 * kBlock, nullptr, {.block_bytes = kBlock, .depth = 2});
  std::string out;
  const absl::Status status = ReadAll(body, 6 * kBlock, 700, &out);
  EXPECT_EQ(status.code(), absl::StatusCode::kDataLoss) << status;
  EXPECT_EQ(out.size(), 3 * kBlock);  // the blocks before the failing one
  EXPECT_TRUE(out == source.data.substr(0, 3 * kBlock));
}

TEST(ReadAheadBodyTest, ASourceThatEndsEarlyIsAnError) {
  Source source{RandomBytes(kBlock, 3)};
  ReadAheadBody body(source.Reader(), 2 * kBlock, nullptr, {.block_bytes = kBlock, .depth = 2});
  std::string out;
  const absl::Status status = ReadAll(body, 2 * kBlock, 512, &out);
  EXPECT_EQ(ErrorReason(status), "HTTP_BODY_SHORT") << status;
}

TEST(ReadAheadBodyTest, AReadAnywhereButTheNextOffsetIsRefused) {
  Source source{RandomBytes(3 * kBlock, 4)};
  ReadAheadBody body(source.Reader(), 3 * kBlock, nullptr, {.block_bytes = kBlock, .depth = 2});
  char buf[100];
  ASSERT_EQ(*body.Read(0, buf, sizeof buf), sizeof buf);
  const absl::StatusOr<size_t> rewound = body.Read(0, buf, sizeof buf);
  EXPECT_EQ(rewound.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(ErrorReason(rewound.status()), "HTTP_BODY_REWOUND");
  EXPECT_FALSE(body.Read(500, buf, sizeof buf).ok());
  EXPECT_TRUE(body.Read(100, buf, sizeof buf).ok());
}

TEST(ReadAheadBodyTest, ReadsAtMostDepthBlocksAheadAndStopsWhenDestroyedUnread) {
  Source source{RandomBytes(50 * kBlock, 5)};
  {
    ReadAheadBody body(source.Reader(), 50 * kBlock, nullptr, {.block_bytes = kBlock, .depth = 3});
    for (absl::Time until = absl::Now() + absl::Seconds(10);
         source.given.load() < 3 * static_cast<int64_t>(kBlock) && absl::Now() < until;) {
      absl::SleepFor(absl::Milliseconds(1));
    }
    absl::SleepFor(absl::Milliseconds(50));  // time to read on, were it not bounded
    EXPECT_EQ(source.given.load(), 3 * static_cast<int64_t>(kBlock));
  }  // joins without anyone reading
  EXPECT_EQ(source.given.load(), 3 * static_cast<int64_t>(kBlock));
}

}  // namespace
}  // namespace modeldist::http
