// File: sigv4.h
//
// AWS Signature Version 4 for S3-compatible origins (AWS S3, Cloudflare R2 with region "auto",
// Swift's s3api, Supabase's S3 endpoint): signing a request's headers, and presigning a URL a
// device can GET without credentials. Written on OpenSSL's HMAC-SHA256 so the server needs no
// AWS SDK; tests check it against AWS's published vectors and the official JS presigner.
//
// Example:
//   SigV4Request request{.method = "GET", .host = "127.0.0.1:9000", .path = "/models/a.bin"};
//   Headers add = SignHeaders(request, credentials, {.region = "auto"}, absl::Now());
#ifndef MODELDIST_STORAGE_ORIGIN_SIGV4_H_
#define MODELDIST_STORAGE_ORIGIN_SIGV4_H_

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace modeldist::origin {

using SigV4Params = std::vector<std::pair<std::string, std::string>>;

inline constexpr absl::string_view kUnsignedPayload = "UNSIGNED-PAYLOAD";
// hex(SHA-256("")): the payload hash of a request without a body.
inline constexpr absl::string_view kEmptySha256 =
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

struct SigV4Credentials {
  std::string access_key_id;
  std::string secret_access_key;
  std::string session_token;  // temporary credentials only; empty otherwise
};

struct SigV4Scope {
  std::string region = "us-east-1";  // R2: "auto"
  std::string service = "s3";
};

struct SigV4Request {
  std::string method = "GET";
  std::string host;  // as sent in Host: "example.com" or "127.0.0.1:9000"
  // The path, not yet percent-encoded ("/bucket/a b.bin"); encoded as S3 wants (every byte but
  // A-Z a-z 0-9 - . _ ~ and '/').
  std::string path = "/";
  // Query parameters, not yet encoded; sorted and encoded by the signer.
  SigV4Params query;
  // Headers to sign besides host and x-amz-* ones the signer adds (Range, Content-Type,
  // x-amz-checksum-sha256, ...). Sent as given.
  SigV4Params headers;
  // hex SHA-256 of the body, or kUnsignedPayload.
  std::string payload_hash = std::string(kUnsignedPayload);
  // S3 wants x-amz-content-sha256 on every header-signed request; generic AWS services (and the
  // generic test suite) do not send it.
  bool add_content_sha256_header = true;
};

// Percent-encodes as SigV4 wants: every byte except A-Z a-z 0-9 - . _ ~, and '/' when
// `keep_slash`.
std::string UriEncode(absl::string_view in, bool keep_slash);

// The headers to add to `request` (x-amz-date, x-amz-content-sha256 when asked,
// x-amz-security-token when set, Authorization) for it to be accepted at `now`.
SigV4Params SignHeaders(const SigV4Request& request, const SigV4Credentials& credentials,
                        const SigV4Scope& scope, absl::Time now);

// The query string (encoded, sorted, without '?') that makes `request` valid for
// `expires_seconds` (1 to 604800) from `now` without other credentials: request.query plus the
// X-Amz-* parameters and X-Amz-Signature. Only the host header is signed, so any client can
// use it (a device adds its own Range). `content_sha256_in_query` adds
// X-Amz-Content-Sha256=UNSIGNED-PAYLOAD as the AWS SDK for JavaScript v3 does.
std::string PresignQuery(const SigV4Request& request, const SigV4Credentials& credentials,
                         const SigV4Scope& scope, absl::Time now, int64_t expires_seconds,
                         bool content_sha256_in_query);

// base64 of the bytes a hex digest spells: S3's x-amz-checksum-sha256 from a blob's digest.
std::string HexToBase64(absl::string_view hex);

}  // namespace modeldist::origin

#endif  // MODELDIST_STORAGE_ORIGIN_SIGV4_H_
