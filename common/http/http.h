// File: http.h
//
// The one libcurl wrapper of modeldist: the agent's HTTP(S) byte source and the origins (S3,
// Supabase, CDNs) make their requests through it, so timeouts, stall detection, cancellation,
// URL redaction and the HTTP/curl -> absl::Status mapping have a single home.
//
// Example:
//   HttpRequest request{.method = "GET", .url = url};
//   request.headers.push_back({"Range", "bytes=0-99"});
//   MD_ASSIGN_OR_RETURN(HttpResponse response, Perform(request, sink));
//   if (response.status != 206) return HttpError(response, RedactUrl(url));
#ifndef MODELDIST_COMMON_HTTP_HTTP_H_
#define MODELDIST_COMMON_HTTP_HTTP_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace modeldist::http {

using Headers = std::vector<std::pair<std::string, std::string>>;

// Fills `buf` with up to `size` bytes of a request body, starting `offset` bytes into it, and
// returns how many (0 only past the end). Reads come in order; curl starts again from an
// earlier offset when it must resend (a redirect). An error stops the request and is returned
// as its status: an uploader that checks what it reads (storage::CheckedBlobReads) stops an
// upload that way before a wrong byte leaves.
using BodyReader = std::function<absl::StatusOr<size_t>(int64_t offset, char* buf, size_t size)>;

// A BodyReader of the file `fd` from `base` on, read with pread (so the caller's file position
// is untouched and parts can go up in parallel).
BodyReader FileBodyReader(int fd, int64_t base = 0);

struct HttpRequest {
  std::string method = "GET";  // GET, HEAD, PUT, POST, DELETE, ...
  std::string url;
  Headers headers;
  // The body: when `body_reader` is set it gives `body_length` bytes; otherwise `body` is sent
  // when the method is not GET/HEAD (empty is a valid body).
  std::string body;
  BodyReader body_reader;
  int64_t body_length = 0;
  std::string ca_file;  // extra trust for HTTPS (a private CA); empty: the system's
  bool follow_redirects = false;
  absl::Duration connect_timeout = absl::Seconds(30);
  absl::Duration total_timeout = absl::InfiniteDuration();
  // A transfer slower than `low_speed_bytes_per_second` for `low_speed_time` is a stall and
  // fails UNAVAILABLE (a dead peer behind a live TCP connection would otherwise hang forever).
  // 0 disables the check.
  int64_t low_speed_bytes_per_second = 1;
  absl::Duration low_speed_time = absl::Seconds(60);
  // When set and true, the transfer stops soon with CANCELLED (checked about once a second
  // even when no byte moves).
  const std::atomic<bool>* cancel = nullptr;
  std::string user_agent = "modeldist";
};

struct HttpResponse {
  long status = 0;
  // The final response head's headers (after redirects and 100 Continue), names lower-cased.
  Headers headers;
  // The start of a non-2xx body (S3 and Supabase explain errors there), at most 64 KiB.
  std::string error_body;

  // The value of the first header called `name` (any case), or "".
  std::string Header(absl::string_view name) const;
  bool ok() const { return status >= 200 && status < 300; }
};

// The body of a 2xx response, piece by piece. An error stops the transfer and is returned.
using BodySink = std::function<absl::Status(absl::string_view)>;
// Called once per 2xx response with its head, before its first body byte goes to the sink
// (or at the end when it has none). An error stops the transfer and is returned.
using HeadCheck = std::function<absl::Status(const HttpResponse&)>;

// Makes the request. Transport failures (connect, TLS, timeout, stall) and errors returned by
// the sink or head check come back as the status; any HTTP answer, 4xx/5xx included, comes
// back as an OK HttpResponse for the caller to judge (usually with HttpError).
absl::StatusOr<HttpResponse> Perform(const HttpRequest& request, const BodySink& sink = nullptr,
                                     const HeadCheck& on_head = nullptr);

// Perform that keeps a 2xx body (up to `max_body` bytes; more is an error) in `*body`.
absl::StatusOr<HttpResponse> PerformToString(const HttpRequest& request, std::string* body,
                                             size_t max_body = 16 << 20);

// The URL for logs and error messages: no user:password@, no query (presigned URLs carry
// signatures and tokens there), no fragment.
std::string RedactUrl(absl::string_view url);

// The one mapping of an HTTP status to an absl::Status, with reason HTTP_<code class>:
// 404/410 NOT_FOUND, 401/403 PERMISSION_DENIED, 416 OUT_OF_RANGE, 408/429/5xx UNAVAILABLE
// (worth a retry), other codes FAILED_PRECONDITION. `where` is a redacted URL or a name;
// `detail` (e.g. the S3 error code) is appended when not empty. Metadata: {"http_status"}.
absl::Status StatusForHttp(long status, absl::string_view where, absl::string_view detail = "");
// Checks that a 206's `Content-Range: bytes START-END/TOTAL` starts at `offset` (DATA_LOSS
// BAD_CONTENT_RANGE otherwise: splicing bytes from elsewhere would corrupt the result).
absl::Status CheckContentRangeStart(const HttpResponse& response, int64_t offset,
                                    absl::string_view where);

// StatusForHttp for a response, with the <Code> of an S3-style XML error body as the detail.
absl::Status HttpError(const HttpResponse& response, absl::string_view where);

// One request for `range` (a Range header value, "bytes=FROM-" or "bytes=FROM-TO"), sent
// however the caller signs or addresses it, passing `body` and `on_head` to Perform; a non-2xx
// answer comes back as its error (e.g. HttpError).
using RangeRequest = std::function<absl::StatusOr<HttpResponse>(
    const std::string& range, const BodySink& body, const HeadCheck& on_head)>;

// The RangeRequest of an unsigned request: `request` with the Range header added, performed;
// a non-2xx answer is its HttpError with `where`.
RangeRequest PlainRangeRequest(HttpRequest request, std::string where);

// The Range protocol over one request: bytes [offset, offset + length) (length < 0: to the
// end) streamed to `sink`. A 206 must start at `offset` (CheckContentRangeStart). A 200 is the
// whole object: taken from byte 0 only, and cut at `length`; for a later offset it is
// FAILED_PRECONDITION RANGE_IGNORED (splicing it at `offset` would be wrong, and skipping to
// it costs a whole download). Another 2xx is StatusForHttp's error. `*delivered` counts the
// bytes given to `sink`, also after a failure, so that a retry asks only for the rest. Fewer
// bytes than asked for is not an error here (a range may end past the object). An error of
// `sink` stops the transfer and is returned.
absl::Status GetRange(absl::string_view where, int64_t offset, int64_t length,
                      const RangeRequest& request, const BodySink& sink, int64_t* delivered);

}  // namespace modeldist::http

#endif  // MODELDIST_COMMON_HTTP_HTTP_H_
