// File: http_error.h
//
// The HTTP listener's one status mapping: an absl::Status (code, ErrorInfo reason, message,
// RetryInfo) as an HTTP answer. The status follows google.rpc.Code's documented HTTP mapping;
// the body is always JSON, never a stack or an HTML page:
//
//   {"error": {"code": "NOT_FOUND", "reason": "BLOB_NOT_FOUND", "message": "..."}}
//
// and a RetryInfo delay becomes Retry-After (whole seconds, rounded up).
#ifndef MODELDIST_SERVICES_HTTP_SERVER_HTTP_ERROR_H_
#define MODELDIST_SERVICES_HTTP_SERVER_HTTP_ERROR_H_

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "services/http_server/listener.h"

namespace modeldist::http_server {

// The HTTP status for `code` (OK is 200).
int HttpStatusFor(absl::StatusCode code);

// A JSON answer with `status`.
Response JsonResponse(int status, std::string json);

// `error` (not OK) as an HTTP answer.
Response ErrorResponse(const absl::Status& error);

// 413: a request body over `max_body_bytes`.
Response TooLarge(int64_t max_body_bytes);

// 405 naming the methods `path` has (an Allow header, e.g. "GET, HEAD").
Response MethodNotAllowed(const std::string& method, const std::string& path,
                          const std::string& allow);

}  // namespace modeldist::http_server

#endif  // MODELDIST_SERVICES_HTTP_SERVER_HTTP_ERROR_H_
