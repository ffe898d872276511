#include "storage/origin/ranged_get.h"

#include <optional>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/status.h"

namespace modeldist::origin {

absl::Status RangedGet(const std::string& where, int64_t offset, int64_t length,
                       const RetryPolicy& retry, const RangeRequest& request,
                       const ByteSink& sink) {
  Retrier retrier(retry);
  int64_t delivered = 0;
  for (;;) {
    // A retry asks only for what is still missing.
    const int64_t from = offset + delivered;
    const int64_t left = length < 0 ? -1 : length - delivered;
    if (left == 0) return absl::OkStatus();
    const std::string range = left < 0 ? absl::StrCat("bytes=", from, "-")
                                       : absl::StrCat("bytes=", from, "-", from + left - 1);
    auto on_head = [&](const http::HttpResponse& response) -> absl::Status {
      if (response.status == 206) return http::CheckContentRangeStart(response, from, where);
      if (from != 0) {
        return MakeError(
            absl::StatusCode::kFailedPrecondition, "RANGE_IGNORED",
            absl::StrCat(where, " ignored the Range header (HTTP ", response.status, ")"));
      }
      return absl::OkStatus();
    };
    bool enough = false;
    absl::Status sink_error;
    auto body = [&](absl::string_view piece) -> absl::Status {
      if (length >= 0 && delivered + static_cast<int64_t>(piece.size()) >= length) {
        piece = piece.substr(0, static_cast<size_t>(length - delivered));
        enough = true;  // a 200 for byte 0 carries the whole object: stop at `length`
      }
      delivered += static_cast<int64_t>(piece.size());
      if (!piece.empty()) sink_error = sink(piece);
      MD_RETURN_IF_ERROR(sink_error);
      return enough ? MakeError(absl::StatusCode::kAborted, "ORIGIN_RANGE_TAKEN", "enough bytes")
                    : absl::OkStatus();
    };
    const int64_t before = delivered;
    absl::StatusOr<http::HttpResponse> response = request(range, body, on_head);
    if (!sink_error.ok()) return sink_error;  // the caller's own error is final
    if (enough) return absl::OkStatus();
    if (response.ok()) {
      // A range past the end is 416, but one that starts inside and ends past the end gets the
      // bytes up to the end: fewer than asked for, which the caller must not take as all.
      if (length >= 0 && delivered < length) {
        return MakeError(absl::StatusCode::kOutOfRange, "ORIGIN_OBJECT_SHORT",
                         absl::StrCat(where, " ended at byte ", offset + delivered, ", before ",
                                      offset + length));
      }
      return absl::OkStatus();
    }
    if (delivered > before) retrier.Progressed();
    std::optional<absl::Duration> wait = retrier.NextWait(response.status());
    if (!wait.has_value()) return response.status();
    absl::SleepFor(*wait);
  }
}

}  // namespace modeldist::origin
