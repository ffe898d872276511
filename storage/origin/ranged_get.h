// File: ranged_get.h
//
// The one ranged download loop of the origins (S3, HTTP/CDN, Supabase): asks for bytes
// [offset, offset + length) with a Range header, streams them to the caller's sink, and after
// a failure that may pass asks again for only what is still missing, under the retry policy
// (an attempt that delivered bytes counts as progress). A 206 must start where it was asked to
// (Content-Range); a 200 is accepted only for a range from byte 0, and cut at `length`.
#ifndef MODELDIST_STORAGE_ORIGIN_RANGED_GET_H_
#define MODELDIST_STORAGE_ORIGIN_RANGED_GET_H_

#include <cstdint>
#include <functional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/http/http.h"
#include "common/retry_policy.h"
#include "storage/origin/origin.h"

namespace modeldist::origin {

// One request for `range` (a Range header value, "bytes=FROM-" or "bytes=FROM-TO"): sends it
// however the origin signs or addresses requests, passing `body` and `on_head` to
// http::Perform; returns its error, a non-2xx answer included (e.g. with http::HttpError).
using RangeRequest = std::function<absl::StatusOr<http::HttpResponse>(
    const std::string& range, const http::BodySink& body, const http::HeadCheck& on_head)>;

// `where` names the object in errors ("r2: GET prod/sha256/ab..."), never with credentials.
// OUT_OF_RANGE (ORIGIN_OBJECT_SHORT) when the object ends before `offset + length`;
// FAILED_PRECONDITION (RANGE_IGNORED) when a server answers a range from past byte 0 with the
// whole object. An error of `sink` is returned at once, never retried.
absl::Status RangedGet(const std::string& where, int64_t offset, int64_t length,
                       const RetryPolicy& retry, const RangeRequest& request, const ByteSink& sink);

}  // namespace modeldist::origin

#endif  // MODELDIST_STORAGE_ORIGIN_RANGED_GET_H_
