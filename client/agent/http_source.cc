// ByteSource over HTTP(S) Range GETs, through common/http.
#include <atomic>
#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "client/agent/chunk_downloader.h"
#include "common/http/http.h"
#include "common/status.h"

namespace modeldist::agent {
namespace {

class HttpSource final : public ByteSource {
 public:
  HttpSource(std::string url, std::string ca_file)
      : url_(std::move(url)), ca_file_(std::move(ca_file)), where_(http::RedactUrl(url_)) {}

  absl::Status Read(const std::string& digest, int64_t offset, int64_t limit,
                    const std::function<absl::Status(absl::string_view)>& sink) override {
    cancel_.store(false);
    http::HttpRequest request;
    request.url = url_;
    request.ca_file = ca_file_;
    request.follow_redirects = true;  // CDNs redirect to edge or signed URLs
    request.user_agent = "modeldist-agent";
    request.cancel = &cancel_;
    request.headers.emplace_back("Range",
                                 limit > 0 ? absl::StrCat("bytes=", offset, "-", offset + limit - 1)
                                           : absl::StrCat("bytes=", offset, "-"));

    long code = 0;
    int64_t delivered = 0;
    bool done_early = false;  // a 200 for offset 0 reached `limit`; stopping was our choice
    auto on_head = [&](const http::HttpResponse& response) {
      code = response.status;
      if (code == 206) return http::CheckContentRangeStart(response, offset, where_);
      if (code == 200 && offset != 0) {
        // A server that ignores Range sends the file from byte 0; splicing that at `offset`
        // would be wrong, and skipping `offset` bytes costs as much as a full download.
        // Refuse, so the next source is tried.
        return MakeError(absl::StatusCode::kFailedPrecondition, "RANGE_IGNORED",
                         absl::StrCat(where_, " ignored the Range header (HTTP 200)"));
      }
      if (code != 200) return http::StatusForHttp(code, where_);
      return absl::OkStatus();
    };
    auto body = [&](absl::string_view piece) {
      if (code == 200 && limit > 0 && delivered + static_cast<int64_t>(piece.size()) >= limit) {
        // A 200 for a range at 0 is the whole file: take what was asked, then stop.
        piece = piece.substr(0, static_cast<size_t>(limit - delivered));
        done_early = true;
      }
      delivered += static_cast<int64_t>(piece.size());
      if (!piece.empty()) MD_RETURN_IF_ERROR(sink(piece));
      // Any error stops the transfer; done_early tells it apart from a real one below.
      return done_early ? MakeError(absl::StatusCode::kAborted, "RANGE_TAKEN", "enough bytes")
                        : absl::OkStatus();
    };
    absl::StatusOr<http::HttpResponse> response = http::Perform(request, body, on_head);
    if (done_early) return absl::OkStatus();
    if (!response.ok()) return response.status();
    if (!response->ok()) return http::StatusForHttp(response->status, where_);
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
  return std::make_unique<HttpSource>(url, ca_file);
}

}  // namespace modeldist::agent
