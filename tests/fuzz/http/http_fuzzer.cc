// libFuzzer target for the HTTP parsing modeldist does itself. The request line and headers
// are parsed by libmicrohttpd (server) and libcurl (client) before modeldist sees them, so
// what is fuzzed here is what modeldist makes of their values, in memory:
//   0  services/http_server/byte_range.h ParseByteRange (a Range header, a body size): a part
//      lies inside the body (0 <= first <= last < size).
//   1  common/http RedactUrl: no query, fragment or user:password@ survives, and redacting
//      twice changes nothing.
//   2  common/http HttpError (the S3 XML error body's <Code>, an HTTP status): never OK, always
//      an HTTP_* reason and the status in the metadata.
//   3  common/http GetRange over a fake transfer (status, Content-Range, body in pieces, as
//      Perform hands them over): never more bytes than asked for from a 200, every byte of a
//      206 that starts where asked, delivered counted exactly, no bytes from a 206 that starts
//      elsewhere (CheckContentRangeStart) or from a 200 for a later offset.
// Input: one mode byte, then for 0 eight bytes of size and the header; 1 and 2 the text (2: two
// status bytes first); 3 an offset byte, a length byte, a status byte, a piece-size byte, then
// 2-byte length, Content-Range, body.
#include <cstdint>
#include <cstring>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "common/http/http.h"
#include "services/http_server/byte_range.h"
#include "tests/fuzz/fuzz_util.h"

