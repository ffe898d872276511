#include "services/request_log.h"

#include <fcntl.h>
#include <unistd.h>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/file_util.h"
#include "common/json.h"
#include "common/status.h"

namespace modeldist::services {
namespace {

constexpr absl::string_view kLevelNames[] = {"info", "warn", "error", "off"};

// gRPC codes that say the server failed, not the request.
bool IsServerFailure(absl::string_view code) {
  for (const absl::StatusCode failure :
       {absl::StatusCode::kInternal, absl::StatusCode::kDataLoss, absl::StatusCode::kUnavailable,
        absl::StatusCode::kUnknown}) {
    if (code == absl::StatusCodeToString(failure)) return true;
  }
  return false;
}

}  // namespace

absl::StatusOr<LogLevel> ParseLogLevel(absl::string_view text) {
  for (int i = 0; i < 4; ++i) {
    if (text == kLevelNames[i]) return static_cast<LogLevel>(i);
  }
  return InvalidArgument(
      "log_level", "INVALID_FLAG",
      absl::StrCat("--log-level must be info, warn, error or off; got \"", text, "\""));
}

LogLevel RequestRecord::Level() const {
  if (http) {
    if (!code.empty() && code[0] == '5') return LogLevel::kError;
    if (!code.empty() && code[0] == '4') return LogLevel::kWarn;
    return LogLevel::kInfo;
  }
  if (code == "OK") return LogLevel::kInfo;
  return IsServerFailure(code) ? LogLevel::kError : LogLevel::kWarn;
}

absl::StatusOr<std::unique_ptr<RequestLog>> RequestLog::Open(const std::string& path,
                                                             LogLevel level) {
  if (path.empty()) return std::unique_ptr<RequestLog>(new RequestLog(STDERR_FILENO, false, level));
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
  if (fd < 0) return WithContext(ErrnoStatus(errno, path), "--log-file");
  return std::unique_ptr<RequestLog>(new RequestLog(fd, true, level));
}

RequestLog::~RequestLog() {
  if (owned_) ::close(fd_);
}

std::string RequestLog::Format(const RequestRecord& r) {
  std::string line = absl::StrCat(
      "{\"time\":",
      JsonQuote(absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", r.start, absl::UTCTimeZone())),
      ",\"level\":", JsonQuote(kLevelNames[static_cast<int>(r.Level())]),
      ",\"protocol\":", r.http ? "\"http\"" : "\"grpc\"", ",\"method\":", JsonQuote(r.method));
  if (r.http) absl::StrAppend(&line, ",\"path\":", JsonQuote(r.path));
  absl::StrAppend(&line, ",\"code\":", JsonQuote(r.code), ",\"bytes\":", r.bytes,
                  absl::StrFormat(",\"duration_ms\":%.3f", absl::ToDoubleMilliseconds(r.duration)),
                  ",\"peer\":", JsonQuote(r.peer));
  if (!r.device_id.empty()) absl::StrAppend(&line, ",\"device_id\":", JsonQuote(r.device_id));
  line += "}\n";
  return line;
}

void RequestLog::Write(const RequestRecord& record) const {
  if (!Enabled(record.Level())) return;
  const std::string line = Format(record);
  // One write per line: O_APPEND keeps lines whole between threads and processes. A failed
  // write (a full disk) must not fail the request; the line is lost.
  ssize_t ignored = ::write(fd_, line.data(), line.size());
  (void)ignored;
}

}  // namespace modeldist::services
