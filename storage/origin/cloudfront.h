// File: cloudfront.h
//
// CloudFront signed URLs: a URL under a distribution that devices may GET until a time, signed
// with the RSA key whose public half is registered in CloudFront (a key group's public key,
// named by its id in `Key-Pair-Id`). Two kinds, as CloudFront defines them:
//   - canned policy: only an expiry; the URL carries `Expires`, `Key-Pair-Id`, `Signature`;
//   - custom policy: also a start time and/or a client IP range; the URL carries the policy
//     itself (`Policy`, base64) instead of `Expires`.
// The signature is RSA PKCS#1 v1.5 over SHA-1 of the policy's JSON, and `Policy` and
// `Signature` use CloudFront's URL-safe base64 ('+' -> '-', '=' -> '_', '/' -> '~'). Checked
// byte for byte against the official @aws-sdk/cloudfront-signer (tests/node).
#ifndef MODELDIST_STORAGE_ORIGIN_CLOUDFRONT_H_
#define MODELDIST_STORAGE_ORIGIN_CLOUDFRONT_H_

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"

namespace modeldist::origin {

struct CloudFrontPolicy {
  // Seconds since the epoch: the URL works before this time only. Required.
  int64_t date_less_than = 0;
  // When > 0: the URL works from this time on only (custom policy).
  int64_t date_greater_than = 0;
  // When set: only clients from this IPv4 address or CIDR range ("192.0.2.0/24"; a bare
  // address means /32) may use the URL (custom policy).
  std::string ip_address;
};

class CloudFrontSigner {
 public:
  // `private_key_pem`: the RSA private key (PKCS#1 or PKCS#8 PEM). INVALID_ARGUMENT (reason
  // CLOUDFRONT_KEY_INVALID) for an empty key pair id, a key that does not parse, or one that
  // is not RSA; the message never contains the key.
  static absl::StatusOr<std::unique_ptr<CloudFrontSigner>> Create(
      std::string key_pair_id, const std::string& private_key_pem);
  ~CloudFrontSigner();
  CloudFrontSigner(const CloudFrontSigner&) = delete;
  CloudFrontSigner& operator=(const CloudFrontSigner&) = delete;

  // `url` (http or https, already percent-encoded, as object keys of modeldist are) with the
  // signature parameters appended. A canned policy unless `policy` has a start or an IP range.
  // INVALID_ARGUMENT (CLOUDFRONT_POLICY_INVALID) for a URL or policy CloudFront cannot take.
  // Safe to call from several threads at once.
  absl::StatusOr<std::string> Sign(const std::string& url, const CloudFrontPolicy& policy) const;

 private:
  struct Key;
  CloudFrontSigner(std::string key_pair_id, std::unique_ptr<Key> key);

  std::string key_pair_id_;
  std::unique_ptr<Key> key_;
};

}  // namespace modeldist::origin

#endif  // MODELDIST_STORAGE_ORIGIN_CLOUDFRONT_H_
