// File: server_http.h
//
// modeldist-server's HTTP side (--http-listen; docs/http.md): the listener and what it serves
// (services/http_routes.h), wired to the server's parts, with each request counted in
// ServerMetrics and written to the RequestLog. ModeldistServer owns one when configured.
#ifndef MODELDIST_SERVICES_SERVER_HTTP_H_
#define MODELDIST_SERVICES_SERVER_HTTP_H_

#include <functional>
#include <memory>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "services/blob_endpoint.h"
#include "services/edge_manifest_endpoint.h"
#include "services/http_routes.h"
#include "services/http_server/listener.h"
#include "services/manifest_service.h"
#include "services/request_log.h"
#include "services/server.h"
#include "services/server_metrics.h"

namespace modeldist::services {

// What the HTTP side serves from; all must outlive it. `read_through` may be null.
struct HttpSideParts {
  const storage::BlobStore* blobs = nullptr;
  BlobHealth* health = nullptr;
  ReadThrough* read_through = nullptr;
  const ManifestServiceImpl* manifests = nullptr;
  ServerMetrics* metrics = nullptr;
  const RequestLog* log = nullptr;
  // /readyz: OK when the server can serve devices, else why not.
  std::function<absl::Status()> ready;
};

class HttpSide {
 public:
  // The HTTP flags of `config` (when http_listen is set), before anything starts: errors name
  // the flag.
  static absl::Status Validate(const ServerConfig& config);
  // --http-public-url without a trailing slash: where devices reach the listener's blobs (the
  // base of BlobUrl); "" without a listener or a public URL.
  static std::string PublicUrl(const ServerConfig& config);
  // Starts serving on config.http_listen.
  static absl::StatusOr<std::unique_ptr<HttpSide>> Start(const ServerConfig& config,
                                                         HttpSideParts parts);
  // Stops the listener, waiting for its connections.
  ~HttpSide() = default;
  HttpSide(const HttpSide&) = delete;
  HttpSide& operator=(const HttpSide&) = delete;

  int port() const { return listener_->port(); }

 private:
  HttpSide() = default;
  std::unique_ptr<BlobEndpoint> blobs_;
  std::unique_ptr<EdgeManifestEndpoint> edge_;
  std::unique_ptr<HttpRoutes> routes_;
  // Last: destroyed (stopped) first, since its connections call into the above.
  std::unique_ptr<http_server::Listener> listener_;
};

}  // namespace modeldist::services

#endif  // MODELDIST_SERVICES_SERVER_HTTP_H_
