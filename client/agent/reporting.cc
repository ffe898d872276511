#include "client/agent/reporting.h"

#include <memory>
#include <optional>
#include <utility>

#include "client/agent/report_queue_internal.h"
#include "common/limits.h"
#include "common/names.h"
#include "common/status.h"
#include "google/protobuf/util/time_util.h"

namespace modeldist::agent {
namespace {

// The reason a SYNC_FAILED report carries: the error's ErrorInfo reason, or its code's name
// (UNAVAILABLE, ...) for an error without one, such as a connection refused.
std::string SyncFailureReason(const absl::Status& status) {
  std::string reason = ErrorReason(status);
  if (IsStatusReason(reason)) return reason;
  return absl::StatusCodeToString(status.code());
}

// Appends `report` to the queue in options.dir; the first error is kept in `queued`.
void Queue(const SyncOptions& options, const ReportingOptions& reporting,
           const v1::StatusReport& report, absl::Status* queued) {
  // Checked first so that a sync refused for its own options (a bad tier) creates no dir.
  absl::Status status = report_internal::ValidateReport(report);
  if (status.ok()) {
    auto queue = ReportQueue::Open(options.dir, reporting.max_queue_bytes);
    status = queue.ok() ? (*queue)->Append(report) : queue.status();
  }
  if (queued->ok()) *queued = status;
}

}  // namespace

v1::StatusReport NewReport(const SyncOptions& options, v1::StatusEvent event) {
  v1::StatusReport report;
  report.set_tier(options.tier);
  report.set_channel(options.channel.empty() ? std::string(kDefaultChannel) : options.channel);
  report.set_event(event);
  report.set_platform(options.platform != v1::PLATFORM_UNSPECIFIED ? options.platform
                                                                   : DetectPlatform());
  report.set_arch(options.arch != v1::ARCH_UNSPECIFIED ? options.arch : DetectArch());
  const absl::Time now = options.now ? options.now() : absl::Now();
  *report.mutable_time() =
      google::protobuf::util::TimeUtil::NanosecondsToTimestamp(absl::ToUnixNanos(now));
  return report;
}

absl::StatusOr<SyncResult> SyncAndReport(const SyncOptions& options,
                                         const ReportingOptions& reporting,
                                         ReportingOutcome* outcome) {
  ReportingOutcome ignored;
  if (outcome == nullptr) outcome = &ignored;
  *outcome = ReportingOutcome();
  if (!reporting.enabled || options.device_id.empty()) {
    SyncOptions quiet = options;
    quiet.queue_reports = false;  // nor the trial's own (agent.h)
    return Sync(quiet);
  }

  // The accepted manifest, so that a failure after it (download, disk, activation) names
  // the version it was about.
  std::optional<v1::Manifest> accepted;
  SyncOptions hooked = options;
  hooked.on_manifest = [&](const v1::Manifest& manifest) {
    accepted = manifest;
    if (options.on_manifest) options.on_manifest(manifest);
  };
  // Before activation, so that they precede the trial's ACTIVATED in the queue.
  hooked.on_verified = [&](const v1::Manifest& manifest) {
    for (v1::StatusEvent event : {v1::STATUS_EVENT_DOWNLOADED, v1::STATUS_EVENT_VERIFIED}) {
      v1::StatusReport report = NewReport(options, event);
      report.set_version(manifest.version());
      report.set_digest(manifest.artifact().digest());
      Queue(options, reporting, report, &outcome->queued);
    }
    if (options.on_verified) options.on_verified(manifest);
  };
  absl::StatusOr<SyncResult> synced = Sync(hooked);
  if (!synced.ok()) {
    v1::StatusReport report = NewReport(options, v1::STATUS_EVENT_SYNC_FAILED);
    report.set_reason(SyncFailureReason(synced.status()));
    if (accepted.has_value()) {
      report.set_version(accepted->version());
      report.set_digest(accepted->artifact().digest());
    }
    Queue(options, reporting, report, &outcome->queued);
  }
  if (!synced.ok() &&
      (absl::IsUnavailable(synced.status()) || absl::IsDeadlineExceeded(synced.status()))) {
    // The sync just failed to reach the server (or a source): do not spend the send's
    // deadline on it as well; the reports wait for the next sync.
    outcome->sent = MakeError(absl::StatusCode::kUnavailable, "REPORTS_DEFERRED",
                              "reports not sent: the sync could not reach the server");
    return synced;
  }
  outcome->sent = SendReports(options, reporting, &outcome->stats);
  return synced;
}

absl::Status SendReports(const SyncOptions& options, const ReportingOptions& reporting,
                         ReportSendStats* stats) {
  if (!reporting.enabled) return absl::OkStatus();
  MD_ASSIGN_OR_RETURN(std::unique_ptr<ReportQueue> queue,
                      ReportQueue::Open(options.dir, reporting.max_queue_bytes));
  return queue->Send({.server = options.server,
                      .tls_ca_file = options.tls_ca_file,
                      .device_id = options.device_id,
                      .app_version = reporting.app_version,
                      .timeout = reporting.send_timeout},
                     stats);
}

}  // namespace modeldist::agent
