// File: fleet_service.h
//
// FleetService: takes what devices report (fleet.proto). Open to the fleet, like
// ManifestService: a report is validated as the proto's comment says, limited per device, and
// counted in FleetStats (statistics only; docs/fleet.md). Nothing of a refused batch is
// counted.
#ifndef MODELDIST_SERVICES_FLEET_SERVICE_H_
#define MODELDIST_SERVICES_FLEET_SERVICE_H_

#include <cstdint>
#include <functional>
#include <optional>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "modeldist/v1/fleet.grpc.pb.h"
#include "services/fleet_stats.h"
#include "services/server_metrics.h"

namespace modeldist::services {

struct FleetServiceOptions {
  // Each device (by the SHA-256 of its id) has a bucket of reports: `burst_reports` at most,
  // refilled at `reports_per_second`. A full outbox of an agent that was offline for long
  // (client/agent/report_queue.h) goes through in one burst; a device that keeps sending more
  // than a report a second on average is refused (DEVICE_RATE_LIMITED).
  int64_t burst_reports = 1000;
  double reports_per_second = 1.0;
  // Buckets tracked at most (DeviceRateLimiter).
  int64_t max_tracked_devices = 100000;
  // The clock (a seam for tests).
  std::function<absl::Time()> now = absl::Now;
  // Called after each counted batch (nullptr: nothing), so that rollout gates judge new
  // reports at once instead of at their next period (RolloutAutopilot::Wake, which is cheap
  // when called often).
  std::function<void()> on_counted;
};

// A token bucket per device key, in a bounded table. When the table is full, the buckets that
// have refilled completely are dropped (the same as never seen); when more than half are still
// in use after that, all are (a flood of new ids cannot grow memory; it costs the limit's
// precision for a moment). Thread-safe.
class DeviceRateLimiter {
 public:
  DeviceRateLimiter(int64_t burst, double per_second, int64_t max_devices)
      : burst_(static_cast<double>(burst)), per_second_(per_second), max_devices_(max_devices) {}

  // Takes `reports` from the bucket of `key` at `now`; nullopt when taken, else how long until
  // they could be (nothing is taken then).
  std::optional<absl::Duration> Take(absl::string_view key, int64_t reports, absl::Time now)
      ABSL_LOCKS_EXCLUDED(mu_);

  int64_t tracked() const ABSL_LOCKS_EXCLUDED(mu_);

 private:
  struct Bucket {
    double tokens = 0;
    absl::Time last;
  };
  double Refilled(const Bucket& b, absl::Time now) const;
  void MakeRoom(absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const double burst_;
  const double per_second_;
  const int64_t max_devices_;
  mutable absl::Mutex mu_;
  absl::flat_hash_map<std::string, Bucket> buckets_ ABSL_GUARDED_BY(mu_);
};

// The checks of ReportStatus's request (fleet.proto): INVALID_ARGUMENT naming the field.
absl::Status ValidateReportStatus(const v1::ReportStatusRequest& request);

// Uses the callback API: a report is validated and counted in memory, never blocking, so it
// runs on gRPC's threads (as ManifestService; docs/benchmarks.md).
class FleetServiceImpl final : public v1::FleetService::CallbackService {
 public:
  // `stats` outlives this; `metrics` (nullptr: none) counts reports by event.
  FleetServiceImpl(FleetStats* stats, ServerMetrics* metrics,
                   FleetServiceOptions options = FleetServiceOptions());

  grpc::ServerUnaryReactor* ReportStatus(grpc::CallbackServerContext* context,
                                         const v1::ReportStatusRequest* request,
                                         v1::ReportStatusResponse* response) override;

  // What ReportStatus does: validate, limit, count.
  absl::Status Report(const v1::ReportStatusRequest& request, v1::ReportStatusResponse* response);

 private:
  FleetStats* const stats_;
  ServerMetrics* const metrics_;
  const FleetServiceOptions options_;
  DeviceRateLimiter limiter_;
};

}  // namespace modeldist::services

#endif  // MODELDIST_SERVICES_FLEET_SERVICE_H_
