#include "services/server_metrics.h"

#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "modeldist/v1/fleet.pb.h"
#include "services/fleet_stats.h"
#include "storage/blob_store_usage.h"

namespace modeldist::services {
namespace {

// From 1 ms (a manifest from memory) to 10 minutes (a large blob over a slow link).
std::vector<double> DurationBuckets() {
  return {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
          1,      2.5,   5,      10,    30,   60,    120,  300, 600};
}

}  // namespace

ServerMetrics::ServerMetrics() {
  grpc_requests_ =
      &registry_.AddCounter("modeldist_grpc_requests_total",
                            "gRPC calls answered, by method and status code.", {"method", "code"});
  grpc_duration_ = &registry_.AddHistogram(
      "modeldist_grpc_request_duration_seconds",
      "Time from a gRPC call's start to its status, by method.", {"method"}, DurationBuckets());
  http_requests_ =
      &registry_.AddCounter("modeldist_http_requests_total",
                            "HTTP requests answered, by route and status code.", {"route", "code"});
  http_duration_ = &registry_.AddHistogram(
      "modeldist_http_request_duration_seconds",
      "Time from an HTTP request's headers to its last byte sent, by route.", {"route"},
      DurationBuckets());
  grpc_active_ = registry_
                     .AddGauge("modeldist_grpc_active_calls",
                               "gRPC calls in progress (each ArtifactService.Read stream is one).")
                     .With({});
  http_active_ =
      registry_.AddGauge("modeldist_http_active_requests", "HTTP requests in progress.").With({});
  metrics::CounterFamily& served = registry_.AddCounter(
      "modeldist_served_bytes_total",
      "Blob bytes sent to clients, by protocol and by where they came from: local (the blob "
      "store) or read_through (fetched from an origin).",
      {"protocol", "source"});
  for (int http = 0; http < 2; ++http) {
    for (int through = 0; through < 2; ++through) {
      served_[http][through] =
          served.With({http ? "http" : "grpc", through ? "read_through" : "local"});
    }
  }
  read_through_hits_ = registry_
                           .AddCounter("modeldist_read_through_hits_total",
                                       "Blob reads the blob store served, on a server with "
                                       "origins to read through from.")
                           .With({});
  read_through_misses_ =
      registry_
          .AddCounter("modeldist_read_through_misses_total",
                      "Blob reads of blobs not stored here, served from the origins.")
          .With({});
  origin_fetches_ = registry_
                        .AddCounter("modeldist_origin_fetches_total",
                                    "Fetches of a blob from the origins started (reads of a blob "
                                    "being fetched join its fetch).")
                        .With({});
  manifest_rebuilds_ = registry_
                           .AddCounter("modeldist_manifest_rebuilds_total",
                                       "Times the pre-signed manifests were rebuilt.")
                           .With({});
  auth_failures_ = &registry_.AddCounter(
      "modeldist_auth_failures_total",
      "Admin calls refused for their authentication, by ErrorInfo reason: MISSING_TOKEN, "
      "MALFORMED_TOKEN, WRONG_TOKEN, UNKNOWN_CERTIFICATE, and AUTH_RATE_LIMITED for calls from "
      "a peer that failed too often lately.",
      {"reason"});
  metrics::CounterFamily& fleet_reports = registry_.AddCounter(
      "modeldist_fleet_reports_total",
      "Status reports devices sent (FleetService.ReportStatus) that were accepted, by event.",
      {"event"});
  for (int event = 1; event < kFleetEvents; ++event) {
    const std::string name = v1::StatusEvent_Name(static_cast<v1::StatusEvent>(event));
    fleet_reports_[event] =
        fleet_reports.With({absl::AsciiStrToLower(absl::StripPrefix(name, "STATUS_EVENT_"))});
  }
}

void ServerMetrics::WatchStores(const storage::BlobStore* blobs, storage::Catalog* catalog) {
  // Read at scrape time: the store's listing and each blob's size (from its record).
  auto store_totals = [blobs](bool bytes) {
    absl::StatusOr<storage::BlobStoreUsage> usage = storage::MeasureUsage(*blobs);
    if (!usage.ok()) return metrics::GaugeValues{};
    return metrics::GaugeValues{{{}, static_cast<double>(bytes ? usage->bytes : usage->blobs)}};
  };
  registry_.AddGaugeCallback("modeldist_blob_store_bytes", "Bytes of the blobs stored here.", {},
                             [store_totals] { return store_totals(true); });
  registry_.AddGaugeCallback("modeldist_blob_store_blobs", "Blobs stored here.", {},
                             [store_totals] { return store_totals(false); });
  registry_.AddGaugeCallback(
      "modeldist_catalog_sequence",
      "The sequence of each tier binding: it rises with every change devices must see.",
      {"tier", "channel"}, [catalog] {
        metrics::GaugeValues values;
        std::string token;
        do {
          absl::StatusOr<storage::ListPage<v1::TierBinding>> page = catalog->ListTiers(1000, token);
          if (!page.ok()) break;
          for (const v1::TierBinding& binding : page->items) {
            values.push_back(
                {{binding.tier(), binding.channel()}, static_cast<double>(binding.sequence())});
          }
          token = page->next_page_token;
        } while (!token.empty());
        return values;
      });
}

void ServerMetrics::WatchFleet(FleetStats* fleet) {
  fleet->CountDropsIn(&registry_.AddCounter(
      "modeldist_fleet_reports_dropped_total",
      "Status reports accepted but not counted: about a tier/channel or version the catalog "
      "does not know.",
      {"why"}));
  registry_.AddGaugeCallback(
      "modeldist_fleet_devices",
      absl::StrCat("Devices whose newest report (activated, load confirmed, rolled back) is "
                   "about a version, for the ",
                   kFleetMetricVersions, " versions with the most devices."),
      {"version"}, [fleet] {
        metrics::GaugeValues values;
        for (const auto& [version, devices] : fleet->DevicesPerVersion(kFleetMetricVersions)) {
          values.push_back({{version}, static_cast<double>(devices)});
        }
        return values;
      });
}

void ServerMetrics::RecordGrpc(absl::string_view method, absl::string_view code,
                               absl::Duration took) {
  grpc_requests_->With({method, code})->Increment();
  grpc_duration_->With({method})->ObserveDuration(took);
}

void ServerMetrics::RecordHttp(absl::string_view route, int status, absl::Duration took) {
  const std::string code = absl::StrCat(status);
  http_requests_->With({route, code})->Increment();
  http_duration_->With({route})->ObserveDuration(took);
}

}  // namespace modeldist::services
