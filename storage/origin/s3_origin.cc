#include "storage/origin/s3_origin.h"

#include <openssl/evp.h>

#include <algorithm>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/strip.h"
#include "common/digest.h"
#include "common/file_util.h"
#include "common/http/read_ahead_body.h"
#include "common/status.h"
#include "storage/origin/ranged_get.h"

namespace modeldist::origin {
namespace {

// The XML of S3's answers is small and flat; these read the few elements we need without a
// parser dependency.

// The text of every <tag>...</tag> in `xml`, entities decoded.
std::vector<std::string> XmlAll(absl::string_view xml, absl::string_view tag) {
  std::vector<std::string> out;
  const std::string open = absl::StrCat("<", tag, ">");
  const std::string close = absl::StrCat("</", tag, ">");
  size_t at = 0;
  while ((at = xml.find(open, at)) != absl::string_view::npos) {
    const size_t start = at + open.size();
    const size_t end = xml.find(close, start);
    if (end == absl::string_view::npos) break;
    out.push_back(absl::StrReplaceAll(xml.substr(start, end - start), {{"&quot;", "\""},
                                                                       {"&apos;", "'"},
                                                                       {"&lt;", "<"},
                                                                       {"&gt;", ">"},
                                                                       {"&#34;", "\""},
                                                                       {"&amp;", "&"}}));
    at = end + close.size();
  }
  return out;
}

std::string XmlFirst(absl::string_view xml, absl::string_view tag) {
  std::vector<std::string> all = XmlAll(xml, tag);
  return all.empty() ? "" : all.front();
}

std::string XmlEscape(absl::string_view text) {
  return absl::StrReplaceAll(text,
                             {{"&", "&amp;"}, {"<", "&lt;"}, {">", "&gt;"}, {"\"", "&quot;"}});
}

// MD5 of bytes as they pass: what an S3-compatible store reports as a part's ETag.
class Md5Stream {
 public:
  Md5Stream() { Reset(); }
  void Reset() { EVP_DigestInit_ex(ctx_.get(), EVP_md5(), nullptr); }
  void Update(const char* data, size_t size) { EVP_DigestUpdate(ctx_.get(), data, size); }
  std::string Hex() {
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int md_size = 0;
    EVP_DigestFinal_ex(ctx_.get(), md, &md_size);
    return HexEncode(absl::string_view(reinterpret_cast<const char*>(md), md_size));
  }

