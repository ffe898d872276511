#include "storage/origin/ranged_get.h"

#include <optional>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/status.h"

namespace modeldist::origin {

absl::Status RangedGet(const std::string& where, int64_t offset, int64_t length,
                       const RetryPolicy& retry, const http::RangeRequest& request,
                       const ByteSink& sink) {
  Retrier retrier(retry);
  int64_t delivered = 0;
  for (;;) {
    // A retry asks only for what is still missing.
    const int64_t left = length < 0 ? -1 : length - delivered;
    if (left == 0) return absl::OkStatus();
    absl::Status sink_error;
    auto body = [&](absl::string_view piece) {
      sink_error = sink(piece);
      return sink_error;
    };
    int64_t got = 0;
    const absl::Status status =
        http::GetRange(where, offset + delivered, left, request, body, &got);
    delivered += got;
    if (!sink_error.ok()) return sink_error;  // the caller's own error is final
    if (status.ok()) {
      // A range past the end is 416, but one that starts inside and ends past the end gets the
      // bytes up to the end: fewer than asked for, which the caller must not take as all.
      if (length >= 0 && delivered < length) {
        return MakeError(absl::StatusCode::kOutOfRange, "ORIGIN_OBJECT_SHORT",
                         absl::StrCat(where, " ended at byte ", offset + delivered, ", before ",
                                      offset + length));
      }
      return absl::OkStatus();
    }
    if (got > 0) retrier.Progressed();
    std::optional<absl::Duration> wait = retrier.NextWait(status);
    if (!wait.has_value()) return status;
    absl::SleepFor(*wait);
  }
}

}  // namespace modeldist::origin
