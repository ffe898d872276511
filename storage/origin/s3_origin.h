// File: s3_origin.h
//
// An Origin on an S3-compatible store: AWS S3, Cloudflare R2 (region "auto"), Swift's s3api,
// Supabase's S3 endpoint. Path-style addressing (https://endpoint/bucket/key), SigV4 header
// signing, presigned GET URLs for devices.
//
// Put sends an object up to part_size in one PUT, signed with its SHA-256 as the payload hash
// (the store refuses bytes that do not match) and, when checksum_sha256 is set, with
// x-amz-checksum-sha256 so the store keeps the digest and Head reports it. Larger objects go up
// as a multipart upload: an upload of the same key left by an interrupted Put is found
// (ListMultipartUploads) and its parts listed (ListParts); parts already there with the right
// size and MD5 are kept, the rest sent, each part retried alone under the retry policy. Over
// plain HTTP, a part whose ETag is not the MD5 of the bytes sent was damaged on the way and is
// sent again (over HTTPS, TLS authenticates the bytes on the way).
// Bodies are read ahead of curl on a thread of their own (http::ReadAheadBody). A failure
// that another attempt cannot fix (a denied request, bytes that failed their check) aborts the
// upload; an interruption (cancel, the store unavailable past the retries) leaves it for the
// next Put to resume.
#ifndef MODELDIST_STORAGE_ORIGIN_S3_ORIGIN_H_
#define MODELDIST_STORAGE_ORIGIN_S3_ORIGIN_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "common/http/http.h"
#include "common/retry_policy.h"
#include "storage/origin/origin.h"
#include "storage/origin/sigv4.h"

namespace modeldist::origin {

struct S3OriginOptions {
  std::string name;
  // scheme://host[:port] with no path: "https://<account>.r2.cloudflarestorage.com".
  std::string endpoint;
  std::string bucket;
  std::string region = "us-east-1";  // R2: "auto"
  SigV4Credentials credentials;
  std::string ca_file;  // a private CA for HTTPS; empty: the system's
  // Send x-amz-checksum-sha256 on single-part PUTs (AWS, R2). Off for stores that reject it.
  bool checksum_sha256 = true;
  // The bucket is public: DeviceUrl gives the plain object URL, which never expires, instead
  // of a presigned one.
  bool public_read = false;
  // Objects larger than this go up in parts of this size (the last one smaller). S3 wants parts
  // of at least 5 MiB and at most 10,000 of them.
  int64_t part_size = int64_t{64} << 20;
  RetryPolicy retry;
  // Each request's stall limit: slower than 1 byte/s for this long is UNAVAILABLE.
  absl::Duration stall_timeout = absl::Seconds(60);
  std::function<absl::Time()> now = absl::Now;
  // Test seam: called with each request before it is sent; a non-OK status stands for the
  // request's result (the request is not sent).
  std::function<absl::Status(const http::HttpRequest&)> fault;
};

// A multipart upload in progress (ListMultipartUploads).
struct PendingUpload {
  std::string key;
  std::string upload_id;
};

class S3Origin final : public Origin {
 public:
  // INVALID_ARGUMENT (INVALID_ORIGINS_CONFIG) when the endpoint, bucket or part size is
  // unusable.
  static absl::StatusOr<std::unique_ptr<S3Origin>> Create(S3OriginOptions options);

  const std::string& name() const override { return options_.name; }
  absl::Status Put(const std::string& key, const http::BodyReader& source, int64_t size,
                   const std::string& sha256_hex, const PutProgress& progress) override;
  absl::StatusOr<ObjectInfo> Head(const std::string& key) override;
  absl::Status Get(const std::string& key, int64_t offset, int64_t length, const ByteSink& sink,
                   const std::atomic<bool>* cancel) override;
  absl::StatusOr<std::string> DeviceUrl(const std::string& key, int64_t expires_unix) override;
  absl::Status Delete(const std::string& key) override;

  // Multipart uploads in progress whose key starts with `prefix`.
  absl::StatusOr<std::vector<PendingUpload>> PendingUploads(const std::string& prefix);
  // Abandons one (its parts are dropped by the store).
  absl::Status AbortUpload(const PendingUpload& upload);

  // Creates the bucket (for tests and first-time setup); OK when it exists and is ours.
  absl::Status CreateBucket();

 private:
  struct Call;
  struct Part;

  explicit S3Origin(S3OriginOptions options, std::string host);

  // One signed request without retries; a non-2xx answer becomes its error.
  absl::StatusOr<http::HttpResponse> Send(const Call& call, const http::BodySink& sink = nullptr,
                                          const http::HeadCheck& on_head = nullptr);
  // Send under the retry policy, for requests that are safe to repeat whole.
  absl::StatusOr<http::HttpResponse> SendWithRetries(const Call& call, std::string* body);

  absl::Status PutSingle(const std::string& key, const http::BodyReader& source, int64_t size,
                         const std::string& sha256_hex);
  absl::Status PutMultipart(const std::string& key, const http::BodyReader& source, int64_t size,
                            const PutProgress& progress);
  // Uploads part `number` ([offset, offset + length) of `source`); its ETag once the store
  // reports the MD5 of the bytes sent.
  absl::StatusOr<std::string> PutPart(const std::string& key, const std::string& upload_id,
                                      int number, const http::BodyReader& source, int64_t offset,
                                      int64_t length);
  // Sends `call` with [offset, offset + length) of `source` as its body, under the retry
  // policy; with `check_part_md5`, an ETag that is an MD5 must be that of the bytes sent.
  absl::StatusOr<http::HttpResponse> SendBody(Call call, const http::BodyReader& source,
                                              int64_t offset, int64_t length, bool check_part_md5);
  absl::StatusOr<std::vector<Part>> ListParts(const std::string& key, const std::string& upload_id);

  const S3OriginOptions options_;
  const std::string host_;  // host[:port] of the endpoint, as signed
};

}  // namespace modeldist::origin

#endif  // MODELDIST_STORAGE_ORIGIN_S3_ORIGIN_H_
