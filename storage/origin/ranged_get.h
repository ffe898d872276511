// File: ranged_get.h
//
// The one ranged download loop of the origins (S3, HTTP/CDN, Supabase): http::GetRange (the
// Range protocol of one request: Content-Range checked, a 200 taken from byte 0 only) again
// after a failure that may pass, asking for only what is still missing, under the retry policy
// (an attempt that delivered bytes counts as progress); and an object that ends early is an
// error.
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

// `where` names the object in errors ("r2: GET prod/sha256/ab..."), never with credentials.
// OUT_OF_RANGE (ORIGIN_OBJECT_SHORT) when the object ends before `offset + length`;
// FAILED_PRECONDITION (RANGE_IGNORED) when a server answers a range from past byte 0 with the
// whole object. An error of `sink` is returned at once, never retried.
absl::Status RangedGet(const std::string& where, int64_t offset, int64_t length,
                       const RetryPolicy& retry, const http::RangeRequest& request,
                       const ByteSink& sink);

}  // namespace modeldist::origin

#endif  // MODELDIST_STORAGE_ORIGIN_RANGED_GET_H_
