#include "common/http/http.h"

#include <curl/curl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <memory>
#include <mutex>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "common/file_util.h"
#include "common/status.h"

namespace modeldist::http {
namespace {

// An error body is read only to explain the error and keep the connection usable.
constexpr size_t kMaxErrorBody = 64 * 1024;

void GlobalInit() {
  // Not thread-safe in older libcurl builds, and only needed once per process.
  static std::once_flag init;
  std::call_once(init, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

// One transfer's state, shared by the curl callbacks.
struct Transfer {
  const HttpRequest* request = nullptr;
  const BodySink* sink = nullptr;
  const HeadCheck* on_head = nullptr;
  HttpResponse response;
  bool head_checked = false;
  int64_t sent = 0;    // body bytes read from body_reader/body so far
  absl::Status error;  // why a callback stopped the transfer
};

size_t OnHeader(char* data, size_t size, size_t count, void* user) {
  auto* t = static_cast<Transfer*>(user);
  const absl::string_view line(data, size * count);
  // A new status line (after a redirect or a 100 Continue) starts a new response head.
  if (absl::StartsWith(line, "HTTP/")) {
    t->response.status = 0;
    t->response.headers.clear();
    const size_t space = line.find(' ');
    if (space != absl::string_view::npos) {
      (void)absl::SimpleAtoi(line.substr(space + 1, 3), &t->response.status);
    }
    return size * count;
  }
  const size_t colon = line.find(':');
  if (colon != absl::string_view::npos) {
    t->response.headers.emplace_back(
        absl::AsciiStrToLower(absl::StripAsciiWhitespace(line.substr(0, colon))),
        std::string(absl::StripAsciiWhitespace(line.substr(colon + 1))));
  }
  return size * count;
}

absl::Status CheckHead(Transfer* t) {
  if (t->head_checked || !t->response.ok()) return absl::OkStatus();
  t->head_checked = true;
  if (t->on_head == nullptr || !*t->on_head) return absl::OkStatus();
  return (*t->on_head)(t->response);
}

size_t OnBody(char* data, size_t size, size_t count, void* user) {
  auto* t = static_cast<Transfer*>(user);
  const size_t n = size * count;
  if (!t->response.ok()) {
    // Keep the start of an error body; past the cap, stop reading it.
    if (t->response.error_body.size() >= kMaxErrorBody) return 0;
    t->response.error_body.append(data, std::min(n, kMaxErrorBody - t->response.error_body.size()));
    return n;
  }
  t->error = CheckHead(t);
  if (t->error.ok() && t->sink != nullptr && *t->sink) {
    t->error = (*t->sink)(absl::string_view(data, n));
  }
  return t->error.ok() ? n : 0;
}

size_t OnRead(char* buffer, size_t size, size_t count, void* user) {
  auto* t = static_cast<Transfer*>(user);
  const HttpRequest& r = *t->request;
  const int64_t total = r.body_reader ? r.body_length : static_cast<int64_t>(r.body.size());
  const size_t want = static_cast<size_t>(std::min<int64_t>(size * count, total - t->sent));
  if (want == 0) return 0;
  size_t got = want;
  if (!r.body_reader) {
    std::copy_n(r.body.data() + t->sent, want, buffer);
  } else {
    absl::StatusOr<size_t> read = r.body_reader(t->sent, buffer, want);
    if (!read.ok() || *read == 0 || *read > want) {
      t->error = read.ok() ? MakeError(absl::StatusCode::kFailedPrecondition, "HTTP_BODY_SHORT",
                                       "the file to upload ended before the body did")
                           : read.status();
      return CURL_READFUNC_ABORT;
    }
    got = *read;
  }
  t->sent += static_cast<int64_t>(got);
  return got;
}

// curl rewinds the body when it must send it again (a redirect, an auth retry).
int OnSeek(void* user, curl_off_t offset, int origin) {
  auto* t = static_cast<Transfer*>(user);
  if (origin != SEEK_SET) return CURL_SEEKFUNC_CANTSEEK;
  t->sent = offset;
  return CURL_SEEKFUNC_OK;
}

int OnProgress(void* user, curl_off_t, curl_off_t, curl_off_t, curl_off_t) {
  auto* t = static_cast<Transfer*>(user);
  // Non-zero aborts with CURLE_ABORTED_BY_CALLBACK; curl calls this about once a second even
  // when no byte moves, so a stalled transfer still notices the cancel.
  return t->request->cancel != nullptr && t->request->cancel->load() ? 1 : 0;
}

long Millis(absl::Duration d) {
  return d == absl::InfiniteDuration() ? 0L : static_cast<long>(absl::ToInt64Milliseconds(d));
}

absl::Status StatusForCurl(CURLcode rc, const char* errors, absl::string_view where) {
  const std::string message =
      absl::StrCat(where, ": ", curl_easy_strerror(rc), errors[0] != 0 ? ": " : "", errors);
  const ErrorMetadata metadata = {{"curl_code", absl::StrCat(static_cast<int>(rc))}};
  switch (rc) {
    case CURLE_ABORTED_BY_CALLBACK:
      return MakeError(absl::StatusCode::kCancelled, "HTTP_CANCELLED",
                       absl::StrCat(where, ": transfer cancelled"), metadata);
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CACERT_BADFILE:
      // Not a network hiccup: retrying cannot make an untrusted server trusted.
      return MakeError(absl::StatusCode::kUnauthenticated, "TLS_PEER_UNTRUSTED", message, metadata);
    case CURLE_OPERATION_TIMEDOUT:
      return MakeError(absl::StatusCode::kUnavailable, "HTTP_TIMEOUT", message, metadata);
    case CURLE_UNSUPPORTED_PROTOCOL:
    case CURLE_URL_MALFORMAT:
      return MakeError(absl::StatusCode::kInvalidArgument, "HTTP_BAD_URL", message, metadata);
    default:
      // curl's messages name host and port, never the path or query.
      return MakeError(absl::StatusCode::kUnavailable, "HTTP_TRANSPORT_FAILED", message, metadata);
  }
}

}  // namespace

std::string HttpResponse::Header(absl::string_view name) const {
  for (const auto& [key, value] : headers) {
    if (absl::EqualsIgnoreCase(key, name)) return value;
  }
  return "";
}

BodyReader FileBodyReader(int fd, int64_t base) {
  return [fd, base](int64_t offset, char* buf, size_t size) {
    return PreadAll(fd, buf, size, base + offset, "body");
  };
}

absl::StatusOr<HttpResponse> Perform(const HttpRequest& request, const BodySink& sink,
                                     const HeadCheck& on_head) {
  GlobalInit();
  std::unique_ptr<CURL, void (*)(CURL*)> curl(curl_easy_init(), curl_easy_cleanup);
  if (curl == nullptr) {
    return MakeError(absl::StatusCode::kInternal, "HTTP_TRANSPORT_FAILED", "curl_easy_init failed");
  }
  Transfer t;
  t.request = &request;
  t.sink = &sink;
  t.on_head = &on_head;
  const std::string where = RedactUrl(request.url);

  std::unique_ptr<curl_slist, void (*)(curl_slist*)> headers(nullptr, curl_slist_free_all);
  auto add_header = [&headers](const std::string& line) {
    headers.reset(curl_slist_append(headers.release(), line.c_str()));
  };
  for (const auto& [name, value] : request.headers) {
    // "Name;" is curl's way to send a header with an empty value ("Name:" would remove it).
    add_header(value.empty() ? absl::StrCat(name, ";") : absl::StrCat(name, ": ", value));
  }
  // The signed request is final: no "Expect: 100-continue" round trip and no header curl adds
  // on its own that a signature might not cover.
  add_header("Expect:");

  char errors[CURL_ERROR_SIZE] = {0};
  CURL* c = curl.get();
  curl_easy_setopt(c, CURLOPT_URL, request.url.c_str());
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);  // threads: no SIGALRM for DNS timeouts
  curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(c, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
  if (request.follow_redirects) {
    curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 1L);
    curl_easy_setopt(c, CURLOPT_MAXREDIRS, 5L);
  }
  curl_easy_setopt(c, CURLOPT_USERAGENT, request.user_agent.c_str());
  curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, Millis(request.connect_timeout));
  curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, Millis(request.total_timeout));
  if (request.low_speed_bytes_per_second > 0) {
    curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT,
                     static_cast<long>(request.low_speed_bytes_per_second));
    curl_easy_setopt(
        c, CURLOPT_LOW_SPEED_TIME,
        static_cast<long>(std::max<int64_t>(1, absl::ToInt64Seconds(request.low_speed_time))));
  }
  curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, OnHeader);
  curl_easy_setopt(c, CURLOPT_HEADERDATA, &t);
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, OnBody);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &t);
  curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
  curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, OnProgress);
  curl_easy_setopt(c, CURLOPT_XFERINFODATA, &t);
  curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errors);
  if (!request.ca_file.empty()) curl_easy_setopt(c, CURLOPT_CAINFO, request.ca_file.c_str());

  if (request.method == "HEAD") {
    curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
  } else if (request.method != "GET") {
    // Every other method sends a body (maybe empty) through the read callback, with its length
    // known up front: S3 wants Content-Length, never chunked encoding.
    const int64_t length =
        request.body_reader ? request.body_length : static_cast<int64_t>(request.body.size());
    curl_easy_setopt(c, CURLOPT_UPLOAD, 1L);
    curl_easy_setopt(c, CURLOPT_INFILESIZE_LARGE, static_cast<curl_off_t>(length));
    curl_easy_setopt(c, CURLOPT_READFUNCTION, OnRead);
    curl_easy_setopt(c, CURLOPT_READDATA, &t);
    curl_easy_setopt(c, CURLOPT_SEEKFUNCTION, OnSeek);
    curl_easy_setopt(c, CURLOPT_SEEKDATA, &t);
    if (request.method != "PUT") curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, request.method.c_str());
  }
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers.get());

  const CURLcode rc = curl_easy_perform(c);
  if (!t.error.ok()) return t.error;
  if (rc != CURLE_OK) {
    // An error body past the cap was cut short on purpose: the answer is already known.
    if (rc == CURLE_WRITE_ERROR && !t.response.ok() && t.response.status != 0) return t.response;
    return StatusForCurl(rc, errors, where);
  }
  MD_RETURN_IF_ERROR(CheckHead(&t));  // a 2xx without a body
  return t.response;
}

