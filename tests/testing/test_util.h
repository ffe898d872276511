// File: test_util.h
//
// Test helpers: StatusIs and HasReason matchers for absl::Status / StatusOr (the Debian Abseil
// predates absl's own matchers), and scratch directories removed at the end of a test.
#ifndef MODELDIST_TESTS_TESTING_TEST_UTIL_H_
#define MODELDIST_TESTS_TESTING_TEST_UTIL_H_

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/status.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace modeldist::testing {

inline const absl::Status& GetStatus(const absl::Status& s) { return s; }
template <typename T>
const absl::Status& GetStatus(const absl::StatusOr<T>& s) {
  return s.status();
}

// Matches a Status or StatusOr whose code is `code` and whose message matches `message`.
MATCHER_P2(StatusIs, code, message_matcher, "") {
  const absl::Status& s = ::modeldist::testing::GetStatus(arg);
  *result_listener << "status is " << s;
  return s.code() == code &&
         ::testing::ExplainMatchResult(message_matcher, std::string(s.message()), result_listener);
}

// Matches a Status or StatusOr whose code is `code` and whose ErrorInfo reason
// (common/status.h) is `reason`.
MATCHER_P2(HasReason, code, reason, "") {
  const absl::Status& s = ::modeldist::testing::GetStatus(arg);
  *result_listener << "status is " << s << " (reason " << ::modeldist::ErrorReason(s) << ")";
  return s.code() == code && ::modeldist::ErrorReason(s) == reason;
}

// Matches an OK Status or StatusOr.
MATCHER(IsOk, "") {
  const absl::Status& s = ::modeldist::testing::GetStatus(arg);
  *result_listener << "status is " << s;
  return s.ok();
}

// Matches an OK StatusOr whose value matches `matcher` (a value or a gMock matcher).
MATCHER_P(IsOkAndHolds, matcher, "") {
  if (!arg.ok()) {
    *result_listener << "status is " << arg.status();
    return false;
  }
  return ::testing::ExplainMatchResult(matcher, *arg, result_listener);
}

#define MD_ASSERT_OK(expr) ASSERT_THAT((expr), ::modeldist::testing::IsOk())
#define MD_EXPECT_OK(expr) EXPECT_THAT((expr), ::modeldist::testing::IsOk())

// A fresh directory under $TMPDIR (or /tmp), removed with its contents on destruction.
class ScratchDir {
 public:
  ScratchDir();
  ~ScratchDir();
  ScratchDir(const ScratchDir&) = delete;
  ScratchDir& operator=(const ScratchDir&) = delete;
  const std::string& path() const { return path_; }
  std::string Join(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

// `size` deterministic pseudo-random bytes from `seed` (incompressible enough for tests).
std::string RandomBytes(size_t size, uint32_t seed = 1);

// How DamageFile damages a file: as bit rot, a lost or a stray byte, or a deleted file would.
enum class FileDamage { kNone, kFlip, kTruncate, kExtend, kDelete };

// Damages `path` behind the back of whatever stores it (read-only files too): kFlip flips one
// bit of the byte at `at` (a pwrite: the kernel writes dirty pages back before an O_DIRECT
// read, so a scrub sees it too), kTruncate drops the last byte, kExtend appends one, kDelete
// unlinks it. Fails the test on any error.
void DamageFile(const std::string& path, FileDamage damage, int64_t at = 0);

// The build directory (from the MODELDIST_BUILD_DIR environment variable set by ctest).
std::string BuildDir();

// A TCP port the kernel just handed out on 127.0.0.1, for a server that takes its port on the
// command line (0 when none could be had). Free a moment ago only: another process may take it
// before the server binds, so the caller checks the bind and retries on a new port.
int FreePort();

// A TCP port on 127.0.0.1 held for as long as this object lives: bound (not listening) with
// SO_REUSEPORT, so no FreePort or ReservedPort of any process gets it meanwhile, while a server
// that sets SO_REUSEPORT too (eventlet does by default, so OpenStack Swift) still binds and
// listens on it. Without it, two such servers started at once by parallel tests could both
// bind one port that FreePort handed to each, and share its connections. Servers that do not
// set SO_REUSEPORT cannot bind a held port: use FreePort for them.
class ReservedPort {
 public:
  ReservedPort();  // port() is 0 when no port could be had
  ~ReservedPort();
  ReservedPort(ReservedPort&& other) noexcept;
  ReservedPort& operator=(ReservedPort&& other) = delete;
  ReservedPort(const ReservedPort&) = delete;
  ReservedPort& operator=(const ReservedPort&) = delete;

  int port() const { return port_; }

 private:
  int fd_ = -1;
  int port_ = 0;
};

}  // namespace modeldist::testing

#endif  // MODELDIST_TESTS_TESTING_TEST_UTIL_H_
