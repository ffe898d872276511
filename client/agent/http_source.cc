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
    // A server that ignores Range for a later offset is refused (RANGE_IGNORED), so the
    // next source is tried; the chunk checks catch anything else.
    int64_t delivered = 0;
    return http::GetRange(where_, offset, limit > 0 ? limit : -1,
                          http::PlainRangeRequest(std::move(request), where_), sink, &delivered);
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
