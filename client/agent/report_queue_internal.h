// File: report_queue_internal.h
//
// The file layer of ReportQueue (report_queue.h has the format), shared by its two .cc files
// (the queue in report_queue.cc, Send in report_send.cc). Callers hold DIR/reports/lock.
#ifndef MODELDIST_CLIENT_AGENT_REPORT_QUEUE_INTERNAL_H_
#define MODELDIST_CLIENT_AGENT_REPORT_QUEUE_INTERNAL_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/file_util.h"
#include "modeldist/v1/fleet.pb.h"

namespace modeldist::agent::report_internal {

// "modeldist-reports-v1 " + 16 hex digits + "\n".
inline constexpr size_t kHeaderBytes = 21 + 16 + 1;

// One record's bytes in QueueState::bytes: [offset, end).
struct Record {
  int64_t offset = 0;
  int64_t end = 0;
};

// The queue file as read (torn tail cut off) and where its unsent records start.
struct QueueState {
  uint64_t generation = 0;
  std::string bytes;            // the whole file
  std::vector<Record> records;  // every valid record, in order
  int64_t sent_offset = kHeaderBytes;
  size_t first_unsent = 0;  // index into records
  int64_t end() const;      // where the next record goes
};

// Opens (creating) `path` and flock()s it exclusively; with wait=false, an invalid fd when
// another holder has it.
absl::StatusOr<ScopedFd> LockFile(const std::string& path, bool wait);

// Reads DIR/queue (creating an empty one), cutting off a torn tail, and DIR/sent.
absl::StatusOr<QueueState> LoadQueue(const std::string& dir);
// Replaces DIR/queue with `records` (encoded) under a new generation: nothing sent yet.
absl::StatusOr<QueueState> WriteQueue(const std::string& dir,
                                      const std::vector<absl::string_view>& records);
// Records that the reports before `end` in the queue of `generation` were accepted, unless the
// queue was rewritten since (a compaction moved them: they are sent again, never lost).
absl::Status MarkSent(const std::string& dir, uint64_t generation, int64_t end);

std::string EncodeRecord(absl::string_view payload);
absl::string_view RecordPayload(const QueueState& state, const Record& record);

// INVALID_ARGUMENT for a report the server would refuse (the checks of ReportQueue::Append).
absl::Status ValidateReport(const v1::StatusReport& report);

}  // namespace modeldist::agent::report_internal

#endif  // MODELDIST_CLIENT_AGENT_REPORT_QUEUE_INTERNAL_H_
