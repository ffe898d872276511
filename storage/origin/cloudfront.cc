#include "storage/origin/cloudfront.h"

#include <openssl/evp.h>
#include <openssl/pem.h>

#include <algorithm>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/status.h"

namespace modeldist::origin {
namespace {

absl::Status BadKey(const std::string& why) {
  return InvalidArgument("private_key", "CLOUDFRONT_KEY_INVALID", why);
}

absl::Status BadPolicy(const std::string& field, const std::string& why) {
  return InvalidArgument(field, "CLOUDFRONT_POLICY_INVALID", why);
}

// CloudFront's URL-safe base64.
std::string CloudFrontBase64(absl::string_view bytes) {
  std::string out = absl::Base64Escape(bytes);
  for (char& c : out) {
    if (c == '+') c = '-';
    if (c == '=') c = '_';
    if (c == '/') c = '~';
  }
  return out;
}

// "a.b.c.d" or "a.b.c.d/n" -> "a.b.c.d/n" (n defaults to 32); empty on a malformed one.
std::string NormalizeCidr(const std::string& cidr) {
  std::vector<std::string> parts = absl::StrSplit(cidr, '/');
  if (parts.size() > 2) return "";
  std::vector<std::string> octets = absl::StrSplit(parts[0], '.');
  if (octets.size() != 4) return "";
  for (const std::string& o : octets) {
    int v = 0;
    if (o.empty() || o.size() > 3 || !absl::SimpleAtoi(o, &v) || v < 0 || v > 255) return "";
  }
  int mask = 32;
  if (parts.size() == 2 &&
      (parts[1].empty() || !absl::SimpleAtoi(parts[1], &mask) || mask < 0 || mask > 32)) {
    return "";
  }
  return absl::StrCat(parts[0], "/", mask);
}

}  // namespace

struct CloudFrontSigner::Key {
  ~Key() { EVP_PKEY_free(pkey); }
  EVP_PKEY* pkey = nullptr;
};

CloudFrontSigner::CloudFrontSigner(std::string key_pair_id, std::unique_ptr<Key> key)
    : key_pair_id_(std::move(key_pair_id)), key_(std::move(key)) {}

CloudFrontSigner::~CloudFrontSigner() = default;

absl::StatusOr<std::unique_ptr<CloudFrontSigner>> CloudFrontSigner::Create(
    std::string key_pair_id, const std::string& private_key_pem) {
  // It goes into URLs as it is: CloudFront's ids are upper-case letters and digits.
  if (key_pair_id.empty() || !std::all_of(key_pair_id.begin(), key_pair_id.end(),
                                          [](char c) { return absl::ascii_isalnum(c); })) {
    return InvalidArgument("key_pair_id", "CLOUDFRONT_KEY_INVALID",
                           "the CloudFront key pair id (the public key's id, e.g. K2JCJMDEHXQW5F) "
                           "is required and holds only letters and digits");
  }
  BIO* bio = BIO_new_mem_buf(private_key_pem.data(), static_cast<int>(private_key_pem.size()));
  if (bio == nullptr) return BadKey("cannot read the CloudFront private key (out of memory)");
  auto key = std::make_unique<Key>();
  key->pkey = PEM_read_bio_PrivateKey(bio, nullptr, nullptr, nullptr);
  BIO_free(bio);
  if (key->pkey == nullptr) {
    return BadKey("the CloudFront private key is not a PEM private key");
  }
  if (EVP_PKEY_get_base_id(key->pkey) != EVP_PKEY_RSA) {
    return BadKey("the CloudFront private key is not an RSA key (CloudFront signs with RSA)");
  }
  return std::unique_ptr<CloudFrontSigner>(
      new CloudFrontSigner(std::move(key_pair_id), std::move(key)));
}

absl::StatusOr<std::string> CloudFrontSigner::Sign(const std::string& url,
                                                   const CloudFrontPolicy& policy) const {
  if (!absl::StartsWith(url, "https://") && !absl::StartsWith(url, "http://")) {
    return BadPolicy("url", "a CloudFront URL starts with https:// or http://");
  }
  for (char c : url) {
    // What JSON would have to escape, and what a URL must not hold unencoded.
    if (c == '"' || c == '\\' || c == ' ' || absl::ascii_iscntrl(c) ||
        static_cast<unsigned char>(c) >= 0x80) {
      return BadPolicy("url", "the URL must be percent-encoded (no quotes, spaces or controls)");
    }
  }
  if (policy.date_less_than <= 0) {
    return BadPolicy("date_less_than", "an expiry time (seconds since the epoch) is required");
  }
  const bool custom = policy.date_greater_than > 0 || !policy.ip_address.empty();
  // The policy's JSON exactly as CloudFront and the AWS SDKs write it: no whitespace, keys in
  // this order.
  std::string conditions =
      absl::StrCat("{\"DateLessThan\":{\"AWS:EpochTime\":", policy.date_less_than, "}");
  if (policy.date_greater_than > 0) {
    if (policy.date_greater_than >= policy.date_less_than) {
      return BadPolicy("date_greater_than", "the start must come before the expiry");
    }
    absl::StrAppend(&conditions,
                    ",\"DateGreaterThan\":{\"AWS:EpochTime\":", policy.date_greater_than, "}");
  }
  if (!policy.ip_address.empty()) {
    const std::string cidr = NormalizeCidr(policy.ip_address);
    if (cidr.empty()) {
      return BadPolicy("ip_address", absl::StrCat("\"", policy.ip_address,
                                                  "\" is not an IPv4 address or CIDR range"));
    }
    absl::StrAppend(&conditions, ",\"IpAddress\":{\"AWS:SourceIp\":\"", cidr, "\"}");
  }
  conditions += "}";
  const std::string json =
      absl::StrCat("{\"Statement\":[{\"Resource\":\"", url, "\",\"Condition\":", conditions, "}]}");

  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  std::string signature;
  size_t length = 0;
  bool ok = ctx != nullptr &&
            EVP_DigestSignInit(ctx, nullptr, EVP_sha1(), nullptr, key_->pkey) == 1 &&
            EVP_DigestSign(ctx, nullptr, &length,
                           reinterpret_cast<const unsigned char*>(json.data()), json.size()) == 1;
  if (ok) {
    signature.resize(length);
    ok = EVP_DigestSign(ctx, reinterpret_cast<unsigned char*>(signature.data()), &length,
                        reinterpret_cast<const unsigned char*>(json.data()), json.size()) == 1;
    signature.resize(length);
  }
  EVP_MD_CTX_free(ctx);
  if (!ok) {
    return MakeError(absl::StatusCode::kInternal, "CLOUDFRONT_SIGNING_FAILED",
                     "OpenSSL could not sign the CloudFront policy");
  }
  // The parameters in the order the AWS SDKs write them.
  return absl::StrCat(url, absl::StrContains(url, "?") ? "&" : "?",
                      custom ? absl::StrCat("Policy=", CloudFrontBase64(json))
                             : absl::StrCat("Expires=", policy.date_less_than),
                      "&Key-Pair-Id=", key_pair_id_, "&Signature=", CloudFrontBase64(signature));
}

}  // namespace modeldist::origin
