// File: server_metrics.h
//
// What modeldist-server counts, in one place, for `/metrics` (services/http_routes.h) in the
// Prometheus text format (services/metrics/metrics.h):
//
//   modeldist_grpc_requests_total{method,code}         answered rpcs
//   modeldist_grpc_request_duration_seconds{method}    from the call's start to its status
//   modeldist_grpc_active_calls                        calls in progress (Read streams too)
//   modeldist_http_requests_total{route,code}          answered HTTP requests
//   modeldist_http_request_duration_seconds{route}     from the headers to the last byte
//   modeldist_http_active_requests                     HTTP requests in progress
//   modeldist_served_bytes_total{protocol,source}      blob bytes sent; source local (the blob
//                                                      store) or read_through (an origin)
//   modeldist_read_through_hits_total                  blob reads the store served, on a
//                                                      server with origins
//   modeldist_read_through_misses_total                blob reads that went to the origins
//   modeldist_origin_fetches_total                     fetches started from the origins
//   modeldist_manifest_rebuilds_total                  times the signed answers were rebuilt
//   modeldist_auth_failures_total{reason}              admin calls refused before their rpc ran:
//                                                      failed authentications by ErrorInfo
//                                                      reason, and AUTH_RATE_LIMITED refusals
//   modeldist_blob_store_bytes / _blobs                what the blob store holds (at scrape)
//   modeldist_catalog_sequence{tier,channel}           each binding's sequence (at scrape)
//   modeldist_fleet_reports_total{event}               status reports accepted (FleetService)
//   modeldist_fleet_reports_dropped_total{why}         status reports accepted but not counted:
//                                                      why unknown_tier or unknown_version (a
//                                                      name the catalog does not know)
//   modeldist_fleet_devices{version}                   devices whose newest state is on a
//                                                      version, for the kFleetMetricVersions
//                                                      most common versions (at scrape)
//
// Counters that the hot paths touch are looked up once here, so counting is one atomic add.
#ifndef MODELDIST_SERVICES_SERVER_METRICS_H_
#define MODELDIST_SERVICES_SERVER_METRICS_H_

#include <string>

#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "services/metrics/metrics.h"
#include "storage/blob_store.h"
#include "storage/catalog.h"

namespace modeldist::services {

class FleetStats;

// modeldist_fleet_devices has a series for this many versions at most: devices choose what
// they report, so the label's values are bounded here rather than trusted.
inline constexpr size_t kFleetMetricVersions = 50;

class ServerMetrics {
 public:
  ServerMetrics();
  ServerMetrics(const ServerMetrics&) = delete;
  ServerMetrics& operator=(const ServerMetrics&) = delete;

  // The at-scrape gauges of the blob store and the catalog; both must outlive this.
  void WatchStores(const storage::BlobStore* blobs, storage::Catalog* catalog);
  // The at-scrape gauge of devices per version, and the counter of reports `fleet` drops;
  // `fleet` must outlive this.
  void WatchFleet(FleetStats* fleet);
  // One status report counted, of `event` (a StatusEvent number; others are not counted).
  void FleetReport(int event) const {
    if (event > 0 && event < kFleetEvents) fleet_reports_[event]->Increment();
  }

  // One answered rpc: `method` as gRPC names it ("/modeldist.v1.ManifestService/GetManifest"),
  // `code` the status code's name ("OK", "NOT_FOUND").
  void RecordGrpc(absl::string_view method, absl::string_view code, absl::Duration took);
  // One answered HTTP request: `route` a fixed name (http_routes.h), never a raw path.
  void RecordHttp(absl::string_view route, int status, absl::Duration took);

  metrics::Gauge* grpc_active() const { return grpc_active_; }
  metrics::Gauge* http_active() const { return http_active_; }
  // Blob bytes sent over gRPC or HTTP, from the store or read through.
  metrics::Counter* served(bool http, bool read_through) const {
    return served_[http ? 1 : 0][read_through ? 1 : 0];
  }
  // One blob read (gRPC or HTTP) about to be served: `fetched` when it is read through from the
  // origins. Counted as a read-through hit or miss only on a server that reads through.
  void BlobRead(bool reads_through, bool fetched) const {
    if (reads_through) (fetched ? read_through_misses_ : read_through_hits_)->Increment();
  }
  metrics::Counter* origin_fetches() const { return origin_fetches_; }
  metrics::Counter* manifest_rebuilds() const { return manifest_rebuilds_; }
  // Labelled by reason (services/admin_auth.h).
  metrics::CounterFamily* auth_failures() const { return auth_failures_; }

  // The exposition text, and its Content-Type (metrics::kContentType).
  std::string Render() const { return registry_.Render(); }

 private:
  metrics::Registry registry_;
  metrics::CounterFamily* grpc_requests_;
  metrics::HistogramFamily* grpc_duration_;
  metrics::CounterFamily* http_requests_;
  metrics::HistogramFamily* http_duration_;
  metrics::Gauge* grpc_active_;
  metrics::Gauge* http_active_;
  metrics::Counter* served_[2][2];
  metrics::Counter* read_through_hits_;
  metrics::Counter* read_through_misses_;
  metrics::Counter* origin_fetches_;
  metrics::Counter* manifest_rebuilds_;
  metrics::CounterFamily* auth_failures_;
  // By StatusEvent number, 1..7 (0 unused).
  static constexpr int kFleetEvents = 8;
  metrics::Counter* fleet_reports_[kFleetEvents] = {};
};

}  // namespace modeldist::services

#endif  // MODELDIST_SERVICES_SERVER_METRICS_H_
