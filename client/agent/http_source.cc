// ByteSource over HTTP(S) Range GETs through libcurl.
#include <curl/curl.h>

#include <atomic>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <string>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "client/agent/chunk_downloader.h"
#include "common/status.h"

namespace modeldist::agent {
namespace {

// An error body is read only to keep the connection usable; past this it is dropped.
constexpr size_t kMaxErrorBody = 64 * 1024;
constexpr absl::string_view kContentRange = "content-range:";

// The URL for logs: no user:password@, no query (signed URLs carry tokens there), no fragment.
std::string RedactUrl(const std::string& url) {
  std::string out = url.substr(0, url.find_first_of("?#"));
  const size_t scheme = out.find("://");
  const size_t host_start = scheme == std::string::npos ? 0 : scheme + 3;
  const size_t path_start = out.find('/', host_start);
  const size_t at = out.rfind('@', path_start == std::string::npos ? out.size() : path_start);
  if (at != std::string::npos && at >= host_start) out.erase(host_start, at + 1 - host_start);
  return out;
}

absl::Status StatusForHttp(long code, const std::string& where) {
  const std::string message = absl::StrCat(where, " answered HTTP ", code);
  if (code == 404 || code == 410) return absl::NotFoundError(message);
  if (code == 401 || code == 403) return absl::PermissionDeniedError(message);
  if (code == 416) return absl::OutOfRangeError(message);
  if (code == 408 || code == 429 || code >= 500) return absl::UnavailableError(message);
  return absl::FailedPreconditionError(message);
}

// One transfer's state, shared by the curl callbacks.
struct Transfer {
  const std::function<absl::Status(absl::string_view)>* sink = nullptr;
  const std::atomic<bool>* cancel = nullptr;
  std::string where;
  int64_t offset = 0;
  int64_t limit = 0;  // 0 = to the end
  long code = 0;
  std::string content_range;
  bool checked = false;  // the response head was checked before the first body byte
  int64_t delivered = 0;
  bool done_early = false;  // a 200 for offset 0 reached `limit`; stopping was our choice
  size_t error_body = 0;
  absl::Status error;  // why a callback stopped the transfer
};

size_t OnHeader(char* data, size_t size, size_t count, void* user) {
  auto* t = static_cast<Transfer*>(user);
  const absl::string_view line(data, size * count);
  // A new status line (after a redirect or a 100 Continue) starts a new response head.
  if (absl::StartsWith(line, "HTTP/")) {
    t->code = 0;
    t->content_range.clear();
    const size_t space = line.find(' ');
    if (space != absl::string_view::npos) {
      (void)absl::SimpleAtoi(line.substr(space + 1, 3), &t->code);
    }
  } else if (absl::StartsWithIgnoreCase(line, kContentRange)) {
    t->content_range = std::string(absl::StripAsciiWhitespace(line.substr(kContentRange.size())));
  }
  return size * count;
}

// Checks a 206's `Content-Range: bytes START-END/TOTAL` against what was asked.
absl::Status CheckContentRange(const Transfer& t) {
  absl::string_view value = t.content_range;
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
    return MakeError(
        absl::StatusCode::kDataLoss, "BAD_CONTENT_RANGE",
        absl::StrCat(t.where, " answered 206 with Content-Range \"", t.content_range, "\""));
  }
  if (start != t.offset) {
    return MakeError(
        absl::StatusCode::kDataLoss, "BAD_CONTENT_RANGE",
        absl::StrCat(t.where, " sent bytes from ", start, " when asked for ", t.offset));
  }
  return absl::OkStatus();
}

size_t OnBody(char* data, size_t size, size_t count, void* user) {
  auto* t = static_cast<Transfer*>(user);
  const size_t n = size * count;
  if (!t->checked) {
    t->checked = true;
    if (t->code == 206) {
      t->error = CheckContentRange(*t);
    } else if (t->code == 200 && t->offset != 0) {
      // A server that ignores Range sends the file from byte 0; splicing that at `offset` would
      // be wrong, and skipping `offset` bytes costs as much as a full download. Refuse, so the
      // next source is tried.
      t->error = MakeError(absl::StatusCode::kFailedPrecondition, "RANGE_IGNORED",
                           absl::StrCat(t->where, " ignored the Range header (HTTP 200)"));
    } else if (t->code != 200) {
      t->error = StatusForHttp(t->code, t->where);
      t->error_body = n;
      return t->error_body <= kMaxErrorBody ? n : 0;
    }
    if (!t->error.ok()) return 0;
  }
  if (!t->error.ok()) {
    t->error_body += n;
    return t->error_body <= kMaxErrorBody ? n : 0;
  }
  absl::string_view piece(data, n);
  if (t->code == 200 && t->limit > 0 && t->delivered + static_cast<int64_t>(n) >= t->limit) {
    // A 200 for a range at 0 is the whole file: take what was asked, then stop.
    piece = piece.substr(0, static_cast<size_t>(t->limit - t->delivered));
    t->done_early = true;
  }
  t->delivered += static_cast<int64_t>(piece.size());
  if (!piece.empty()) {
    absl::Status status = (*t->sink)(piece);
    if (!status.ok()) {
      t->error = status;
      return 0;
    }
  }
  return t->done_early ? 0 : n;
}

int OnProgress(void* user, curl_off_t, curl_off_t, curl_off_t, curl_off_t) {
  auto* t = static_cast<Transfer*>(user);
  // Non-zero aborts the transfer with CURLE_ABORTED_BY_CALLBACK. curl calls this at least
  // about once a second even when no byte moves, so a stalled transfer notices the cancel.
  return t->cancel->load() ? 1 : 0;
}

class HttpSource final : public ByteSource {
 public:
  HttpSource(std::string url, std::string ca_file)
      : url_(std::move(url)), ca_file_(std::move(ca_file)), where_(RedactUrl(url_)) {}

