#include "services/fleet_service.h"

#include <algorithm>
#include <cmath>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/grpc_status.h"
#include "common/limits.h"
#include "common/names.h"
#include "common/status.h"
#include "services/request_validation.h"

namespace modeldist::services {
namespace {

absl::Status ValidateReport(int index, const v1::StatusReport& r) {
  const std::string at = absl::StrCat("reports[", index, "].");
  auto field = [&at](absl::string_view name) { return absl::StrCat(at, name); };
  RequestCheck check;
  check.Id(field("tier"), r.tier()).OptionalId(field("channel"), r.channel());
  if (!r.version().empty()) {
    VersionName version;
    check.VersionName(field("version"), r.version(), &version);
  }
  if (!r.digest().empty()) check.Digest(field("digest"), r.digest());
  const bool known_event =
      r.event() != v1::STATUS_EVENT_UNSPECIFIED && v1::StatusEvent_IsValid(r.event());
  const bool good_reason = r.reason().empty() || IsStatusReason(r.reason());
  // That() builds its message even when the check passes: only on the way to a refusal here,
  // since every report of tens of thousands a second comes through.
  if (!known_event || !good_reason) {
    check
        .That(known_event, field("event"), "INVALID_EVENT",
              absl::StrCat(field("event"), " is ", r.event(), ": give the event that happened"))
        .That(good_reason, field("reason"), "INVALID_REASON",
              absl::StrCat(field("reason"), " must be UPPER_SNAKE ([A-Z][A-Z0-9_]*) of at most ",
                           kMaxStatusReasonBytes, " bytes"));
  }
  return check.Platform(field("platform"), r.platform())
      .DeviceArch(field("arch"), r.arch())
      .status();
}

}  // namespace

absl::Status ValidateReportStatus(const v1::ReportStatusRequest& request) {
  MD_RETURN_IF_ERROR(
      RequestCheck()
          .That(!request.device_id().empty(), "device_id", "EMPTY_DEVICE_ID",
                "device_id is required: the device's opaque id, as sent with GetManifest")
          .Text("device_id", request.device_id(), kMaxDeviceIdBytes)
          .Text("agent_version", request.agent_version(), kMaxAgentVersionBytes)
          .Text("app_version", request.app_version(), kMaxAppVersionBytes)
          .Range("reports", request.reports_size(), 1, kMaxStatusReportsPerCall,
                 "INVALID_REPORT_COUNT", " reports")
          .status());
  for (int i = 0; i < request.reports_size(); ++i) {
    MD_RETURN_IF_ERROR(ValidateReport(i, request.reports(i)));
  }
  return absl::OkStatus();
}

double DeviceRateLimiter::Refilled(const Bucket& b, absl::Time now) const {
  const double elapsed = std::max(0.0, absl::ToDoubleSeconds(now - b.last));
  return std::min(burst_, b.tokens + elapsed * per_second_);
}

void DeviceRateLimiter::MakeRoom(absl::Time now) {
  for (auto it = buckets_.begin(); it != buckets_.end();) {
    if (Refilled(it->second, now) >= burst_) {
      buckets_.erase(it++);
    } else {
      ++it;
    }
  }
  // Sweeping again at the next new device would cost a pass per call.
  if (static_cast<int64_t>(buckets_.size()) > max_devices_ / 2) buckets_.clear();
}

std::optional<absl::Duration> DeviceRateLimiter::Take(absl::string_view key, int64_t reports,
                                                      absl::Time now) {
  absl::MutexLock lock(&mu_);
  auto it = buckets_.find(key);
  if (it == buckets_.end()) {
    if (static_cast<int64_t>(buckets_.size()) >= max_devices_) MakeRoom(now);
    it = buckets_.emplace(std::string(key), Bucket{burst_, now}).first;
  }
  Bucket& b = it->second;
  b.tokens = Refilled(b, now);
  b.last = std::max(b.last, now);
  const double wanted = static_cast<double>(reports);
  if (b.tokens >= wanted) {
    b.tokens -= wanted;
    return std::nullopt;
  }
  if (per_second_ <= 0) return absl::Hours(1);
  return absl::Milliseconds(std::ceil((wanted - b.tokens) / per_second_ * 1000));
}

int64_t DeviceRateLimiter::tracked() const {
  absl::MutexLock lock(&mu_);
  return static_cast<int64_t>(buckets_.size());
}

FleetServiceImpl::FleetServiceImpl(FleetStats* stats, ServerMetrics* metrics,
                                   FleetServiceOptions options)
    : stats_(stats),
      metrics_(metrics),
      options_(std::move(options)),
      limiter_(options_.burst_reports, options_.reports_per_second, options_.max_tracked_devices) {}

absl::Status FleetServiceImpl::Report(const v1::ReportStatusRequest& request,
                                      v1::ReportStatusResponse* response) {
  MD_RETURN_IF_ERROR(ValidateReportStatus(request));
  const absl::Time now = options_.now();
  // Hashed once: the bucket key is the device's key in FleetStats too (never the id).
  const std::string device = FleetStats::DeviceKeyOf(request.device_id());
  if (std::optional<absl::Duration> wait = limiter_.Take(device, request.reports_size(), now)) {
    return WithRetryDelay(
        MakeError(absl::StatusCode::kResourceExhausted, "DEVICE_RATE_LIMITED",
                  absl::StrFormat("this device sent more reports lately than the server takes "
                                  "from one device (%d at once, %g a second); keep them and "
                                  "retry in %s",
                                  options_.burst_reports, options_.reports_per_second,
                                  absl::FormatDuration(*wait))),
        *wait);
  }
  stats_->Record(request, device, now);
  if (metrics_ != nullptr) {
    for (const v1::StatusReport& r : request.reports()) metrics_->FleetReport(r.event());
  }
  response->set_accepted(request.reports_size());
  if (options_.on_counted) options_.on_counted();
  return absl::OkStatus();
}

grpc::ServerUnaryReactor* FleetServiceImpl::ReportStatus(grpc::CallbackServerContext* context,
                                                         const v1::ReportStatusRequest* request,
                                                         v1::ReportStatusResponse* response) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  reactor->Finish(ToGrpcStatus(Report(*request, response)));
  return reactor;
}

}  // namespace modeldist::services