 private:
  std::unique_ptr<EVP_MD_CTX, void (*)(EVP_MD_CTX*)> ctx_{EVP_MD_CTX_new(), EVP_MD_CTX_free};
};

// hex MD5 of `size` bytes of `source` at `offset`: S3's ETag of a part, to check a part found
// on resume is the one we would send.
absl::StatusOr<std::string> Md5Hex(const http::BodyReader& source, int64_t offset, int64_t size) {
  Md5Stream md5;
  std::string buffer(1 << 20, '\0');
  for (int64_t done = 0; done < size;) {
    const size_t want = static_cast<size_t>(std::min<int64_t>(buffer.size(), size - done));
    MD_ASSIGN_OR_RETURN(size_t got, source(offset + done, buffer.data(), want));
    if (got == 0 || got > want) {
      return MakeError(absl::StatusCode::kFailedPrecondition, "ORIGIN_SOURCE_SHORT",
                       "the file to upload is shorter than its size");
    }
    md5.Update(buffer.data(), got);
    done += static_cast<int64_t>(got);
  }
  return md5.Hex();
}

// Whether `etag` is an MD5 in hex, as S3, R2 and Swift give for a part (not with SSE-KMS).
bool IsMd5Etag(absl::string_view etag) {
  return etag.size() == 32 && std::all_of(etag.begin(), etag.end(), [](char c) {
           return absl::ascii_isdigit(c) || (c >= 'a' && c <= 'f');
         });
}

}  // namespace

// One S3 request before signing.
struct S3Origin::Call {
  std::string method = "GET";
  std::string key;  // empty: the bucket itself
  SigV4Params query;
  SigV4Params headers;  // signed and sent
  std::string body;
  http::BodyReader body_reader;
  int64_t body_length = 0;
  std::string payload_hash = std::string(kUnsignedPayload);
  const std::atomic<bool>* cancel = nullptr;
};

struct S3Origin::Part {
  int number = 0;
  std::string etag;  // unquoted
  int64_t size = 0;
};

absl::StatusOr<std::unique_ptr<S3Origin>> S3Origin::Create(S3OriginOptions options) {
  absl::string_view rest = options.endpoint;
  if (!absl::ConsumePrefix(&rest, "https://") && !absl::ConsumePrefix(&rest, "http://")) {
    return InvalidArgument("endpoint", "INVALID_ORIGINS_CONFIG",
                           "an S3 endpoint starts with https:// or http://");
  }
  absl::ConsumeSuffix(&rest, "/");
  if (rest.empty() || absl::StrContains(rest, "/") || absl::StrContains(rest, "@")) {
    return InvalidArgument("endpoint", "INVALID_ORIGINS_CONFIG",
                           "an S3 endpoint is scheme://host[:port] with no path or user");
  }
  if (options.bucket.empty() || absl::StrContains(options.bucket, "/")) {
    return InvalidArgument("bucket", "INVALID_ORIGINS_CONFIG", "bucket must be one path segment");
  }
  if (options.part_size < (int64_t{5} << 20)) {
    return InvalidArgument("part_size", "INVALID_ORIGINS_CONFIG", "S3 parts are at least 5 MiB");
  }
  std::string host(rest);
  if (absl::EndsWith(options.endpoint, "/")) options.endpoint.pop_back();
  return std::unique_ptr<S3Origin>(new S3Origin(std::move(options), std::move(host)));
}

S3Origin::S3Origin(S3OriginOptions options, std::string host)
    : options_(std::move(options)), host_(std::move(host)) {}

absl::StatusOr<http::HttpResponse> S3Origin::Send(const Call& call, const http::BodySink& sink,
                                                  const http::HeadCheck& on_head) {
  SigV4Request sign;
  sign.method = call.method;
  sign.host = host_;
  sign.path = call.key.empty() ? absl::StrCat("/", options_.bucket)
                               : absl::StrCat("/", options_.bucket, "/", call.key);
  sign.query = call.query;
  sign.headers = call.headers;
  sign.payload_hash = call.payload_hash;

  http::HttpRequest request;
  request.method = call.method;
  request.url = absl::StrCat(options_.endpoint, UriEncode(sign.path, true));
  if (!call.query.empty()) {
    std::vector<std::string> pairs;
    for (const auto& [name, value] : call.query) {
      pairs.push_back(absl::StrCat(UriEncode(name, false), "=", UriEncode(value, false)));
    }
    absl::StrAppend(&request.url, "?", absl::StrJoin(pairs, "&"));
  }
  request.ca_file = options_.ca_file;
  request.low_speed_time = options_.stall_timeout;
  request.cancel = call.cancel;
  request.body = call.body;
  request.body_reader = call.body_reader;
  request.body_length = call.body_length;
  request.headers = call.headers;
  // Host is signed as written here; curl would otherwise choose its own spelling.
  request.headers.emplace_back("Host", host_);
  for (auto& header :
       SignHeaders(sign, options_.credentials, {options_.region, "s3"}, options_.now())) {
    request.headers.push_back(std::move(header));
  }
  const std::string where =
      absl::StrCat(options_.name, ": ", call.method, " ", http::RedactUrl(request.url));
  if (options_.fault) MD_RETURN_IF_ERROR(options_.fault(request));
  MD_ASSIGN_OR_RETURN(http::HttpResponse response, http::Perform(request, sink, on_head));
  if (!response.ok()) return http::HttpError(response, where);
  return response;
}

absl::StatusOr<http::HttpResponse> S3Origin::SendWithRetries(const Call& call, std::string* body) {
  return RetryCall(options_.retry, [&] {
    if (body != nullptr) body->clear();
    return Send(call, [body](absl::string_view piece) {
      if (body != nullptr) body->append(piece.data(), piece.size());
      return absl::OkStatus();
    });
  });
}

absl::Status S3Origin::Put(const std::string& key, const http::BodyReader& source, int64_t size,
                           const std::string& sha256_hex, const PutProgress& progress) {
  if (size <= options_.part_size) {
    MD_RETURN_IF_ERROR(PutSingle(key, source, size, sha256_hex));
    if (progress) progress(size, size);
    return absl::OkStatus();
  }
  return PutMultipart(key, source, size, progress);
}

absl::Status S3Origin::PutSingle(const std::string& key, const http::BodyReader& source,
                                 int64_t size, const std::string& sha256_hex) {
  Call call;
  call.method = "PUT";
  call.key = key;
  // The digest as the payload hash: the store checks the bytes it receives against it.
  call.payload_hash = sha256_hex;
  if (options_.checksum_sha256) {
    call.headers.emplace_back("x-amz-checksum-sha256", HexToBase64(sha256_hex));
  }
  return SendBody(std::move(call), source, 0, size, /*check_part_md5=*/false).status();
}

absl::StatusOr<std::string> S3Origin::PutPart(const std::string& key, const std::string& upload_id,
                                              int number, const http::BodyReader& source,
                                              int64_t offset, int64_t length) {
  Call call;
  call.method = "PUT";
  call.key = key;
  call.query = {{"partNumber", absl::StrCat(number)}, {"uploadId", upload_id}};
  // Parts go without a signed payload hash (that would read each part twice), so over plain
  // HTTP bytes damaged on the way would be stored: there the MD5 of what was sent must be the
  // part's ETag. Over HTTPS, TLS authenticates every byte on the way, and the MD5 (about
  // 1.4 s of CPU per GiB, measured by bench/origins_bench) is not spent.
  const bool plain_http = absl::StartsWith(options_.endpoint, "http://");
  MD_ASSIGN_OR_RETURN(http::HttpResponse response,
                      SendBody(std::move(call), source, offset, length, plain_http));
  return EtagValue(response.Header("etag"));
}

absl::StatusOr<http::HttpResponse> S3Origin::SendBody(Call call, const http::BodyReader& source,
                                                      int64_t offset, int64_t length,
                                                      bool check_part_md5) {
  call.body_length = length;
  return RetryCall(options_.retry, [&]() -> absl::StatusOr<http::HttpResponse> {
    // Each try reads the body again from its start, ahead of curl on a thread of its own, so
    // the source's work (the replicator checks every chunk) and the MD5 overlap the sending.
    Md5Stream md5;
    std::function<void(absl::string_view)> on_block;
    if (check_part_md5) {
      on_block = [&md5](absl::string_view block) { md5.Update(block.data(), block.size()); };
    }
    http::ReadAheadBody body(
        [&source, offset](int64_t at, char* buf, size_t n) { return source(offset + at, buf, n); },
        length, std::move(on_block));
    call.body_reader = body.Reader();
    MD_ASSIGN_OR_RETURN(http::HttpResponse response, Send(call));
    if (!check_part_md5) return response;
    // The store computed the part's ETag from what it received; a mismatch is retried like
    // an outage (the store keeps the last copy of a part number).
    const std::string etag = EtagValue(response.Header("etag"));
    const std::string sent = md5.Hex();
    if (IsMd5Etag(etag) && etag != sent) {
      return MakeError(absl::StatusCode::kUnavailable, "ORIGIN_BAD_ANSWER",
                       absl::StrCat(options_.name, " stored a part with MD5 ", etag,
                                    ", but the bytes sent have MD5 ", sent,
                                    ": damaged on the way; sending it again"));
    }
    return response;
  });
}

absl::StatusOr<std::vector<S3Origin::Part>> S3Origin::ListParts(const std::string& key,
                                                                const std::string& upload_id) {
  std::vector<Part> parts;
  std::string marker;
  while (true) {
    Call call;
    call.key = key;
    call.query = {{"uploadId", upload_id}};
    if (!marker.empty()) call.query.emplace_back("part-number-marker", marker);
    std::string body;
    MD_RETURN_IF_ERROR(SendWithRetries(call, &body).status());
    for (const std::string& xml : XmlAll(body, "Part")) {
      Part part;
      if (!absl::SimpleAtoi(XmlFirst(xml, "PartNumber"), &part.number) ||
          !absl::SimpleAtoi(XmlFirst(xml, "Size"), &part.size)) {
        continue;  // unreadable: treated as missing, so it is sent again
      }
      part.etag = EtagValue(XmlFirst(xml, "ETag"));
      parts.push_back(std::move(part));
    }
    marker = XmlFirst(body, "NextPartNumberMarker");
    if (XmlFirst(body, "IsTruncated") != "true" || marker.empty()) return parts;
  }
}

absl::Status S3Origin::PutMultipart(const std::string& key, const http::BodyReader& source,
                                    int64_t size, const PutProgress& progress) {
  // An upload of this key left by an interrupted Put is resumed; keys are content-addressed,
  // and each kept part is checked by size and MD5 anyway.
  std::string upload_id;
  MD_ASSIGN_OR_RETURN(std::vector<PendingUpload> pending, PendingUploads(key));
  for (const PendingUpload& upload : pending) {
    if (upload.key == key) upload_id = upload.upload_id;
  }
  std::vector<Part> existing;
  if (upload_id.empty()) {
    Call create;
    create.method = "POST";
    create.key = key;
    create.query = {{"uploads", ""}};
    create.payload_hash = std::string(kEmptySha256);
    std::string body;
    MD_RETURN_IF_ERROR(SendWithRetries(create, &body).status());
    upload_id = XmlFirst(body, "UploadId");
    if (upload_id.empty()) {
      return MakeError(absl::StatusCode::kUnavailable, "ORIGIN_BAD_ANSWER",
                       absl::StrCat(options_.name, ": CreateMultipartUpload sent no UploadId"));
    }
  } else {
    MD_ASSIGN_OR_RETURN(existing, ListParts(key, upload_id));
  }

  const int64_t count = (size + options_.part_size - 1) / options_.part_size;
  std::vector<std::string> etags(static_cast<size_t>(count));
  int64_t done = 0;
  absl::Status failed;
  for (int64_t i = 0; i < count && failed.ok(); ++i) {
    const int64_t offset = i * options_.part_size;
    const int64_t length = std::min(options_.part_size, size - offset);
    const int number = static_cast<int>(i + 1);
    auto found = std::find_if(existing.begin(), existing.end(),
                              [number](const Part& p) { return p.number == number; });
    if (found != existing.end() && found->size == length) {
      absl::StatusOr<std::string> md5 = Md5Hex(source, offset, length);
      if (!md5.ok()) {
        failed = md5.status();
        break;
      }
      if (*md5 == found->etag) {
        etags[static_cast<size_t>(i)] = found->etag;
        done += length;
        if (progress) progress(done, size);
        continue;
      }
    }
    absl::StatusOr<std::string> etag = PutPart(key, upload_id, number, source, offset, length);
    if (!etag.ok()) {
      failed = WithContext(etag.status(), absl::StrCat("part ", number, " of ", count));
      break;
    }
    etags[static_cast<size_t>(i)] = *std::move(etag);
    done += length;
    if (progress) progress(done, size);
  }

  if (failed.ok()) {
    std::string xml = "<CompleteMultipartUpload>";
    for (size_t i = 0; i < etags.size(); ++i) {
      absl::StrAppend(&xml, "<Part><PartNumber>", i + 1, "</PartNumber><ETag>\"",
                      XmlEscape(etags[i]), "\"</ETag></Part>");
    }
    absl::StrAppend(&xml, "</CompleteMultipartUpload>");
    Call complete;
    complete.method = "POST";
    complete.key = key;
    complete.query = {{"uploadId", upload_id}};
    complete.headers = {{"Content-Type", "application/xml"}};
    complete.body = xml;
    complete.payload_hash = Sha256::HexOf(xml);
    std::string body;
    absl::StatusOr<http::HttpResponse> response = SendWithRetries(complete, &body);
    // S3 may answer 200 and still fail: the error is then in the body.
    if (response.ok() && absl::StrContains(body, "<Error>")) {
      failed =
          MakeError(absl::StatusCode::kUnavailable, "ORIGIN_BAD_ANSWER",
                    absl::StrCat(options_.name,
                                 ": CompleteMultipartUpload failed: ", XmlFirst(body, "Code")));
    } else {
      failed = response.status();
    }
  }
  if (!failed.ok() && !options_.retry.IsRetryable(failed) &&
      failed.code() != absl::StatusCode::kCancelled) {
    // Another attempt cannot fix this (denied, a bad file): drop the parts. An interruption
    // keeps them for the next Put to resume.
    (void)AbortUpload({key, upload_id});
  }
  return failed;
}

absl::StatusOr<std::vector<PendingUpload>> S3Origin::PendingUploads(const std::string& prefix) {
  std::vector<PendingUpload> uploads;
  std::string key_marker;
  std::string upload_marker;
  while (true) {
    Call call;
    call.query = {{"uploads", ""}, {"prefix", prefix}};
    if (!key_marker.empty()) call.query.emplace_back("key-marker", key_marker);
    if (!upload_marker.empty()) call.query.emplace_back("upload-id-marker", upload_marker);
    std::string body;
    MD_RETURN_IF_ERROR(SendWithRetries(call, &body).status());
    for (const std::string& xml : XmlAll(body, "Upload")) {
      uploads.push_back({XmlFirst(xml, "Key"), XmlFirst(xml, "UploadId")});
    }
    key_marker = XmlFirst(body, "NextKeyMarker");
    upload_marker = XmlFirst(body, "NextUploadIdMarker");
    if (XmlFirst(body, "IsTruncated") != "true" || key_marker.empty()) return uploads;
  }
}

absl::Status S3Origin::AbortUpload(const PendingUpload& upload) {
  Call call;
  call.method = "DELETE";
  call.key = upload.key;
  call.query = {{"uploadId", upload.upload_id}};
  call.payload_hash = std::string(kEmptySha256);
  absl::StatusOr<http::HttpResponse> response = SendWithRetries(call, nullptr);
  if (!response.ok() && response.status().code() != absl::StatusCode::kNotFound) {
    return response.status();
  }
  return absl::OkStatus();
}

absl::StatusOr<ObjectInfo> S3Origin::Head(const std::string& key) {
  Call call;
  call.method = "HEAD";
  call.key = key;
  // Without it, S3 and R2 leave the stored checksum out of the answer.
  call.headers = {{"x-amz-checksum-mode", "ENABLED"}};
  call.payload_hash = std::string(kEmptySha256);
  MD_ASSIGN_OR_RETURN(http::HttpResponse response, SendWithRetries(call, nullptr));
  ObjectInfo info;
  if (!absl::SimpleAtoi(response.Header("content-length"), &info.size)) {
    return MakeError(absl::StatusCode::kUnavailable, "ORIGIN_BAD_ANSWER",
                     absl::StrCat(options_.name, ": HEAD ", key, " sent no Content-Length"));
  }
  info.etag = EtagValue(response.Header("etag"));
  std::string digest;
  const std::string checksum = response.Header("x-amz-checksum-sha256");
  // A multipart object's checksum is of its parts' checksums ("...-N"), not of the object.
  if (!checksum.empty() && !absl::StrContains(checksum, "-") &&
      absl::Base64Unescape(checksum, &digest) && digest.size() == 32) {
    info.sha256_hex = HexEncode(digest);
  }
  return info;
}

absl::Status S3Origin::Get(const std::string& key, int64_t offset, int64_t length,
                           const ByteSink& sink, const std::atomic<bool>* cancel) {
  auto request = [&](const std::string& range, const http::BodySink& body,
                     const http::HeadCheck& on_head) {
    Call call;
    call.key = key;
    call.cancel = cancel;
    call.payload_hash = std::string(kEmptySha256);
    call.headers = {{"Range", range}};
    return Send(call, body, on_head);
  };
  return RangedGet(absl::StrCat(options_.name, ": GET ", key), offset, length, options_.retry,
                   request, sink);
}

absl::StatusOr<std::string> S3Origin::DeviceUrl(const std::string& key, int64_t expires_unix) {
  if (options_.public_read) {
    return absl::StrCat(options_.endpoint,
                        UriEncode(absl::StrCat("/", options_.bucket, "/", key), true));
  }
  const absl::Time now = options_.now();
  const int64_t seconds = expires_unix - absl::ToUnixSeconds(now);
  if (seconds < 1 || seconds > 604800) {
    return InvalidArgument("expires_unix", "URL_EXPIRY_OUT_OF_RANGE",
                           "S3 presigned URLs last 1 second to 7 days");
  }
  SigV4Request request;
  request.host = host_;
  request.path = absl::StrCat("/", options_.bucket, "/", key);
  // As the AWS SDK for JavaScript names the operation: the same URL, byte for byte.
  request.query = {{"x-id", "GetObject"}};
  return absl::StrCat(options_.endpoint, UriEncode(request.path, true), "?",
                      PresignQuery(request, options_.credentials, {options_.region, "s3"}, now,
                                   seconds, /*content_sha256_in_query=*/true));
}

absl::Status S3Origin::Delete(const std::string& key) {
  Call call;
  call.method = "DELETE";
  call.key = key;
  call.payload_hash = std::string(kEmptySha256);
  absl::StatusOr<http::HttpResponse> response = SendWithRetries(call, nullptr);
  if (!response.ok() && response.status().code() != absl::StatusCode::kNotFound) {
    return response.status();
  }
  return absl::OkStatus();
}

absl::Status S3Origin::CreateBucket() {
  Call call;
  call.method = "PUT";
  call.payload_hash = std::string(kEmptySha256);
  absl::StatusOr<http::HttpResponse> response = SendWithRetries(call, nullptr);
  if (!response.ok() && ErrorReason(response.status()) != "HTTP_UNEXPECTED_STATUS") {
    return response.status();
  }
  // 409 BucketAlreadyOwnedByYou is fine; any other 4xx is not.
  if (!response.ok() &&
      !absl::StrContains(response.status().message(), "BucketAlreadyOwnedByYou")) {
    return response.status();
  }
  return absl::OkStatus();
}

}  // namespace modeldist::origin
