// File: reporting.h
//
// What the agent tells the server about its syncs (FleetService.ReportStatus through the
// queue of report_queue.h), in one place for modeldist-agent and the C ABI: after a sync that
// activated a version, DOWNLOADED and VERIFIED; after a failed one, SYNC_FAILED with the
// error's ErrorInfo reason and, when the failure came after the manifest was accepted, its
// version and digest. Then whatever is queued (these, and the trial's ACTIVATED, LOAD_* and
// ROLLED_BACK) is sent within a short deadline. Reporting never changes a sync's result: its
// errors are returned on the side, and a server that cannot be reached costs at most the
// deadline while the reports wait in the queue for the next sync.
//
// Reports need a device id (SyncOptions::device_id); without one, nothing is queued or sent.
#ifndef MODELDIST_CLIENT_AGENT_REPORTING_H_
#define MODELDIST_CLIENT_AGENT_REPORTING_H_

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "client/agent/agent.h"
#include "client/agent/report_queue.h"
#include "modeldist/v1/fleet.pb.h"

namespace modeldist::agent {

struct ReportingOptions {
  // Off: nothing queued or sent (--no-reports, md_agent_config.no_reports).
  bool enabled = true;
  // The app's version, sent with every batch (at most 64 bytes).
  std::string app_version;
  // The deadline of sending after a sync, retries included.
  absl::Duration send_timeout = absl::Seconds(3);
  // The bound of DIR/reports/queue: the oldest reports go first beyond it.
  int64_t max_queue_bytes = 1 << 20;
};

// What reporting did besides the sync.
struct ReportingOutcome {
  absl::Status queued;  // appending this sync's reports
  absl::Status sent;    // sending the queue
  ReportSendStats stats;
};

// A report of `event` about `options`' tier, channel ("stable" when empty), platform and arch
// (detected when unspecified), timestamped by options.now(). The caller sets version, digest
// and reason.
v1::StatusReport NewReport(const SyncOptions& options, v1::StatusEvent event);

// Sync(options), then the reports above when reporting.enabled and the device has an id. The
// result is Sync's, unchanged; `outcome` (optional) says how reporting went.
absl::StatusOr<SyncResult> SyncAndReport(const SyncOptions& options,
                                         const ReportingOptions& reporting,
                                         ReportingOutcome* outcome = nullptr);

// Sends what is queued in options.dir to options.server within reporting.send_timeout (e.g.
// after the app reported a load). OK without connecting when reporting is off or nothing is
// queued; FAILED_PRECONDITION (MISSING_DEVICE_ID) without a device id.
absl::Status SendReports(const SyncOptions& options, const ReportingOptions& reporting,
                         ReportSendStats* stats = nullptr);

}  // namespace modeldist::agent

#endif  // MODELDIST_CLIENT_AGENT_REPORTING_H_
