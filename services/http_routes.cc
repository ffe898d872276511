#include "services/http_routes.h"

#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/status.h"
#include "services/admin_auth.h"
#include "services/http_server/http_error.h"

namespace modeldist::services {
namespace {

using http_server::Request;
using http_server::Response;

bool IsRead(const Request& request) { return request.method == "GET" || request.method == "HEAD"; }

}  // namespace

Response HttpRoutes::Handle(const Request& request) const {
  if (absl::StartsWith(request.path, kBlobPathPrefix)) {
    Response response =
        !origin_secret_.empty() &&
                !SecretEquals(request.Header(kOriginSecretHeader), origin_secret_)
            ? http_server::ErrorResponse(MakeError(
                  absl::StatusCode::kPermissionDenied, "ORIGIN_SECRET_MISMATCH",
                  absl::StrCat("blobs are served to the CDN only: the request lacks the right ",
                               kOriginSecretHeader, " header")))
            : blobs_->Serve(request, request.path.substr(sizeof(kBlobPathPrefix) - 1));
    response.route = "blob";
    return response;
  }
  if (request.path == edge_->path()) {
    Response response = edge_->Serve(request);
    response.route = "edge_manifest";
    return response;
  }
  if (request.path == "/healthz" || request.path == "/readyz" || request.path == "/metrics") {
    Response response;
    if (!IsRead(request)) {
      response = http_server::MethodNotAllowed(request.method, request.path, "GET, HEAD");
    } else if (request.path == "/healthz") {
      response = http_server::JsonResponse(200, R"({"status":"ok"})");
    } else if (request.path == "/metrics") {
      response.body = metrics_->Render();
      response.Header("Content-Type", std::string(metrics::kContentType));
      response.Header("Cache-Control", "no-store");
    } else if (const absl::Status ready = ready_(); !ready.ok()) {
      response = http_server::ErrorResponse(ready);
    } else {
      response = http_server::JsonResponse(200, R"({"status":"ready"})");
    }
    response.route = request.path.substr(1);
    return response;
  }
  return http_server::ErrorResponse(
      MakeError(absl::StatusCode::kNotFound, "NO_SUCH_PATH",
                absl::StrCat("nothing is served at ", request.path,
                             "; blobs are at /v1/blobs/sha256:<hex>, manifests at ", edge_->path(),
                             ", metrics at /metrics, probes at /healthz and /readyz")));
}

}  // namespace modeldist::services
