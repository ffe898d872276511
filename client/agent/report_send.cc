// ReportQueue::Send: the queue's reports to FleetService.ReportStatus, a batch at a time.
#include <grpcpp/grpcpp.h>

#include <optional>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "client/agent/report_queue.h"
#include "client/agent/report_queue_internal.h"
#include "client/rpc/channel.h"
#include "common/file_util.h"
#include "common/grpc_status.h"
#include "common/limits.h"
#include "common/retry_policy.h"
#include "common/status.h"
#include "modeldist/v1/fleet.grpc.pb.h"

#ifndef MODELDIST_VERSION
#define MODELDIST_VERSION ""
#endif

namespace modeldist::agent {
namespace {

using report_internal::LoadQueue;
using report_internal::LockFile;
using report_internal::QueueState;

// One batch read from the queue, and where it ends in which generation of the file.
struct Batch {
  v1::ReportStatusRequest request;
  uint64_t generation = 0;
  int64_t end = 0;
};

// A refusal of the request's own fields rather than of its reports: dropping the batch would
// not help (every batch carries them), so it stops the send instead.
bool RefusesTheDevice(const absl::Status& status) {
  const std::string reason = ErrorReason(status);
  return reason == "EMPTY_DEVICE_ID" || reason == "TEXT_TOO_LONG";
}

absl::Status CheckOptions(const ReportSendOptions& options, const std::string& agent_version) {
  if (options.device_id.empty()) {
    return MakeError(absl::StatusCode::kFailedPrecondition, "MISSING_DEVICE_ID",
                     "reports need a device id (--device-id)");
  }
  if (options.device_id.size() > kMaxDeviceIdBytes) {
    return InvalidArgument("device_id", "TEXT_TOO_LONG", "the device id is over 128 bytes");
  }
  if (options.app_version.size() > kMaxAppVersionBytes ||
      agent_version.size() > kMaxAgentVersionBytes) {
    return InvalidArgument("app_version", "TEXT_TOO_LONG",
                           "the app or agent version is over 64 bytes");
  }
  return absl::OkStatus();
}

std::string RetryAfterPath(const std::string& dir) { return dir + "/retry_after"; }

// The time before which the server asked not to be called again, if it is still ahead.
std::optional<absl::Time> RetryAfter(const std::string& dir) {
  auto text = ReadFileToString(RetryAfterPath(dir));
  int64_t ms = 0;
  if (!text.ok() || !absl::SimpleAtoi(absl::StripSuffix(*text, "\n"), &ms)) return std::nullopt;
  const absl::Time t = absl::FromUnixMillis(ms);
  if (t <= absl::Now()) return std::nullopt;
  return t;
}

}  // namespace

absl::Status ReportQueue::Send(const ReportSendOptions& options, ReportSendStats* stats) {
  ReportSendStats ignored;
  if (stats == nullptr) stats = &ignored;
  *stats = ReportSendStats();
  const std::string agent_version =
      options.agent_version.empty() ? MODELDIST_VERSION : options.agent_version;
  MD_RETURN_IF_ERROR(CheckOptions(options, agent_version));
  // One sender per dir: a second one (another process's sync) would send the same batches.
  MD_ASSIGN_OR_RETURN(ScopedFd sending, LockFile(dir_ + "/send.lock", /*wait=*/false));
  if (!sending.valid()) return absl::OkStatus();
  if (std::optional<absl::Time> after = RetryAfter(dir_)) {
    return WithRetryDelay(MakeError(absl::StatusCode::kResourceExhausted, "DEVICE_RATE_LIMITED",
                                    "the server asked for no reports from this device until " +
                                        absl::FormatTime(*after, absl::UTCTimeZone())),
                          *after - absl::Now());
  }
  const absl::Time deadline = absl::Now() + options.timeout;
  RetryPolicy policy;
  policy.initial_backoff = absl::Milliseconds(200);
  policy.max_backoff = absl::Seconds(2);
  policy.deadline = options.timeout;
  Retrier retrier(policy);
  std::unique_ptr<v1::FleetService::Stub> stub;

  for (;;) {
    Batch batch;
    {
      MD_ASSIGN_OR_RETURN(ScopedFd lock, LockFile(dir_ + "/lock", /*wait=*/true));
      MD_ASSIGN_OR_RETURN(QueueState state, LoadQueue(dir_));
      if (state.first_unsent == state.records.size()) {
        // All sent: start the file again rather than let sent reports take its room.
        if (!state.records.empty()) {
          MD_RETURN_IF_ERROR(report_internal::WriteQueue(dir_, {}).status());
        }
        return absl::OkStatus();
      }
      batch.generation = state.generation;
      for (size_t i = state.first_unsent;
           i < state.records.size() && batch.request.reports_size() < kMaxStatusReportsPerCall;
           ++i) {
        // The record passed its check, so it parses; one that does not is skipped (and goes
        // with its batch), never sent as an empty report that would get the batch refused.
        v1::StatusReport report;
        if (report.ParseFromString(
                std::string(report_internal::RecordPayload(state, state.records[i])))) {
          *batch.request.add_reports() = std::move(report);
        }
        batch.end = state.records[i].end;
      }
    }
    if (batch.request.reports_size() == 0) {  // nothing that parses: nothing to send
      MD_ASSIGN_OR_RETURN(ScopedFd lock, LockFile(dir_ + "/lock", /*wait=*/true));
      MD_RETURN_IF_ERROR(report_internal::MarkSent(dir_, batch.generation, batch.end));
      continue;
    }
    batch.request.set_device_id(options.device_id);
    batch.request.set_agent_version(agent_version);
    batch.request.set_app_version(options.app_version);
    if (stub == nullptr) {
      MD_ASSIGN_OR_RETURN(
          std::shared_ptr<grpc::Channel> channel,
          rpc::MakeChannel({.target = options.server, .tls_ca_file = options.tls_ca_file}));
      stub = v1::FleetService::NewStub(channel);
    }
    grpc::ClientContext context;
    context.set_deadline(absl::ToChronoTime(deadline));
    v1::ReportStatusResponse response;
    const absl::Status status =
        FromGrpcStatus(stub->ReportStatus(&context, batch.request, &response), "ReportStatus");
    const int n = batch.request.reports_size();
    const bool refused =
        status.code() == absl::StatusCode::kInvalidArgument && !RefusesTheDevice(status);
    if (status.ok() || refused) {
      // Only this Send moves the sent offset (send.lock), so it moves from batch to batch. A
      // compaction meanwhile (an append to a full queue) moved the records: this batch goes
      // again from the new file, a duplicate the statistics tolerate.
      MD_ASSIGN_OR_RETURN(ScopedFd lock, LockFile(dir_ + "/lock", /*wait=*/true));
      MD_RETURN_IF_ERROR(report_internal::MarkSent(dir_, batch.generation, batch.end));
      if (status.ok()) {
        stats->sent += n;
        ++stats->batches;
      } else {
        stats->dropped += n;
        stats->drop_message = std::string(status.message());
      }
      retrier.Progressed();
      continue;
    }
    if (status.code() == absl::StatusCode::kResourceExhausted) {
      if (std::optional<absl::Duration> delay = RetryDelay(status)) {
        (void)WriteFileAtomically(RetryAfterPath(dir_),
                                  absl::StrCat(absl::ToUnixMillis(absl::Now() + *delay), "\n"),
                                  0600);
      }
      return status;
    }
    std::optional<absl::Duration> wait = retrier.NextWait(status);
    if (!wait.has_value()) return status;
    absl::SleepFor(*wait);
  }
}

}  // namespace modeldist::agent
