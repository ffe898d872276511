// File: cdn_origin.h
//
// An origin behind a CDN (CdnConfig in origins.proto): devices are sent to
// <cdn base_url>/<key>, a CloudFront signed URL when a signer is given, so that their bytes
// come from the edge nearest to them; the server itself still stores, heads and reads through
// the origin underneath.
#ifndef MODELDIST_STORAGE_ORIGIN_CDN_ORIGIN_H_
#define MODELDIST_STORAGE_ORIGIN_CDN_ORIGIN_H_

#include <memory>
#include <string>

#include "storage/origin/cloudfront.h"
#include "storage/origin/origin.h"

namespace modeldist::origin {

class CdnOrigin final : public Origin {
 public:
  // `signer` may be null: the CDN serves the objects publicly.
  CdnOrigin(std::unique_ptr<Origin> origin, std::string cdn_base_url,
            std::unique_ptr<CloudFrontSigner> signer)
      : origin_(std::move(origin)),
        cdn_base_url_(std::move(cdn_base_url)),
        signer_(std::move(signer)) {}

  const std::string& name() const override { return origin_->name(); }
  absl::Status Put(const std::string& key, const http::BodyReader& source, int64_t size,
                   const std::string& sha256_hex, const PutProgress& progress) override {
    return origin_->Put(key, source, size, sha256_hex, progress);
  }
  absl::StatusOr<ObjectInfo> Head(const std::string& key) override { return origin_->Head(key); }
  absl::Status Get(const std::string& key, int64_t offset, int64_t length, const ByteSink& sink,
                   const std::atomic<bool>* cancel) override {
    return origin_->Get(key, offset, length, sink, cancel);
  }
  // <cdn base_url>/<key>; signed to expire at `expires_unix` when there is a signer.
  absl::StatusOr<std::string> DeviceUrl(const std::string& key, int64_t expires_unix) override;
  absl::Status Delete(const std::string& key) override { return origin_->Delete(key); }

 private:
  std::unique_ptr<Origin> origin_;
  std::string cdn_base_url_;
  std::unique_ptr<CloudFrontSigner> signer_;
};

}  // namespace modeldist::origin

#endif  // MODELDIST_STORAGE_ORIGIN_CDN_ORIGIN_H_
