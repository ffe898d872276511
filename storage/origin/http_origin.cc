#include "storage/origin/http_origin.h"

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/http/http.h"
#include "common/status.h"
#include "storage/origin/origin_config.h"
#include "storage/origin/ranged_get.h"

namespace modeldist::origin {
namespace {

absl::Status ReadOnly(const std::string& name, const char* what) {
  return ReadOnlyOriginError(name, "an http origin", what, "replicate to an s3 or supabase origin");
}

}  // namespace

http::HttpRequest HttpOrigin::Request(const std::string& method, const std::string& key,
                                      const std::atomic<bool>* cancel) const {
  http::HttpRequest request{.method = method, .url = absl::StrCat(options_.base_url, "/", key)};
  request.ca_file = options_.ca_file;
  request.low_speed_time = options_.stall_timeout;
  request.cancel = cancel;
  // A CDN may answer with a redirect to the bucket or another edge.
  request.follow_redirects = true;
  return request;
}

absl::Status HttpOrigin::Put(const std::string&, const http::BodyReader&, int64_t,
                             const std::string&, const PutProgress&) {
  return ReadOnly(options_.name, "store objects");
}

absl::Status HttpOrigin::Delete(const std::string&) {
  return ReadOnly(options_.name, "delete objects");
}

absl::StatusOr<ObjectInfo> HttpOrigin::Head(const std::string& key) {
  const http::HttpRequest request = Request("HEAD", key, nullptr);
  const std::string where = absl::StrCat(options_.name, ": HEAD ", key);
  return RetryCall(options_.retry, [&]() -> absl::StatusOr<ObjectInfo> {
    MD_ASSIGN_OR_RETURN(http::HttpResponse response, http::Perform(request));
    if (!response.ok()) return http::HttpError(response, where);
    ObjectInfo info;
    if (!absl::SimpleAtoi(response.Header("content-length"), &info.size)) info.size = -1;
    info.etag = EtagValue(response.Header("etag"));
    return info;
  });
}

absl::Status HttpOrigin::Get(const std::string& key, int64_t offset, int64_t length,
                             const ByteSink& sink, const std::atomic<bool>* cancel) {
  const std::string where = absl::StrCat(options_.name, ": GET ", key);
  return RangedGet(where, offset, length, options_.retry,
                   http::PlainRangeRequest(Request("GET", key, cancel), where), sink);
}

absl::StatusOr<std::string> HttpOrigin::DeviceUrl(const std::string& key, int64_t) {
  return absl::StrCat(options_.base_url, "/", key);
}

}  // namespace modeldist::origin
