// File: http_origin.h
//
// A read-only Origin on a plain HTTP(S) base URL: object `key` is GET <base_url>/<key>. A CDN
// or custom domain in front of a bucket (CloudFront, R2's public bucket URL), or any web server
// holding the blobs under their keys. Devices get the same public URL. Put and Delete are
// refused: nothing is ever written through a URL that has no credentials.
#ifndef MODELDIST_STORAGE_ORIGIN_HTTP_ORIGIN_H_
#define MODELDIST_STORAGE_ORIGIN_HTTP_ORIGIN_H_

#include <memory>
#include <string>

#include "absl/time/time.h"
#include "common/http/http.h"
#include "common/retry_policy.h"
#include "storage/origin/origin.h"

namespace modeldist::origin {

struct HttpOriginOptions {
  std::string name;
  std::string base_url;  // http(s)://host[:port][/path], no trailing slash, no query
  std::string ca_file;   // a private CA for HTTPS; empty: the system's
  RetryPolicy retry;
  // Each request's stall limit: slower than 1 byte/s for this long is UNAVAILABLE.
  absl::Duration stall_timeout = absl::Seconds(60);
};

class HttpOrigin final : public Origin {
 public:
  explicit HttpOrigin(HttpOriginOptions options) : options_(std::move(options)) {}

  const std::string& name() const override { return options_.name; }
  // FAILED_PRECONDITION (ORIGIN_READ_ONLY).
  absl::Status Put(const std::string& key, const http::BodyReader& source, int64_t size,
                   const std::string& sha256_hex, const PutProgress& progress) override;
  // HEAD: size from Content-Length, the ETag. NOT_FOUND for 404/410.
  absl::StatusOr<ObjectInfo> Head(const std::string& key) override;
  absl::Status Get(const std::string& key, int64_t offset, int64_t length, const ByteSink& sink,
                   const std::atomic<bool>* cancel) override;
  // <base_url>/<key>: public, so `expires_unix` does not apply.
  absl::StatusOr<std::string> DeviceUrl(const std::string& key, int64_t expires_unix) override;
  // FAILED_PRECONDITION (ORIGIN_READ_ONLY).
  absl::Status Delete(const std::string& key) override;

 private:
  http::HttpRequest Request(const std::string& method, const std::string& key,
                            const std::atomic<bool>* cancel) const;

  const HttpOriginOptions options_;
};

}  // namespace modeldist::origin

#endif  // MODELDIST_STORAGE_ORIGIN_HTTP_ORIGIN_H_
