// File: blob_endpoint.h
//
// The CDN origin: `GET` and `HEAD /v1/blobs/sha256:<hex>` on the HTTP listener, the same
// verified blobs ArtifactService.Read streams, for caches and CDNs (CloudFront, Varnish, nginx
// proxy_cache) that pull over plain HTTP and cache by URL.
//
// What a cache needs to keep a blob for good and to check it: a strong ETag (the digest, which
// names the bytes for ever), `Cache-Control: public, max-age=31536000, immutable`,
// `Repr-Digest: sha-256=:<base64>:` (RFC 9530) of the whole blob, and `Accept-Ranges: bytes`.
// Requests may be conditional (`If-None-Match` -> 304) and ranged: one `Range` (explicit or a
// suffix) -> 206 with Content-Range, a range past the end -> 416 with `Content-Range: bytes */N`,
// `If-Range` with another validator -> the whole blob (200). Several ranges get the whole blob.
//
// Only verified bytes leave, as with Read: each chain chunk is checked as it is sent
// (storage/served_bytes_check.h), and one that does not match cuts the connection before its
// last byte, so a cache never holds a whole damaged copy (its Content-Length is not reached);
// the blob goes to BlobHealth. A range whose chunks all matched in this process and are in the
// page cache goes with sendfile instead, zero-copy (storage::TrustedSendFd). A blob not stored here
// is read through from the origins (services/read_through.h) where the server has them, sent as its
// chunks are verified.
#ifndef MODELDIST_SERVICES_BLOB_ENDPOINT_H_
#define MODELDIST_SERVICES_BLOB_ENDPOINT_H_

#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "services/blob_health.h"
#include "services/http_server/listener.h"
#include "services/read_through.h"
#include "services/server_metrics.h"
#include "storage/blob_store.h"

namespace modeldist::services {

// The path blobs are served under; a blob's URL is this followed by its digest.
inline constexpr char kBlobPathPrefix[] = "/v1/blobs/";

// The URL of blob `digest` (sha256:<hex>) where `base` (scheme and host, no trailing slash)
// serves this listener's blobs: itself, or a CDN whose origin it is.
inline std::string BlobUrl(absl::string_view base, absl::string_view digest) {
  return absl::StrCat(base, kBlobPathPrefix, digest);
}

class BlobEndpoint {
 public:
  // `health`, `read_through` and `metrics` may be null (no damage reports; no origins; nothing
  // counted).
  BlobEndpoint(const storage::BlobStore* blobs, BlobHealth* health, ReadThrough* read_through,
               const ServerMetrics* metrics = nullptr)
      : blobs_(blobs), health_(health), read_through_(read_through), metrics_(metrics) {}

  // A request whose path starts with kBlobPathPrefix; `digest` is the rest of the path.
  http_server::Response Serve(const http_server::Request& request, const std::string& digest) const;

 private:
  const storage::BlobStore* blobs_;
  BlobHealth* health_;
  ReadThrough* read_through_;
  const ServerMetrics* metrics_;
};

}  // namespace modeldist::services

#endif  // MODELDIST_SERVICES_BLOB_ENDPOINT_H_
