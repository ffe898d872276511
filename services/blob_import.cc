#include "services/blob_import.h"

#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/digest.h"
#include "common/http/http.h"
#include "common/retry_policy.h"
#include "common/status.h"
#include "storage/origin/origin_config.h"
#include "storage/origin/ranged_get.h"

namespace modeldist::services {

absl::Status BlockBuffer::Add(absl::string_view piece) {
  if (held_.capacity() < block_) held_.reserve(block_);
  held_.append(piece.data(), piece.size());
  if (held_.size() < block_) return absl::OkStatus();
  return Flush();
}

absl::Status BlockBuffer::Flush() {
  if (held_.empty()) return absl::OkStatus();
  absl::Status written = write_(&held_);
  held_.clear();
  return written;
}

absl::Status FetchIntoStore(storage::BlobStore* blobs, const std::string& hex, int64_t size,
                            const SourceGet& get,
                            const std::function<absl::Status(int64_t held)>& on_bytes,
                            const std::function<absl::Status(const absl::Status&)>& source_error) {
  if (blobs->Contains(hex)) return absl::OkStatus();
  MD_ASSIGN_OR_RETURN(int64_t offset, blobs->UploadOffset(hex, size));
  if (on_bytes) MD_RETURN_IF_ERROR(on_bytes(offset));
  absl::Status sink_error;  // the store's or on_bytes's: `get` passes it on as it is
  BlockBuffer buffer(kFetchBlockBytes, [&](std::string* block) -> absl::Status {
    sink_error = blobs->Append(hex, size, offset, *block);
    if (!sink_error.ok()) return sink_error;
    offset += static_cast<int64_t>(block->size());
    if (on_bytes) sink_error = on_bytes(offset);
    return sink_error;
  });
  if (offset < size) {
    absl::Status got =
        get(offset, size - offset, [&](absl::string_view piece) { return buffer.Add(piece); });
    const bool failed_at_source = !got.ok() && sink_error.ok();
    // What arrived before a failure is kept for the next attempt.
    const absl::Status kept = buffer.Flush();
    if (failed_at_source && source_error) return source_error(got);
    MD_RETURN_IF_ERROR(got);
    MD_RETURN_IF_ERROR(kept);
  }
  // DATA_LOSS when the bytes are not the digest's: nothing is stored, the upload is dropped.
  return blobs->Finish(hex, size);
}

absl::StatusOr<SourceGet> ImportGet(const origin::OriginSet* origins, const ImportSource& source,
                                    const std::atomic<bool>* cancel) {
  const bool from_origin = !source.origin.empty() || !source.key.empty();
  if (from_origin == !source.url.empty()) {
    return InvalidArgument("url", "INVALID_IMPORT_SOURCE",
                           "name the bytes either by `origin` and `key` or by `url`, not both "
                           "and not neither");
  }
  if (!from_origin) {
    if (!absl::StartsWith(source.url, "https://") && !absl::StartsWith(source.url, "http://")) {
      return InvalidArgument("url", "INVALID_IMPORT_SOURCE",
                             absl::StrCat("`url` must be an http:// or https:// URL, not ",
                                          http::RedactUrl(source.url)));
    }
    http::HttpRequest request;
    request.url = source.url;
    request.cancel = cancel;
    const std::string where = http::RedactUrl(source.url);
    return SourceGet(
        [request, where](int64_t offset, int64_t length, const origin::ByteSink& sink) {
          return origin::RangedGet(where, offset, length, RetryPolicy{},
                                   http::PlainRangeRequest(request, where), sink);
        });
  }
  MD_RETURN_IF_ERROR(origin::ValidateOriginName("origin", source.origin));
  if (source.key.empty()) {
    return InvalidArgument("key", "INVALID_IMPORT_SOURCE", "`key` names the object to import");
  }
  const origin::ConfiguredOrigin* configured =
      origins == nullptr ? nullptr : origins->Find(source.origin);
  if (configured == nullptr) {
    return MakeError(absl::StatusCode::kNotFound, "ORIGIN_NOT_FOUND",
                     absl::StrCat("the server has no origin named ", source.origin,
                                  " (see modeldistctl origins list)"),
                     {{"field", "origin"}});
  }
  origin::Origin* from = configured->origin.get();
  return SourceGet([from, key = source.key, cancel](int64_t offset, int64_t length,
                                                    const origin::ByteSink& sink) {
    return from->Get(key, offset, length, sink, cancel);
  });
}

absl::Status ImportArtifact(const origin::OriginSet* origins, storage::BlobStore* blobs,
                            const v1::ImportArtifactRequest& request,
                            const std::function<bool(const v1::ImportArtifactProgress&)>& write,
                            const std::function<bool()>& cancelled) {
  MD_ASSIGN_OR_RETURN(std::string hex, ParseDigest("digest", request.digest()));
  MD_RETURN_IF_ERROR(storage::ValidateDeclaredSize(request.size_bytes()));
  std::atomic<bool> cancel{false};
  MD_ASSIGN_OR_RETURN(
      SourceGet get, ImportGet(origins, {request.origin(), request.key(), request.url()}, &cancel));
  const std::string source = request.url().empty()
                                 ? absl::StrCat("origin ", request.origin(), " key ", request.key())
                                 : http::RedactUrl(request.url());
  // The source's errors say so; the store's (DATA_LOSS, SIZE_MISMATCH) keep their own reason.
  auto source_error = [&source](const absl::Status& got) -> absl::Status {
    if (absl::IsCancelled(got)) return got;  // the client went away (see on_bytes)
    return MakeError(got.code(), "IMPORT_SOURCE_FAILED",
                     absl::StrCat("fetching ", source, ": ", got.message(),
                                  absl::IsUnavailable(got) ? "; the bytes fetched so far are "
                                                             "kept: run the import again"
                                                           : ""));
  };
  v1::ImportArtifactProgress progress;
  progress.set_size_bytes(request.size_bytes());
  absl::Time last_sent = absl::InfinitePast();
  auto on_bytes = [&](int64_t held) -> absl::Status {
    if (cancelled()) {
      cancel = true;
      return MakeError(absl::StatusCode::kCancelled, "IMPORT_CANCELLED",
                       "the client cancelled the import; the bytes fetched so far are kept");
    }
    progress.set_bytes_done(held);
    // About one message a second: a client draws a progress line, not a log.
    if (absl::Now() - last_sent >= absl::Seconds(1)) {
      last_sent = absl::Now();
      if (!write(progress)) cancel = true;
    }
    return absl::OkStatus();
  };
  MD_RETURN_IF_ERROR(FetchIntoStore(blobs, hex, request.size_bytes(), get, on_bytes, source_error));
  progress.set_bytes_done(request.size_bytes());
  progress.set_done(true);
  write(progress);
  return absl::OkStatus();
}

}  // namespace modeldist::services
