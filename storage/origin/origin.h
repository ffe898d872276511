// An origin: object storage or a CDN that holds copies of verified blobs (S3/R2/Swift,
// Supabase Storage, a plain HTTP base URL in front of a bucket, another modeldist-server).
//
// modeldist stays the control plane: an origin only carries bytes. Everything read from an
// origin is checked against the chunk chain recorded at publish before it is stored, served or
// activated, so an origin is never trusted with correctness, only with availability.
#ifndef MODELDIST_STORAGE_ORIGIN_ORIGIN_H_
#define MODELDIST_STORAGE_ORIGIN_ORIGIN_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/strings/strip.h"
#include "common/http/http.h"

namespace modeldist::origin {

// What an origin says about one stored object.
struct ObjectInfo {
  int64_t size = -1;
  std::string etag;  // as the store sends it, quotes removed; may be empty
  // The object's SHA-256 when the store keeps one (S3's x-amz-checksum-sha256 on a single-part
  // object, in hex); empty when it does not. A replica counts only after size (and this, when
  // present) match the blob.
  std::string sha256_hex;
};

// An ETag header's value (or S3's XML <ETag>) as ObjectInfo keeps it: a weak mark (W/) and the
// quotes removed.
inline std::string EtagValue(absl::string_view etag) {
  absl::ConsumePrefix(&etag, "W/");
  absl::ConsumePrefix(&etag, "\"");
  absl::ConsumeSuffix(&etag, "\"");
  return std::string(etag);
}

// Bytes of an object, in order, in pieces of any size. Returning an error stops the transfer.
using ByteSink = std::function<absl::Status(absl::string_view)>;
// Bytes uploaded so far of the object being put (for progress and the replication status).
using PutProgress = std::function<void(int64_t done, int64_t total)>;

class Origin {
 public:
  virtual ~Origin() = default;

  // The configured name ("r2-eu", "supabase"), for logs, status and config.
  virtual const std::string& name() const = 0;

  // Stores the `size` bytes that `source` reads as `key`. `sha256_hex` is the blob's verified
  // digest; a store that can check it on receipt is given it. Large objects go up in parts; an
  // interrupted upload of the same key is resumed where the store allows it (S3 multipart:
  // list the parts), each part retried alone. An error from `source` stops the upload and is
  // returned (CANCELLED keeps what was sent for the next Put to resume; anything else, e.g.
  // DATA_LOSS from a check of the bytes, drops it). Returns only once the whole object is
  // stored.
  virtual absl::Status Put(const std::string& key, const http::BodyReader& source, int64_t size,
                           const std::string& sha256_hex, const PutProgress& progress) = 0;

  // NOT_FOUND when there is no such object.
  virtual absl::StatusOr<ObjectInfo> Head(const std::string& key) = 0;

  // Streams bytes [offset, offset + length) of `key` to `sink` (length < 0: to the end).
  // `cancel`, when set and true, makes the transfer stop soon with CANCELLED.
  virtual absl::Status Get(const std::string& key, int64_t offset, int64_t length,
                           const ByteSink& sink, const std::atomic<bool>* cancel) = 0;

  // A URL a device can GET (with Range) without any other credential until `expires_unix`
  // (seconds since the epoch): a presigned or signed URL, or the plain public URL when the
  // origin is public. Such URLs travel outside the signed manifest: they need no trust.
  virtual absl::StatusOr<std::string> DeviceUrl(const std::string& key, int64_t expires_unix) = 0;

  // Removes `key`; OK when it was not there.
  virtual absl::Status Delete(const std::string& key) = 0;
};

}  // namespace modeldist::origin

#endif  // MODELDIST_STORAGE_ORIGIN_ORIGIN_H_
