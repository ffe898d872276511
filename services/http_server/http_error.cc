#include "services/http_server/http_error.h"

#include <optional>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "common/json.h"
#include "common/status.h"

namespace modeldist::http_server {

int HttpStatusFor(absl::StatusCode code) {
  switch (code) {
    case absl::StatusCode::kOk:
      return 200;
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kFailedPrecondition:
    case absl::StatusCode::kOutOfRange:
      return 400;
    case absl::StatusCode::kUnauthenticated:
      return 401;
    case absl::StatusCode::kPermissionDenied:
      return 403;
    case absl::StatusCode::kNotFound:
      return 404;
    case absl::StatusCode::kAlreadyExists:
    case absl::StatusCode::kAborted:
      return 409;
    case absl::StatusCode::kResourceExhausted:
      return 429;
    case absl::StatusCode::kCancelled:
      return 499;
    case absl::StatusCode::kUnimplemented:
      return 501;
    case absl::StatusCode::kUnavailable:
      return 503;
    case absl::StatusCode::kDeadlineExceeded:
      return 504;
    default:  // UNKNOWN, INTERNAL, DATA_LOSS
      return 500;
  }
}

Response JsonResponse(int status, std::string json) {
  Response response;
  response.status = status;
  response.body = std::move(json);
  response.body.push_back('\n');
  response.Header("Content-Type", "application/json");
  response.Header("Cache-Control", "no-store");
  return response;
}

Response ErrorResponse(const absl::Status& error) {
  Response response = JsonResponse(
      HttpStatusFor(error.code()),
      absl::StrCat("{\"error\":{\"code\":", JsonQuote(absl::StatusCodeToString(error.code())),
                   ",\"reason\":", JsonQuote(ErrorReason(error)),
                   ",\"message\":", JsonQuote(error.message()), "}}"));
  if (const std::optional<absl::Duration> delay = RetryDelay(error); delay.has_value()) {
    response.Header("Retry-After",
                    absl::StrCat(absl::ToInt64Seconds(absl::Ceil(*delay, absl::Seconds(1)))));
  }
  return response;
}

Response TooLarge(int64_t max_body_bytes) {
  Response response = ErrorResponse(MakeError(
      absl::StatusCode::kResourceExhausted, "BODY_TOO_LARGE",
      absl::StrCat("the request body is over ", max_body_bytes, " bytes, the most accepted")));
  response.status = 413;
  response.Header("Connection", "close");  // the rest of the body is not read
  return response;
}

Response MethodNotAllowed(const std::string& method, const std::string& path,
                          const std::string& allow) {
  Response response =
      ErrorResponse(MakeError(absl::StatusCode::kUnimplemented, "METHOD_NOT_ALLOWED",
                              absl::StrCat(method, " is not served on ", path, "; use ", allow)));
  response.status = 405;
  response.Header("Allow", allow);
  return response;
}

}  // namespace modeldist::http_server
