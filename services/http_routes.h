// File: http_routes.h
//
// What the HTTP listener (services/http_server/listener.h) serves, by path:
//
//   GET|HEAD /v1/blobs/sha256:<hex>   the CDN origin (services/blob_endpoint.h)
//   POST /functions/v1/local-llm-manifest
//                                     the seed's edge function (edge_manifest_endpoint.h;
//                                     the path is configurable)
//   GET|HEAD /metrics                 Prometheus text format (services/server_metrics.h)
//   GET|HEAD /healthz                 200 while the process serves (liveness)
//   GET|HEAD /readyz                  200 once the catalog answers and signing keys are loaded,
//                                     503 otherwise or while shutting down (readiness)
//
// With an origin secret, a blob request without it is 403 (ORIGIN_SECRET_MISMATCH).
// Anything else is a JSON 404. Every answer, errors included, is JSON, blob bytes or metrics.
// Each answer carries its route's name for metrics and the request log: blob, edge_manifest,
// metrics, healthz, readyz, other.
#ifndef MODELDIST_SERVICES_HTTP_ROUTES_H_
#define MODELDIST_SERVICES_HTTP_ROUTES_H_

#include <functional>

#include "absl/status/status.h"
#include "services/blob_endpoint.h"
#include "services/edge_manifest_endpoint.h"
#include "services/http_server/listener.h"
#include "services/server_metrics.h"

namespace modeldist::services {

// The header a CDN sends the origin secret in (lower case, as Request::Header wants it).
inline constexpr char kOriginSecretHeader[] = "x-modeldist-origin-secret";

class HttpRoutes {
 public:
  // `ready` says whether the server can serve devices now (OK) or why not.
  // `origin_secret` (empty: none): blob requests must carry it in kOriginSecretHeader, as a CDN
  // adds it (CloudFront's "origin custom header"), so that only the CDN pulls from the origin.
  HttpRoutes(const BlobEndpoint* blobs, const EdgeManifestEndpoint* edge,
             const ServerMetrics* metrics, std::function<absl::Status()> ready,
             std::string origin_secret = "")
      : blobs_(blobs),
        edge_(edge),
        metrics_(metrics),
        ready_(std::move(ready)),
        origin_secret_(std::move(origin_secret)) {}

  http_server::Response Handle(const http_server::Request& request) const;

 private:
  const BlobEndpoint* blobs_;
  const EdgeManifestEndpoint* edge_;
  const ServerMetrics* metrics_;
  std::function<absl::Status()> ready_;
  const std::string origin_secret_;
};

}  // namespace modeldist::services

#endif  // MODELDIST_SERVICES_HTTP_ROUTES_H_