  absl::Status Read(const std::string& digest, int64_t offset, int64_t limit,
                    const std::function<absl::Status(absl::string_view)>& sink) override {
    cancel_.store(false);
    std::unique_ptr<CURL, void (*)(CURL*)> curl(curl_easy_init(), curl_easy_cleanup);
    if (curl == nullptr) return absl::InternalError("curl_easy_init failed");
    Transfer t;
    t.sink = &sink;
    t.cancel = &cancel_;
    t.where = where_;
    t.offset = offset;
    t.limit = limit;
    const std::string range =
        limit > 0 ? absl::StrCat(offset, "-", offset + limit - 1) : absl::StrCat(offset, "-");
    char errors[CURL_ERROR_SIZE] = {0};
    CURL* c = curl.get();
    curl_easy_setopt(c, CURLOPT_URL, url_.c_str());
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);  // threads: no SIGALRM for DNS timeouts
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 1L);  // CDNs redirect to edge or signed URLs
    curl_easy_setopt(c, CURLOPT_MAXREDIRS, 5L);
    curl_easy_setopt(c, CURLOPT_RANGE, range.c_str());
    curl_easy_setopt(c, CURLOPT_USERAGENT, "modeldist-agent");
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, 30000L);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, OnHeader);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, &t);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, OnBody);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &t);
    curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, OnProgress);
    curl_easy_setopt(c, CURLOPT_XFERINFODATA, &t);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errors);
    if (!ca_file_.empty()) curl_easy_setopt(c, CURLOPT_CAINFO, ca_file_.c_str());

    const CURLcode rc = curl_easy_perform(c);
    if (!t.error.ok()) return t.error;
    if (rc == CURLE_WRITE_ERROR && t.done_early) return absl::OkStatus();
    if (rc == CURLE_ABORTED_BY_CALLBACK) {
      return absl::CancelledError(absl::StrCat(where_, ": transfer cancelled"));
    }
    if (rc == CURLE_PEER_FAILED_VERIFICATION || rc == CURLE_SSL_CACERT_BADFILE) {
      // Not a network hiccup: retrying cannot make an untrusted server trusted.
      return absl::UnauthenticatedError(
          absl::StrCat(where_, ": ", curl_easy_strerror(rc), errors[0] != 0 ? ": " : "", errors));
    }
    if (rc != CURLE_OK) {
      // curl's messages name host and port, never the path or query.
      return absl::UnavailableError(
          absl::StrCat(where_, ": ", curl_easy_strerror(rc), errors[0] != 0 ? ": " : "", errors));
    }
    if (t.code != 200 && t.code != 206) return StatusForHttp(t.code, where_);
    if (t.code == 200 && offset != 0) {
      return MakeError(absl::StatusCode::kFailedPrecondition, "RANGE_IGNORED",
                       absl::StrCat(where_, " ignored the Range header (HTTP 200)"));
    }
    return absl::OkStatus();
  }

  void Cancel() override { cancel_.store(true); }

  std::string Describe() const override { return where_; }

 private:
  const std::string url_;
  const std::string ca_file_;
  const std::string where_;
  std::atomic<bool> cancel_{false};
};

}  // namespace

std::unique_ptr<ByteSource> NewHttpSource(const std::string& url, const std::string& ca_file) {
  // Not thread-safe in older libcurl builds, and only needed once per process.
  static std::once_flag init;
  std::call_once(init, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
  return std::make_unique<HttpSource>(url, ca_file);
}

}  // namespace modeldist::agent
