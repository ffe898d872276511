#include "services/blob_endpoint.h"

#include <algorithm>
#include <memory>
#include <optional>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/notification.h"
#include "common/digest.h"
#include "common/status.h"
#include "services/http_server/byte_range.h"
#include "services/http_server/http_error.h"
#include "storage/served_bytes_check.h"

namespace modeldist::services {
namespace {

using http_server::ByteRange;
using http_server::Request;
using http_server::Response;

// Whether an If-None-Match list names `etag` (weak comparison, RFC 9110 13.1.2: a W/ prefix
// does not matter), or is "*".
bool NoneMatchHits(const std::string& header, const std::string& etag) {
  for (absl::string_view tag : absl::StrSplit(header, ',')) {
    tag = absl::StripAsciiWhitespace(tag);
    if (tag == "*") return true;
    if (absl::StartsWith(tag, "W/")) tag.remove_prefix(2);
    if (tag == etag) return true;
  }
  return false;
}

// A stored blob's bytes [begin, end), checked as they go.
struct StoredBody {
  explicit StoredBody(storage::BlobReader reader) : blob(std::move(reader)), check(&blob) {}
  storage::BlobReader blob;
  storage::ServedBytesCheck check;
  int64_t begin = 0;
  int64_t end = 0;
};

http_server::BodyReader StoredReader(storage::BlobReader blob, int64_t begin, int64_t end,
                                     BlobHealth* health, metrics::Counter* served) {
  auto body = std::make_shared<StoredBody>(std::move(blob));
  body->begin = begin;
  body->end = end;
  return [body, health, served](int64_t pos, char* buf, size_t max) -> absl::StatusOr<size_t> {
    const int64_t offset = body->begin + pos;
    const int64_t stop = body->check.MessageEnd(
        offset, std::min<int64_t>(static_cast<int64_t>(max), body->end - offset));
    const size_t want = static_cast<size_t>(stop - offset);
    const absl::Status checked = body->check.FillAndCheck(offset, buf, want, 0, body->end);
    if (!checked.ok()) {
      if (health != nullptr) health->Report(body->blob.record().hex(), checked);
      return checked;
    }
    if (served != nullptr) served->Add(static_cast<int64_t>(want));
    return want;
  };
}

// Bytes [begin, end) of a blob being read through, each sent once its chunk is verified.
http_server::BodyReader FetchedReader(std::shared_ptr<BlobFetch> fetch, int64_t begin, int64_t end,
                                      metrics::Counter* served) {
  return [fetch, begin, end, served](int64_t pos, char* buf, size_t max) -> absl::StatusOr<size_t> {
    const int64_t offset = begin + pos;
    const int64_t want_end = std::min(end, offset + static_cast<int64_t>(max));
    auto ready = std::make_shared<absl::Notification>();
    fetch->WhenReady(want_end, [ready] { ready->Notify(); });
    ready->WaitForNotification();
    const BlobFetch::Progress progress = fetch->progress();
    const int64_t stop = std::min(want_end, progress.verified);
    if (stop <= offset) return progress.error;
    absl::StatusOr<size_t> got = fetch->ReadAt(offset, buf, static_cast<size_t>(stop - offset));
    if (got.ok() && served != nullptr) served->Add(static_cast<int64_t>(*got));
    return got;
  };
}

}  // namespace

Response BlobEndpoint::Serve(const Request& request, const std::string& digest) const {
  if (request.method != "GET" && request.method != "HEAD") {
    return http_server::MethodNotAllowed(request.method, request.path, "GET, HEAD");
  }
  const absl::StatusOr<std::string> hex = ParseDigest("digest", digest);
  if (!hex.ok()) return http_server::ErrorResponse(hex.status());

  absl::StatusOr<storage::BlobReader> blob = blobs_->OpenBlob(*hex);
  std::shared_ptr<BlobFetch> fetch;
  if (storage::IsNotStored(blob.status()) && read_through_ != nullptr) {
    absl::StatusOr<std::shared_ptr<BlobFetch>> started = read_through_->Fetch(*hex);
    if (!started.ok()) return http_server::ErrorResponse(started.status());
    fetch = *std::move(started);
    if (fetch == nullptr) blob = blobs_->OpenBlob(*hex);  // stored meanwhile
  }
  if (fetch == nullptr && !blob.ok()) {
    if (health_ != nullptr) health_->Report(*hex, blob.status());
    return http_server::ErrorResponse(blob.status());
  }
  const int64_t size = fetch != nullptr ? fetch->size() : blob->size();
  if (metrics_ != nullptr) metrics_->BlobRead(read_through_ != nullptr, fetch != nullptr);

  const std::string etag = absl::StrCat("\"sha256:", *hex, "\"");
  Response response;
  response.Header("ETag", etag);
  response.Header("Cache-Control", "public, max-age=31536000, immutable");
  if (request.HasHeader("if-none-match") && NoneMatchHits(request.Header("if-none-match"), etag)) {
    response.status = 304;
    return response;
  }
  response.Header("Accept-Ranges", "bytes");
  response.Header("Content-Type", "application/octet-stream");
  response.Header("Repr-Digest",
                  absl::StrCat("sha-256=:", absl::Base64Escape(absl::HexStringToBytes(*hex)), ":"));

  ByteRange range;  // the whole blob
  // Only GET has ranges (RFC 9110 14.2); If-Range holds them to this very ETag (a date or a weak
  // tag never matches a strong comparison).
  if (request.method == "GET" && request.HasHeader("range") &&
      (!request.HasHeader("if-range") ||
       absl::StripAsciiWhitespace(request.Header("if-range")) == etag)) {
    range = http_server::ParseByteRange(request.Header("range"), size);
  }
  int64_t begin = 0;
  int64_t end = size;
  switch (range.kind) {
    case ByteRange::Kind::kUnsatisfiable: {
      Response refused = http_server::ErrorResponse(
          MakeError(absl::StatusCode::kOutOfRange, "RANGE_NOT_SATISFIABLE",
                    absl::StrCat("the range \"", request.Header("range").substr(0, 64),
                                 "\" starts past the end of ", digest, " (", size, " bytes)")));
      refused.status = 416;
      refused.Header("Content-Range", absl::StrCat("bytes */", size));
      return refused;
    }
    case ByteRange::Kind::kPart:
      response.status = 206;
      response.Header("Content-Range",
                      absl::StrCat("bytes ", range.first, "-", range.last, "/", size));
      begin = range.first;
      end = range.last + 1;
      break;
    case ByteRange::Kind::kWhole:
      break;
  }
  response.body_size = end - begin;
  if (response.body_size == 0) return response;
  metrics::Counter* served =
      metrics_ == nullptr ? nullptr : metrics_->served(/*http=*/true, fetch != nullptr);
  // Bytes this process verified, still in the page cache, go with sendfile (no copy).
  if (fetch == nullptr && request.method == "GET") {
    if (std::optional<ScopedFd> file = storage::TrustedSendFd(*blob, begin, end - begin)) {
      response.file = *std::move(file);
      response.file_offset = begin;
      if (served != nullptr) served->Add(response.body_size);  // handed to the connection
      return response;
    }
  }
  // Also for HEAD, which gets the headers of a GET (Content-Length from body_size) and whose
  // reader is never called.
  response.reader = fetch != nullptr ? FetchedReader(std::move(fetch), begin, end, served)
                                     : StoredReader(*std::move(blob), begin, end, health_, served);
  return response;
}

}  // namespace modeldist::services
