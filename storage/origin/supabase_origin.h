// File: supabase_origin.h
//
// An Origin on a Supabase Storage bucket, through its REST API under <project url>/storage/v1
// with the project's service_role key (sent as `Authorization: Bearer` and `apikey`, never
// written to a log or an error message: errors name the redacted URL).
//
// Supabase answers every 4xx as HTTP 400 with the real status as a string in a JSON body
// ({"statusCode":"404","code":"NoSuchKey",...}), except a bad Range (a real 416) and the TUS
// endpoint (real statuses, plain-text bodies). One function, SupabaseError, reads both shapes
// for every call. A HEAD's error has no body, so a HEAD that fails with 400 asks the object's
// info route (a GET, which has one) what the error was.
//
// Put sends an object up to single_upload_limit in one POST (x-upsert: true). A larger one goes
// up over TUS (/upload/resumable, the protocol Supabase offers for large files): created with
// its length and bucket/object names, then PATCHed in chunks that end on multiples of 6 MiB,
// which Supabase requires (each chunk becomes a part of an S3 multipart upload behind it). A
// failed PATCH is followed by a HEAD of the upload for the offset the server kept, and the
// upload goes on from there, each chunk retried alone under the retry policy.
//
// What is resumed: the upload URL of an unfinished TUS upload is kept in memory per key, so a
// later Put of the same key by this object (after a CANCELLED one, or one that ran out of
// retries) continues from the server's offset instead of starting over. Nothing is kept across
// process restarts: Supabase cannot list TUS uploads, so a new process starts a new upload (the
// old one expires on the server after a day). A Put whose source fails with anything but
// CANCELLED, or that fails for a reason another attempt cannot fix (denied, too large), ends
// the upload (TUS DELETE) so nothing is left behind.
#ifndef MODELDIST_STORAGE_ORIGIN_SUPABASE_ORIGIN_H_
#define MODELDIST_STORAGE_ORIGIN_SUPABASE_ORIGIN_H_

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "common/http/http.h"
#include "common/retry_policy.h"
#include "storage/origin/origin.h"

namespace modeldist::origin {

// The TUS chunk size Supabase requires: every PATCH but the last carries exactly this much.
inline constexpr int64_t kSupabaseTusChunkSize = int64_t{6} << 20;

struct SupabaseOriginOptions {
  std::string name;
  // The project URL, scheme://host[:port] with no path: "https://<project>.supabase.co".
  std::string url;
  std::string bucket;
  std::string service_role_key;  // a JWT; never logged
  // Devices get the bucket's public URLs, which never expire, instead of signed ones.
  bool public_bucket = false;
  std::string ca_file;  // a private CA for HTTPS; empty: the system's
  // Objects up to this size go up in one POST; larger ones over TUS. At most 6 MiB, the size
  // Supabase recommends as the limit of a standard upload.
  int64_t single_upload_limit = kSupabaseTusChunkSize;
  RetryPolicy retry;
  // Each request's stall limit: slower than 1 byte/s for this long is UNAVAILABLE.
  absl::Duration stall_timeout = absl::Seconds(60);
  std::function<absl::Time()> now = absl::Now;
  // Test seam: called with each request before it is sent; a non-OK status stands for the
  // request's result (the request is not sent).
  std::function<absl::Status(const http::HttpRequest&)> fault;
};

// The error of a non-2xx Supabase answer: the status from the JSON body's `statusCode` string
// when there is one (Supabase sends HTTP 400 for every 4xx), else the HTTP status, mapped by
// http::StatusForHttp (404 NOT_FOUND, 401/403 PERMISSION_DENIED, ...), with the body's `code`
// (or TUS's plain-text message) as the detail. `where` names the request without credentials.
absl::Status SupabaseError(const http::HttpResponse& response, absl::string_view where);

class SupabaseOrigin final : public Origin {
 public:
  // INVALID_ARGUMENT (INVALID_ORIGINS_CONFIG) when the URL, bucket, key or upload limit is
  // unusable.
  static absl::StatusOr<std::unique_ptr<SupabaseOrigin>> Create(SupabaseOriginOptions options);

