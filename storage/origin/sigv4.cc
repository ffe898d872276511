#include "storage/origin/sigv4.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <algorithm>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "common/digest.h"

namespace modeldist::origin {
namespace {

constexpr absl::string_view kAlgorithm = "AWS4-HMAC-SHA256";

std::string Hmac(absl::string_view key, absl::string_view data) {
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int size = 0;
  HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()),
       reinterpret_cast<const unsigned char*>(data.data()), data.size(), out, &size);
  return std::string(reinterpret_cast<const char*>(out), size);
}

std::string AmzDate(absl::Time now) {
  return absl::FormatTime("%Y%m%dT%H%M%SZ", now, absl::UTCTimeZone());
}

std::string CredentialScope(absl::Time now, const SigV4Scope& scope) {
  return absl::StrCat(absl::FormatTime("%Y%m%d", now, absl::UTCTimeZone()), "/", scope.region, "/",
                      scope.service, "/aws4_request");
}

// Sorted by encoded name, then value, joined with '&' (the canonical query string).
std::string CanonicalQuery(const SigV4Params& query) {
  std::vector<std::pair<std::string, std::string>> encoded;
  encoded.reserve(query.size());
  for (const auto& [name, value] : query) {
    encoded.emplace_back(UriEncode(name, false), UriEncode(value, false));
  }
  std::sort(encoded.begin(), encoded.end());
  return absl::StrJoin(encoded, "&", absl::PairFormatter("="));
}

struct Canonical {
  std::string request;
  std::string signed_headers;
};

// The canonical request over `headers` (lower-cased names, trimmed values, sorted).
Canonical CanonicalRequest(const SigV4Request& request, const SigV4Params& query,
                           const SigV4Params& headers, absl::string_view payload_hash) {
  std::vector<std::pair<std::string, std::string>> sorted;
  sorted.reserve(headers.size());
  for (const auto& [name, value] : headers) {
    // Runs of inner spaces collapse to one (the spec's "Trimall").
    std::string trimmed(absl::StripAsciiWhitespace(value));
    absl::RemoveExtraAsciiWhitespace(&trimmed);
    sorted.emplace_back(absl::AsciiStrToLower(name), std::move(trimmed));
  }
  std::sort(sorted.begin(), sorted.end());
  Canonical out;
  std::string header_block;
  for (const auto& [name, value] : sorted) {
    absl::StrAppend(&header_block, name, ":", value, "\n");
    absl::StrAppend(&out.signed_headers, out.signed_headers.empty() ? "" : ";", name);
  }
  out.request =
      absl::StrCat(request.method, "\n", UriEncode(request.path, true), "\n", CanonicalQuery(query),
                   "\n", header_block, "\n", out.signed_headers, "\n", payload_hash);
  return out;
}

// hex(HMAC(signing key, string to sign)) for the canonical request.
std::string Signature(const std::string& canonical_request, const SigV4Credentials& credentials,
                      const SigV4Scope& scope, absl::Time now) {
  const std::string string_to_sign =
      absl::StrCat(kAlgorithm, "\n", AmzDate(now), "\n", CredentialScope(now, scope), "\n",
                   Sha256::HexOf(canonical_request));
  std::string key = Hmac(absl::StrCat("AWS4", credentials.secret_access_key),
                         absl::FormatTime("%Y%m%d", now, absl::UTCTimeZone()));
  key = Hmac(key, scope.region);
  key = Hmac(key, scope.service);
  key = Hmac(key, "aws4_request");
  return HexEncode(Hmac(key, string_to_sign));
}

}  // namespace

std::string UriEncode(absl::string_view in, bool keep_slash) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  out.reserve(in.size());
  for (const char ch : in) {
    const auto c = static_cast<unsigned char>(ch);
    if (absl::ascii_isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~' ||
        (keep_slash && c == '/')) {
      out.push_back(ch);
    } else {
      out.push_back('%');
      out.push_back(kHex[c >> 4]);
      out.push_back(kHex[c & 15]);
    }
  }
  return out;
}

SigV4Params SignHeaders(const SigV4Request& request, const SigV4Credentials& credentials,
                        const SigV4Scope& scope, absl::Time now) {
  SigV4Params added = {{"x-amz-date", AmzDate(now)}};
  if (request.add_content_sha256_header) {
    added.emplace_back("x-amz-content-sha256", request.payload_hash);
  }
  if (!credentials.session_token.empty()) {
    added.emplace_back("x-amz-security-token", credentials.session_token);
  }
  SigV4Params signed_headers = request.headers;
  signed_headers.emplace_back("host", request.host);
  signed_headers.insert(signed_headers.end(), added.begin(), added.end());
  const Canonical canonical =
      CanonicalRequest(request, request.query, signed_headers, request.payload_hash);
  added.emplace_back(
      "Authorization",
      absl::StrCat(kAlgorithm, " Credential=", credentials.access_key_id, "/",
                   CredentialScope(now, scope), ", SignedHeaders=", canonical.signed_headers,
                   ", Signature=", Signature(canonical.request, credentials, scope, now)));
  return added;
}

std::string PresignQuery(const SigV4Request& request, const SigV4Credentials& credentials,
                         const SigV4Scope& scope, absl::Time now, int64_t expires_seconds,
                         bool content_sha256_in_query) {
  SigV4Params query = request.query;
  query.emplace_back("X-Amz-Algorithm", std::string(kAlgorithm));
  if (content_sha256_in_query) {
    query.emplace_back("X-Amz-Content-Sha256", std::string(kUnsignedPayload));
  }
  query.emplace_back("X-Amz-Credential",
                     absl::StrCat(credentials.access_key_id, "/", CredentialScope(now, scope)));
  query.emplace_back("X-Amz-Date", AmzDate(now));
  query.emplace_back("X-Amz-Expires",
                     absl::StrCat(std::clamp<int64_t>(expires_seconds, 1, 604800)));
  if (!credentials.session_token.empty()) {
    query.emplace_back("X-Amz-Security-Token", credentials.session_token);
  }
  query.emplace_back("X-Amz-SignedHeaders", "host");
  const Canonical canonical =
      CanonicalRequest(request, query, {{"host", request.host}}, kUnsignedPayload);
  query.emplace_back("X-Amz-Signature", Signature(canonical.request, credentials, scope, now));
  return CanonicalQuery(query);
}

std::string HexToBase64(absl::string_view hex) {
  return absl::Base64Escape(absl::HexStringToBytes(hex));
}

}  // namespace modeldist::origin
