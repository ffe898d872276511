// File: request_log.h
//
// One JSON line per request, gRPC and HTTP alike, to stderr or a file:
//
//   {"time":"2026-12-07T16:20:00.123Z","level":"info","protocol":"http","method":"GET",
//    "path":"/v1/blobs/sha256:…","code":"200","bytes":1048576,"duration_ms":12.5,
//    "peer":"127.0.0.1:52344","device_id":"mac-42"}
//
// `path` is the HTTP path (gRPC: the rpc, "/modeldist.v1.ManifestService/GetManifest", in
// `method`). `device_id` is there when the request named one (GetManifest, the edge endpoint).
// The level of a line follows its outcome: `error` for the server's own failures (gRPC
// INTERNAL, DATA_LOSS, UNAVAILABLE, UNKNOWN; HTTP 5xx), `warn` for a refused request (any other
// failure), `info` otherwise; lines below the configured level are not written. Secrets never
// reach it: no header or metadata is logged, and paths carry only digests.
//
// Thread-safe: each line is one write(2) to a file opened with O_APPEND.
#ifndef MODELDIST_SERVICES_REQUEST_LOG_H_
#define MODELDIST_SERVICES_REQUEST_LOG_H_

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace modeldist::services {

enum class LogLevel { kInfo = 0, kWarn = 1, kError = 2, kOff = 3 };

// "info", "warn", "error" or "off"; INVALID_ARGUMENT naming --log-level otherwise.
absl::StatusOr<LogLevel> ParseLogLevel(absl::string_view text);

struct RequestRecord {
  absl::Time start;
  bool http = false;
  std::string method;  // HTTP: GET, POST...; gRPC: /package.Service/Method
  std::string path;    // HTTP only
  std::string code;    // HTTP: "200"; gRPC: "OK", "NOT_FOUND"
  int64_t bytes = 0;   // body bytes sent
  absl::Duration duration;
  std::string peer;
  std::string device_id;
  // The level of this line: from the code (see the file comment).
  LogLevel Level() const;
};

class RequestLog {
 public:
  // `path` empty: stderr. The file is created (0640) or appended to.
  static absl::StatusOr<std::unique_ptr<RequestLog>> Open(const std::string& path, LogLevel level);
  ~RequestLog();
  RequestLog(const RequestLog&) = delete;
  RequestLog& operator=(const RequestLog&) = delete;

  void Write(const RequestRecord& record) const;
  // Whether a line of `level` would be written (callers skip gathering a record otherwise).
  bool Enabled(LogLevel level) const { return level >= level_ && level_ != LogLevel::kOff; }

  // The line Write writes for `record`, newline included.
  static std::string Format(const RequestRecord& record);

 private:
  RequestLog(int fd, bool owned, LogLevel level) : fd_(fd), owned_(owned), level_(level) {}
  const int fd_;
  const bool owned_;
  const LogLevel level_;
};

}  // namespace modeldist::services

#endif  // MODELDIST_SERVICES_REQUEST_LOG_H_
