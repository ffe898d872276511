// The queue file, its sent offset and their locks (the format is in report_queue.h); Send is
// in report_send.cc.
#include "client/agent/report_queue.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <optional>
#include <random>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "client/agent/report_queue_internal.h"
#include "common/digest.h"
#include "common/file_util.h"
#include "common/limits.h"
#include "common/names.h"
#include "common/status.h"

namespace modeldist::agent {
namespace report_internal {
namespace {

constexpr absl::string_view kMagic = "modeldist-reports-v1 ";
static_assert(kHeaderBytes == kMagic.size() + 16 + 1);
constexpr size_t kRecordHeaderBytes = 8;
// A StatusReport is ~150 bytes; this only keeps a corrupt length from reading as a record.
constexpr uint32_t kMaxRecordBytes = 64 * 1024;

std::string Header(uint64_t generation) {
  return absl::StrCat(kMagic, absl::Hex(generation, absl::kZeroPad16), "\n");
}

uint64_t NewGeneration() {
  std::random_device random;
  return (static_cast<uint64_t>(random()) << 32) ^ random();
}

std::string Check(absl::string_view payload) {
  Sha256 sha;
  sha.Update(payload);
  return sha.FinishRaw().substr(0, 4);
}

uint32_t ReadLe32(absl::string_view bytes) {
  uint32_t n = 0;
  for (int i = 3; i >= 0; --i) n = (n << 8) | static_cast<unsigned char>(bytes[i]);
  return n;
}

// The generation of a queue file starting with `bytes`, or nullopt when its header does not
// parse (not written by this format: the header is only ever written whole, by rename).
std::optional<uint64_t> ParseHeader(absl::string_view bytes) {
  uint64_t generation = 0;
  if (bytes.size() < kHeaderBytes || !absl::StartsWith(bytes, kMagic) ||
      bytes[kHeaderBytes - 1] != '\n' ||
      !absl::SimpleHexAtoi(bytes.substr(kMagic.size(), 16), &generation)) {
    return std::nullopt;
  }
  return generation;
}

std::string QueuePath(const std::string& dir) { return dir + "/queue"; }
std::string SentPath(const std::string& dir) { return dir + "/sent"; }

// Reads DIR/sent: the offset of the first unsent record when it is for `state`'s generation
// and names a record boundary, else the first record (a crash lost track: send all again).
int64_t ReadSentOffset(const std::string& dir, const QueueState& state) {
  auto text = ReadFileToString(SentPath(dir));
  if (!text.ok()) return kHeaderBytes;
  std::vector<absl::string_view> fields =
      absl::StrSplit(absl::StripAsciiWhitespace(*text), ' ', absl::SkipEmpty());
  uint64_t generation = 0;
  int64_t offset = 0;
  if (fields.size() != 2 || !absl::SimpleHexAtoi(fields[0], &generation) ||
      !absl::SimpleAtoi(fields[1], &offset) || generation != state.generation) {
    return kHeaderBytes;
  }
  if (offset == state.end()) return offset;
  for (const Record& r : state.records) {
    if (r.offset == offset) return offset;
  }
  return kHeaderBytes;
}

}  // namespace

std::string EncodeRecord(absl::string_view payload) {
  std::string out(4, '\0');
  const uint32_t n = static_cast<uint32_t>(payload.size());
  for (int i = 0; i < 4; ++i) out[i] = static_cast<char>((n >> (8 * i)) & 0xff);
  absl::StrAppend(&out, Check(payload), payload);
  return out;
}

int64_t QueueState::end() const {
  return records.empty() ? static_cast<int64_t>(kHeaderBytes) : records.back().end;
}

absl::StatusOr<ScopedFd> LockFile(const std::string& path, bool wait) {
  ScopedFd fd(::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600));
  if (!fd.valid()) return ErrnoStatus(errno, path);
  int rc;
  do {
    rc = ::flock(fd.get(), LOCK_EX | (wait ? 0 : LOCK_NB));
  } while (rc != 0 && errno == EINTR);
  if (rc != 0) {
    if (!wait && errno == EWOULDBLOCK) return ScopedFd();
    return ErrnoStatus(errno, absl::StrCat("locking ", path));
  }
  return fd;
}

absl::StatusOr<QueueState> WriteQueue(const std::string& dir,
                                      const std::vector<absl::string_view>& records) {
  QueueState state;
  state.generation = NewGeneration();
  state.bytes = Header(state.generation);
  for (absl::string_view r : records) {
    const int64_t offset = state.bytes.size();
    state.bytes.append(r.data(), r.size());
    state.records.push_back({offset, static_cast<int64_t>(state.bytes.size())});
  }
  state.sent_offset = kHeaderBytes;
  MD_RETURN_IF_ERROR(WriteFileAtomically(QueuePath(dir), state.bytes, 0600));
  return state;
}

absl::StatusOr<QueueState> LoadQueue(const std::string& dir) {
  auto text = ReadFileToString(QueuePath(dir));
  if (!text.ok() && !absl::IsNotFound(text.status())) return text.status();
  // A missing queue, or one whose header does not parse, starts a new queue.
  const std::optional<uint64_t> generation =
      text.ok() ? ParseHeader(*text) : std::optional<uint64_t>();
  if (!generation.has_value()) return WriteQueue(dir, {});
  QueueState state;
  state.generation = *generation;
  state.bytes = *std::move(text);
  const absl::string_view bytes = state.bytes;
  size_t at = kHeaderBytes;
  while (bytes.size() - at >= kRecordHeaderBytes) {
    const uint32_t n = ReadLe32(bytes.substr(at, 4));
    if (n == 0 || n > kMaxRecordBytes || bytes.size() - at - kRecordHeaderBytes < n) break;
    const absl::string_view payload = bytes.substr(at + kRecordHeaderBytes, n);
    if (bytes.substr(at + 4, 4) != Check(payload)) break;
    const size_t end = at + kRecordHeaderBytes + n;
    state.records.push_back({static_cast<int64_t>(at), static_cast<int64_t>(end)});
    at = end;
  }
  if (at < bytes.size()) {
    // A torn append (a crash mid-write, or a write that failed half-way): cut it off, or the
    // next append would land after it, unreadable.
    ScopedFd fd(::open(QueuePath(dir).c_str(), O_WRONLY | O_CLOEXEC));
    if (!fd.valid()) return ErrnoStatus(errno, QueuePath(dir));
    if (::ftruncate(fd.get(), static_cast<off_t>(at)) != 0 || ::fsync(fd.get()) != 0) {
      return ErrnoStatus(errno, absl::StrCat("truncating ", QueuePath(dir)));
    }
    state.bytes.resize(at);
  }
  state.sent_offset = ReadSentOffset(dir, state);
  while (state.first_unsent < state.records.size() &&
         state.records[state.first_unsent].offset < state.sent_offset) {
    ++state.first_unsent;
  }
  return state;
}

absl::Status MarkSent(const std::string& dir, uint64_t generation, int64_t end) {
  ScopedFd fd(::open(QueuePath(dir).c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) return ErrnoStatus(errno, QueuePath(dir));
  std::string header(kHeaderBytes, '\0');
  MD_ASSIGN_OR_RETURN(const size_t n,
                      PreadAll(fd.get(), header.data(), header.size(), 0, QueuePath(dir)));
  header.resize(n);
  // Rewritten since (a compaction): the batch is sent again from the new file.
  if (ParseHeader(header) != generation) return absl::OkStatus();
  return WriteFileAtomically(
      SentPath(dir), absl::StrCat(absl::Hex(generation, absl::kZeroPad16), " ", end, "\n"), 0600);
}

absl::string_view RecordPayload(const QueueState& state, const Record& record) {
  return absl::string_view(state.bytes)
      .substr(record.offset + kRecordHeaderBytes, record.end - record.offset - kRecordHeaderBytes);
}

absl::Status ValidateReport(const v1::StatusReport& report) {
  if (report.event() == v1::STATUS_EVENT_UNSPECIFIED || !v1::StatusEvent_IsValid(report.event())) {
    return InvalidArgument("event", "INVALID_EVENT", "a report needs an event");
  }
  MD_RETURN_IF_ERROR(ValidateId("tier", report.tier()));
  if (!report.channel().empty()) MD_RETURN_IF_ERROR(ValidateId("channel", report.channel()));
  if (!report.version().empty()) {
    MD_RETURN_IF_ERROR(ParseVersionName("version", report.version()).status());
  }
  if (!report.digest().empty()) MD_RETURN_IF_ERROR(ParseDigest("digest", report.digest()).status());
  if (!IsStatusReason(report.reason()) && !report.reason().empty()) {
    return InvalidArgument(
        "reason", "INVALID_REASON",
        absl::StrCat("reason \"", report.reason(), "\" is not UPPER_SNAKE of at most 64 bytes"));
  }
  if (report.platform() == v1::PLATFORM_UNSPECIFIED) {
    return InvalidArgument("platform", "MISSING_PLATFORM", "a report needs a platform");
  }
  if (report.arch() != v1::ARCH_ARM64 && report.arch() != v1::ARCH_X86_64) {
    return InvalidArgument("arch", "INVALID_ARCH", "a report's arch is arm64 or x86_64");
  }
  return absl::OkStatus();
}

}  // namespace report_internal

using report_internal::LoadQueue;
using report_internal::LockFile;
using report_internal::QueueState;

absl::StatusOr<std::unique_ptr<ReportQueue>> ReportQueue::Open(const std::string& dir,
                                                               int64_t max_bytes) {
  if (dir.empty()) return InvalidArgument("dir", "MISSING_DIR", "the report queue needs a dir");
  std::unique_ptr<ReportQueue> queue(new ReportQueue(dir + "/reports", max_bytes));
  MD_RETURN_IF_ERROR(MakeDirs(queue->dir_, 0700));
  MD_ASSIGN_OR_RETURN(ScopedFd lock, LockFile(queue->dir_ + "/lock", /*wait=*/true));
  MD_RETURN_IF_ERROR(LoadQueue(queue->dir_).status());
  return queue;
}

absl::Status ReportQueue::Append(const v1::StatusReport& report) {
  MD_RETURN_IF_ERROR(report_internal::ValidateReport(report));
  const std::string record = report_internal::EncodeRecord(report.SerializeAsString());
  const int64_t room = max_bytes_ - static_cast<int64_t>(report_internal::kHeaderBytes);
  if (static_cast<int64_t>(record.size()) > room) {
    return InvalidArgument("report", "REPORT_TOO_LARGE",
                           absl::StrCat("a report of ", record.size(),
                                        " bytes does not fit a queue of ", max_bytes_, " bytes"));
  }
  MD_ASSIGN_OR_RETURN(ScopedFd lock, LockFile(dir_ + "/lock", /*wait=*/true));
  MD_ASSIGN_OR_RETURN(QueueState state, LoadQueue(dir_));
  const std::string path = dir_ + "/queue";
  if (state.end() + static_cast<int64_t>(record.size()) <= max_bytes_) {
    ScopedFd fd(::open(path.c_str(), O_WRONLY | O_APPEND | O_CLOEXEC));
    if (!fd.valid()) return ErrnoStatus(errno, path);
    absl::Status written = WriteAll(fd.get(), record.data(), record.size());
    if (written.ok() && ::fdatasync(fd.get()) != 0) {
      written = ErrnoStatus(errno, absl::StrCat("fsync ", path));
    }
    // A part written stays a torn tail, which the next operation cuts off.
    if (!written.ok()) {
      [[maybe_unused]] const int rc = ::ftruncate(fd.get(), static_cast<off_t>(state.end()));
    }
    return written;
  }
  // Full: rewrite it with the newest unsent reports that fit next to this one (the sent ones
  // and the oldest go), under a new generation.
  int64_t budget = room - static_cast<int64_t>(record.size());
  size_t keep_from = state.records.size();
  while (keep_from > state.first_unsent) {
    const report_internal::Record& r = state.records[keep_from - 1];
    if (r.end - r.offset > budget) break;
    budget -= r.end - r.offset;
    --keep_from;
  }
  std::vector<absl::string_view> kept;
  for (size_t i = keep_from; i < state.records.size(); ++i) {
    const report_internal::Record& r = state.records[i];
    kept.push_back(absl::string_view(state.bytes).substr(r.offset, r.end - r.offset));
  }
  kept.push_back(record);
  return report_internal::WriteQueue(dir_, kept).status();
}

int64_t ReportQueue::size() const {
  auto lock = LockFile(dir_ + "/lock", /*wait=*/true);
  if (!lock.ok()) return -1;
  auto state = LoadQueue(dir_);
  if (!state.ok()) return -1;
  return static_cast<int64_t>(state->records.size() - state->first_unsent);
}

}  // namespace modeldist::agent