namespace modeldist {
namespace {

using fuzz::Require;

void CheckByteRange(absl::string_view rest) {
  if (rest.size() < 8) return;
  uint64_t raw = 0;
  std::memcpy(&raw, rest.data(), 8);
  // Sizes up to 2^62, and small ones often (where the edge cases are).
  const int64_t size =
      (raw & 1) ? static_cast<int64_t>((raw >> 1) % 1000) : static_cast<int64_t>(raw >> 2);
  const http_server::ByteRange range = http_server::ParseByteRange(rest.substr(8), size);
  if (range.kind == http_server::ByteRange::Kind::kPart) {
    Require(range.first >= 0 && range.first <= range.last && range.last < size,
            absl::StrCat("part ", range.first, "-", range.last, " of ", size));
  }
}

void CheckRedactUrl(absl::string_view url) {
  const std::string redacted = http::RedactUrl(url);
  Require(redacted.find_first_of("?#") == std::string::npos, "query or fragment kept");
  Require(http::RedactUrl(redacted) == redacted, "redacting twice changes the URL");
  // No user:password@ before the host: an '@' may stay only in the path.
  const size_t scheme = redacted.find("://");
  const size_t host = scheme == std::string::npos ? 0 : scheme + 3;
  const size_t path = redacted.find('/', host);
  const size_t at = redacted.find('@', host);
  Require(at == std::string::npos || (path != std::string::npos && at > path),
          "userinfo kept: " + redacted);
}

void CheckHttpError(absl::string_view rest) {
  if (rest.size() < 2) return;
  http::HttpResponse response;
  response.status = static_cast<uint8_t>(rest[0]) | (static_cast<uint8_t>(rest[1]) << 8);
  response.error_body = std::string(rest.substr(2));
  const absl::Status status = http::HttpError(response, "https://s3.example.com/bucket");
  Require(!status.ok() && absl::StartsWith(ErrorReason(status), "HTTP_"), "HttpError reason");
  Require(ErrorMetadataValue(status, "http_status") == absl::StrCat(response.status),
          "HttpError metadata");
}

void CheckGetRange(absl::string_view rest) {
  if (rest.size() < 4) return;
  static constexpr long kStatuses[] = {200, 206, 206, 206, 416, 404, 500, 204, 301};
  const int64_t offset = static_cast<uint8_t>(rest[0]) % 8 == 0 ? 0 : static_cast<uint8_t>(rest[0]);
  const int64_t length = static_cast<int64_t>(static_cast<uint8_t>(rest[1])) - 1;  // -1: to end
  const long code = kStatuses[static_cast<uint8_t>(rest[2]) % std::size(kStatuses)];
  const size_t piece = 1 + static_cast<uint8_t>(rest[3]) % 64;
  const auto parts = fuzz::Split(rest.substr(4));
  const absl::string_view content_range = parts.first;
  const absl::string_view body = parts.second;

  bool head_ok = false;
  // A transfer as Perform makes it: the head's check on a 2xx, then the body in pieces until
  // the sink refuses one; a non-2xx answer is its HttpError (PlainRangeRequest).
  auto request = [&](const std::string& range, const http::BodySink& sink,
                     const http::HeadCheck& on_head) -> absl::StatusOr<http::HttpResponse> {
    Require(absl::StartsWith(range, absl::StrCat("bytes=", offset, "-")), "Range header");
    http::HttpResponse response;
    response.status = code;
    if (!content_range.empty()) response.headers.emplace_back("content-range", content_range);
    if (!response.ok()) return http::HttpError(response, "origin");
    MD_RETURN_IF_ERROR(on_head(response));
    head_ok = true;
    for (size_t at = 0; at < body.size(); at += piece) {
      MD_RETURN_IF_ERROR(sink(body.substr(at, piece)));
    }
    return response;
  };
  std::string received;
  auto sink = [&](absl::string_view bytes) {
    absl::StrAppend(&received, bytes);
    return absl::OkStatus();
  };
  int64_t delivered = -1;
  const absl::Status status = http::GetRange("origin", offset, length, request, sink, &delivered);
  Require(ErrorReason(status) != "RANGE_TAKEN", "GetRange leaked its own stop");
  Require(delivered == static_cast<int64_t>(received.size()), "delivered miscounted");
  if (!head_ok) Require(received.empty(), "bytes delivered before the head was accepted");
  if (code == 200) {
    if (offset != 0) Require(!status.ok() && received.empty(), "a 200 taken for a later offset");
    if (length >= 0) Require(delivered <= length, "more bytes than asked for");
  }
  if (code == 206 && status.ok()) {
    Require(received == body, "a 206's bytes were not all delivered");
    Require(http::CheckContentRangeStart(
                http::HttpResponse{206, {{"content-range", std::string(content_range)}}}, offset,
                "origin")
                .ok(),
            "a 206 that starts elsewhere was taken");
  }
  Require(status.ok() || !ErrorReason(status).empty(), "GetRange error without a reason");
}

void WriteSeeds(const std::string& dir) {
  using std::string_literals::operator""s;
  const std::string small_size = "\x65\x00\x00\x00\x00\x00\x00\x00"s;  // odd: 50 bytes
  fuzz::WriteSeed(dir, "0-range", std::string(1, 0) + small_size + "bytes=0-9");
  fuzz::WriteSeed(dir, "0-suffix", std::string(1, 0) + small_size + "bytes=-20");
  fuzz::WriteSeed(dir, "0-open", std::string(1, 0) + small_size + "bytes=40-");
  fuzz::WriteSeed(dir, "0-several", std::string(1, 0) + small_size + "bytes=0-1,5-9");
  fuzz::WriteSeed(dir, "1-url",
                  std::string(1, 1) + "https://user:secret@s3.example.com/b/k?X-Amz-Signature=x#f");
  fuzz::WriteSeed(dir, "2-s3-error",
                  std::string(1, 2) + "\x93\x01"s +
                      "<?xml version=\"1.0\"?><Error><Code>SignatureDoesNotMatch</Code></Error>");
  fuzz::WriteSeed(
      dir, "3-206",
      std::string(1, 3) + "\x05\x0b\x01\x03"s + fuzz::Join("bytes 5-14/100", "0123456789"));
  fuzz::WriteSeed(dir, "3-200",
                  std::string(1, 3) + "\x00\x05\x00\x02"s + fuzz::Join("", "0123456789"));
}

}  // namespace
}  // namespace modeldist

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  modeldist::fuzz::Initialize(modeldist::WriteSeeds);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace modeldist;
  if (size < 1) return 0;
  const absl::string_view rest(reinterpret_cast<const char*>(data) + 1, size - 1);
  switch (data[0] % 4) {
    case 0:
      CheckByteRange(rest);
      break;
    case 1:
      CheckRedactUrl(rest);
      break;
    case 2:
      CheckHttpError(rest);
      break;
    case 3:
      CheckGetRange(rest);
      break;
  }
  return 0;
}