absl::StatusOr<HttpResponse> PerformToString(const HttpRequest& request, std::string* body,
                                             size_t max_body) {
  body->clear();
  return Perform(request, [body, max_body, &request](absl::string_view piece) {
    if (body->size() + piece.size() > max_body) {
      return MakeError(
          absl::StatusCode::kResourceExhausted, "HTTP_BODY_TOO_LARGE",
          absl::StrCat(RedactUrl(request.url), " sent a body over ", max_body, " bytes"));
    }
    body->append(piece.data(), piece.size());
    return absl::OkStatus();
  });
}

std::string RedactUrl(absl::string_view url) {
  std::string out(url.substr(0, url.find_first_of("?#")));
  const size_t scheme = out.find("://");
  const size_t host_start = scheme == std::string::npos ? 0 : scheme + 3;
  const size_t path_start = out.find('/', host_start);
  const size_t at = out.rfind('@', path_start == std::string::npos ? out.size() : path_start);
  if (at != std::string::npos && at >= host_start) out.erase(host_start, at + 1 - host_start);
  return out;
}

absl::Status StatusForHttp(long status, absl::string_view where, absl::string_view detail) {
  const std::string message =
      absl::StrCat(where, " answered HTTP ", status, detail.empty() ? "" : " ", detail);
  const ErrorMetadata metadata = {{"http_status", absl::StrCat(status)}};
  if (status == 404 || status == 410) {
    return MakeError(absl::StatusCode::kNotFound, "HTTP_NOT_FOUND", message, metadata);
  }
  if (status == 401 || status == 403) {
    return MakeError(absl::StatusCode::kPermissionDenied, "HTTP_FORBIDDEN", message, metadata);
  }
  if (status == 416) {
    return MakeError(absl::StatusCode::kOutOfRange, "HTTP_RANGE_NOT_SATISFIABLE", message,
                     metadata);
  }
  if (status == 408 || status == 429 || status >= 500) {
    return MakeError(absl::StatusCode::kUnavailable, "HTTP_UNAVAILABLE", message, metadata);
  }
  return MakeError(absl::StatusCode::kFailedPrecondition, "HTTP_UNEXPECTED_STATUS", message,
                   metadata);
}

