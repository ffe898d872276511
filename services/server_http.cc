#include "services/server_http.h"

#include <string>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "common/status.h"

namespace modeldist::services {
namespace {

// Counts a finished request and writes its log line.
void Observe(ServerMetrics* metrics, const RequestLog* log, const http_server::Request& request,
             const http_server::Completion& done) {
  metrics->http_active()->Add(-1);
  metrics->RecordHttp(done.route.empty() ? "other" : done.route, done.status, done.duration);
  RequestRecord record;
  record.http = true;
  record.start = done.start;
  record.method = request.method;
  record.path = request.path;
  record.code = absl::StrCat(done.status);
  if (!log->Enabled(record.Level())) return;
  record.bytes = done.bytes;
  record.duration = done.duration;
  record.peer = request.peer;
  record.device_id = done.device_id;
  log->Write(record);
}

}  // namespace

absl::Status HttpSide::Validate(const ServerConfig& config) {
  if (config.http_listen.empty()) return absl::OkStatus();
  const std::string& path = config.http_manifest_path;
  if (path.empty() || path[0] != '/' || path == "/healthz" || path == "/readyz" ||
      path == "/metrics" || absl::StartsWith(path, "/v1/blobs/")) {
    return InvalidArgument("http_manifest_path", "INVALID_FLAG",
                           "--http-manifest-path must be a path starting with / other than "
                           "/healthz, /readyz, /metrics and /v1/blobs/...");
  }
  if (!config.http_public_url.empty() && !absl::StartsWith(config.http_public_url, "https://") &&
      !absl::StartsWith(config.http_public_url, "http://")) {
    return InvalidArgument("http_public_url", "INVALID_FLAG",
                           "--http-public-url must be an http:// or https:// URL, e.g. "
                           "https://models.example.com");
  }
  return absl::OkStatus();
}

std::string HttpSide::PublicUrl(const ServerConfig& config) {
  if (config.http_listen.empty()) return "";
  return std::string(absl::StripSuffix(config.http_public_url, "/"));
}

absl::StatusOr<std::unique_ptr<HttpSide>> HttpSide::Start(const ServerConfig& config,
                                                          HttpSideParts parts) {
  auto side = std::unique_ptr<HttpSide>(new HttpSide());
  side->blobs_ =
      std::make_unique<BlobEndpoint>(parts.blobs, parts.health, parts.read_through, parts.metrics);
  EdgeManifestOptions edge;
  edge.path = config.http_manifest_path;
  edge.public_url = PublicUrl(config);
  edge.tls = !config.tls_cert_file.empty();
  side->edge_ = std::make_unique<EdgeManifestEndpoint>(
      [manifests = parts.manifests](const v1::GetManifestRequest& request,
                                    v1::SignedManifest* response) {
        return manifests->Answer(request, response);
      },
      edge);
  side->routes_ = std::make_unique<HttpRoutes>(side->blobs_.get(), side->edge_.get(), parts.metrics,
                                               std::move(parts.ready), config.http_origin_secret);
  http_server::ListenerOptions options;
  options.listen = config.http_listen;
  options.tls_cert_file = config.tls_cert_file;
  options.tls_key_file = config.tls_key_file;
  options.idle_timeout = config.http_idle_timeout;
  options.on_start = [metrics = parts.metrics] { metrics->http_active()->Add(1); };
  options.on_complete = [metrics = parts.metrics, log = parts.log](
                            const http_server::Request& request,
                            const http_server::Completion& done) {
    Observe(metrics, log, request, done);
  };
  MD_ASSIGN_OR_RETURN(side->listener_,
                      http_server::Listener::Start(
                          options, [routes = side->routes_.get()](const http_server::Request& r) {
                            return routes->Handle(r);
                          }));
  return side;
}

}  // namespace modeldist::services