  const std::string& name() const override { return options_.name; }
  // sha256_hex is not sent: Supabase neither checks nor keeps a digest.
  absl::Status Put(const std::string& key, const http::BodyReader& source, int64_t size,
                   const std::string& sha256_hex, const PutProgress& progress) override;
  // HEAD: size and ETag; sha256_hex stays empty (Supabase does not report one).
  absl::StatusOr<ObjectInfo> Head(const std::string& key) override;
  absl::Status Get(const std::string& key, int64_t offset, int64_t length, const ByteSink& sink,
                   const std::atomic<bool>* cancel) override;
  // Public bucket: <url>/storage/v1/object/public/<bucket>/<key>. Otherwise a signed URL
  // (POST /object/sign) valid until `expires_unix`, or for 1 second when that has passed.
  absl::StatusOr<std::string> DeviceUrl(const std::string& key, int64_t expires_unix) override;
  absl::Status Delete(const std::string& key) override;

  // The URL of the unfinished TUS upload kept for `key`, or "" (for tests and status).
  std::string PendingUploadUrl(const std::string& key) const;

 private:
  struct TusUpload;

  explicit SupabaseOrigin(SupabaseOriginOptions options);

  // <url>/storage/v1<path> (`path` already encoded) with the credentials and transfer limits.
  http::HttpRequest Request(const std::string& method, const std::string& path) const;
  // "/object/<bucket>/<key>" with <kind>/ after /object when `kind` is not empty.
  std::string ObjectPath(absl::string_view kind, const std::string& key) const;
  // For errors and logs: "<name>: <method> <redacted url>".
  std::string Where(const http::HttpRequest& request) const;
  // One request without retries; a non-2xx answer becomes SupabaseError.
  absl::StatusOr<http::HttpResponse> Send(const http::HttpRequest& request,
                                          const http::BodySink& sink = nullptr,
                                          const http::HeadCheck& on_head = nullptr);
  // Send under the retry policy, keeping a JSON body in `*body`.
  absl::StatusOr<http::HttpResponse> SendForJson(const http::HttpRequest& request,
                                                 std::string* body);

  absl::Status PutSingle(const std::string& key, const http::BodyReader& source, int64_t size);
  absl::Status PutResumable(const std::string& key, const http::BodyReader& source, int64_t size,
                            const PutProgress& progress);
  // The kept upload of `key` (its offset read with HEAD) or a new one.
  absl::StatusOr<TusUpload> StartOrResume(const std::string& key, int64_t size);
  absl::StatusOr<TusUpload> CreateUpload(const std::string& key, int64_t size);
  // The offset the server holds for the upload (TUS HEAD).
  absl::StatusOr<int64_t> UploadOffset(const std::string& upload_url, int64_t* length);
  // Sends bytes [upload.offset, end) in one PATCH; on success upload.offset is the server's.
  absl::Status PatchChunk(TusUpload& upload, const http::BodyReader& source, int64_t end,
                          absl::Status* source_error);
  // Sends the chunk that starts at upload.offset, after each failure asking the server where it
  // stopped and going on from there, under the retry policy.
  absl::Status SendChunk(TusUpload& upload, const http::BodyReader& source, int64_t size);
  // Ends an unfinished upload on the server and forgets it (TUS DELETE).
  void Terminate(const std::string& key, const std::string& upload_url);

  void Remember(const std::string& key, const std::string& upload_url, int64_t size);
  void Forget(const std::string& key);

  const SupabaseOriginOptions options_;
  const std::string base_;  // <url>/storage/v1

  struct Kept {
    std::string url;
    int64_t size = 0;
  };
  mutable absl::Mutex mu_;
  std::map<std::string, Kept> uploads_ ABSL_GUARDED_BY(mu_);  // key -> unfinished TUS upload
};

}  // namespace modeldist::origin

#endif  // MODELDIST_STORAGE_ORIGIN_SUPABASE_ORIGIN_H_