absl::Status CheckContentRangeStart(const HttpResponse& response, int64_t offset,
                                    absl::string_view where) {
  const std::string header = response.Header("content-range");
  absl::string_view value = header;
  int64_t start = -1;
  int64_t end = -1;
  bool parsed = false;
  if (absl::ConsumePrefix(&value, "bytes ")) {
    const size_t dash = value.find('-');
    const size_t slash = value.find('/');
    parsed = dash != absl::string_view::npos && slash != absl::string_view::npos && dash < slash &&
             absl::SimpleAtoi(value.substr(0, dash), &start) &&
             absl::SimpleAtoi(value.substr(dash + 1, slash - dash - 1), &end) && start <= end;
  }
  if (!parsed) {
    return MakeError(absl::StatusCode::kDataLoss, "BAD_CONTENT_RANGE",
                     absl::StrCat(where, " answered 206 with Content-Range \"", header, "\""));
  }
  if (start != offset) {
    return MakeError(absl::StatusCode::kDataLoss, "BAD_CONTENT_RANGE",
                     absl::StrCat(where, " sent bytes from ", start, " when asked for ", offset));
  }
  return absl::OkStatus();
}

absl::Status HttpError(const HttpResponse& response, absl::string_view where) {
  // S3's error body: <Error><Code>SignatureDoesNotMatch</Code>...; the code says the most.
  std::string detail;
  const size_t open = response.error_body.find("<Code>");
  const size_t close = response.error_body.find("</Code>");
  if (open != std::string::npos && close != std::string::npos && close > open) {
    detail = response.error_body.substr(open + 6, close - open - 6);
  }
  return StatusForHttp(response.status, where, detail);
}

