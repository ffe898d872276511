// File: report_queue.h
//
// The device's outbox of status reports (FleetService.ReportStatus): events are appended to a
// file under the agent's dir as they happen and sent in batches when the server can be
// reached. Sending never blocks a sync for long (a short deadline) and never loses what was
// not accepted; the file is bounded (the oldest reports are dropped first when it is full), so
// a device offline for months keeps the newest events only.
//
// Files under DIR/reports/ (0700; files 0600):
//   queue        "modeldist-reports-v1 <generation>\n", then records: a 4-byte little-endian
//                length, the first 4 bytes of the payload's SHA-256, the serialized
//                StatusReport. Appended and fsynced one record at a time; a record a crash
//                tore (short, or failing its check) ends the queue and is cut off on the next
//                operation. Compacted (written whole to a temp file and renamed over) with a
//                new generation when full or when everything was sent.
//   sent         "<generation> <offset>": where the first report not yet accepted starts,
//                written atomically after each accepted batch. A generation other than the
//                queue's (a compaction the crash interrupted before this file was rewritten)
//                reads as "nothing sent". A crash between the server's answer and this write
//                sends that batch again: the server's figures are statistics and tolerate it.
//   retry_after  unix milliseconds before which Send does not call the server (the RetryInfo
//                of its last RESOURCE_EXHAUSTED).
//   lock         flock(2) held for each read-modify-write of the files above (milliseconds);
//   send.lock    flock(2) held by the one Send that is talking to the server.
// Processes (the CLI, an app through the C ABI) and threads may share a dir: every operation
// re-reads the files under the lock.
#ifndef MODELDIST_CLIENT_AGENT_REPORT_QUEUE_H_
#define MODELDIST_CLIENT_AGENT_REPORT_QUEUE_H_

#include <cstdint>
#include <memory>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "modeldist/v1/fleet.pb.h"

namespace modeldist::agent {

struct ReportSendOptions {
  // host:port of modeldist-server, and its TLS CA file (empty = plaintext), as SyncOptions.
  std::string server;
  std::string tls_ca_file;
  // Sent with every batch (ReportStatusRequest). device_id is required (1-128 bytes);
  // app_version and agent_version at most 64 bytes ("" = not sent / this agent's version).
  std::string device_id;
  std::string app_version;
  std::string agent_version;
  // The deadline of the whole send, retries included.
  absl::Duration timeout = absl::Seconds(5);
};

// What one Send did.
struct ReportSendStats {
  int64_t sent = 0;          // reports the server accepted
  int64_t dropped = 0;       // reports of batches the server refused as invalid (never accepted)
  int batches = 0;           // ReportStatus calls answered OK
  std::string drop_message;  // the server's message for the last dropped batch
};

class ReportQueue {
 public:
  // Opens (creating) the queue in `dir` (the agent's dir), holding at most `max_bytes` of
  // reports (the queue file, header included). Cuts off a torn tail.
  static absl::StatusOr<std::unique_ptr<ReportQueue>> Open(const std::string& dir,
                                                           int64_t max_bytes = 1 << 20);

  // Appends one report durably (fsynced before returning). When the queue would exceed
  // max_bytes, reports already sent are compacted away and then the oldest unsent ones are
  // dropped. INVALID_ARGUMENT (and nothing queued) for a report the server would refuse: no
  // tier, an unspecified event, platform or arch, a malformed channel, version, digest or
  // reason (UPPER_SNAKE, at most 64 bytes).
  absl::Status Append(const v1::StatusReport& report);

  // Sends the queued reports, oldest first, in batches of at most kMaxStatusReportsPerCall; each
  // accepted batch is removed. UNAVAILABLE and DEADLINE_EXCEEDED are retried with backoff
  // (common/retry_policy.h) within options.timeout. A batch the server refuses with
  // INVALID_ARGUMENT would never be accepted: it is dropped (counted in stats) and sending goes
  // on. Any other error stops and is returned, with what was not sent still queued; for
  // RESOURCE_EXHAUSTED the server's RetryInfo delay is kept, and Sends before it ends return
  // RESOURCE_EXHAUSTED (DEVICE_RATE_LIMITED) without connecting. Nothing queued, or another
  // Send on this dir under way: OK without connecting. No device_id: FAILED_PRECONDITION
  // (MISSING_DEVICE_ID), nothing sent.
  absl::Status Send(const ReportSendOptions& options, ReportSendStats* stats = nullptr);

  // How many reports are queued (not yet accepted), read from the files now; -1 when they
  // cannot be read.
  int64_t size() const;

 private:
  ReportQueue(std::string dir, int64_t max_bytes) : dir_(std::move(dir)), max_bytes_(max_bytes) {}

  const std::string dir_;  // DIR/reports
  const int64_t max_bytes_;
};

}  // namespace modeldist::agent

#endif  // MODELDIST_CLIENT_AGENT_REPORT_QUEUE_H_