RangeRequest PlainRangeRequest(HttpRequest request, std::string where) {
  return [request = std::move(request), where = std::move(where)](
             const std::string& range, const BodySink& body,
             const HeadCheck& on_head) -> absl::StatusOr<HttpResponse> {
    HttpRequest ranged = request;
    ranged.headers.emplace_back("Range", range);
    absl::StatusOr<HttpResponse> response = Perform(ranged, body, on_head);
    if (response.ok() && !response->ok()) return HttpError(*response, where);
    return response;
  };
}

absl::Status GetRange(absl::string_view where, int64_t offset, int64_t length,
                      const RangeRequest& request, const BodySink& sink, int64_t* delivered) {
  *delivered = 0;
  const std::string range = length < 0 ? absl::StrCat("bytes=", offset, "-")
                                       : absl::StrCat("bytes=", offset, "-", offset + length - 1);
  long code = 0;
  auto on_head = [&](const HttpResponse& response) -> absl::Status {
    code = response.status;
    if (code == 206) return CheckContentRangeStart(response, offset, where);
    if (code == 200 && offset != 0) {
      return MakeError(absl::StatusCode::kFailedPrecondition, "RANGE_IGNORED",
                       absl::StrCat(where, " ignored the Range header (HTTP 200)"));
    }
    if (code != 200) return StatusForHttp(code, where);
    return absl::OkStatus();
  };
  bool enough = false;  // a 200 reached `length`: stopping the transfer was our choice
  auto body = [&](absl::string_view piece) -> absl::Status {
    if (code == 200 && length >= 0 && *delivered + static_cast<int64_t>(piece.size()) >= length) {
      piece = piece.substr(0, static_cast<size_t>(length - *delivered));
      enough = true;
    }
    *delivered += static_cast<int64_t>(piece.size());
    if (!piece.empty()) MD_RETURN_IF_ERROR(sink(piece));
    // Any error stops the transfer; `enough` tells this one apart below.
    return enough ? MakeError(absl::StatusCode::kAborted, "RANGE_TAKEN", "enough bytes")
                  : absl::OkStatus();
  };
  absl::StatusOr<HttpResponse> response = request(range, body, on_head);
  if (enough) return absl::OkStatus();
  return response.status();
}

}  // namespace modeldist::http
