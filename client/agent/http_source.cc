// ByteSource over HTTP(S) Range GETs, through common/http.
//
// libcurl hands the body to its write callback on the thread that runs the transfer, so with
// one thread the receive (kernel copies, TLS) and the sink's hashing ran in turn: a sync from
// an nginx mirror ran at 1.0x of `curl -o` followed by `openssl dgst` (docs/benchmarks.md,
// origins). The transfer now runs on a thread of its own and fills blocks up to
// kReadAheadBytes ahead of the sink, as the gRPC source does (grpc_source.cc); the price is one
// memcpy of each byte, small next to its SHA-256.
#include <atomic>
#include <deque>
#include <exception>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "client/agent/chunk_downloader.h"
#include "common/http/http.h"
#include "common/status.h"

namespace modeldist::agent {
namespace {

// Bytes received but not yet given to the sink, at most (plus one block).
constexpr int64_t kReadAheadBytes = 4 * 1024 * 1024;
// curl's pieces are small (16 KiB); the sink gets them gathered into blocks of this size.
constexpr size_t kBlockBytes = 256 * 1024;

// The blocks of one transfer, filled by the transfer's thread and taken by the sink's. Blocks
// are recycled: a fresh 256 KiB allocation per block is an mmap and munmap (above glibc's
// threshold) with its page faults, and under two threads the mmap lock contention cut a
// mirror sync to a third of its speed.
class BlockQueue {
 public:
  // The transfer's side: an empty block with room for kBlockBytes.
  std::string Fresh() {
    absl::MutexLock lock(&mu_);
    std::string block;
    if (!free_.empty()) {
      block = std::move(free_.back());
      free_.pop_back();
    }
    block.clear();
    block.reserve(kBlockBytes);
    return block;
  }
  // The consumer's side: a block it is done with.
  void Recycle(std::string block) {
    absl::MutexLock lock(&mu_);
    free_.push_back(std::move(block));
  }

  // The transfer's side. False when the consumer stopped: the transfer should end.
  bool Push(std::string block) {
    absl::MutexLock lock(&mu_);
    mu_.Await(absl::Condition(this, &BlockQueue::HasRoomOrStopped));
    if (stopped_) return false;
    queued_bytes_ += static_cast<int64_t>(block.size());
    blocks_.push_back(std::move(block));
    return true;
  }
  // The transfer ended with `status` (after its last Push).
  void End(absl::Status status) {
    absl::MutexLock lock(&mu_);
    ended_ = true;
    end_status_ = std::move(status);
  }

  // The consumer's side: the next block, or false once the transfer ended and every block
  // was taken (EndStatus then says how it ended).
  bool Next(std::string* block) {
    absl::MutexLock lock(&mu_);
    mu_.Await(absl::Condition(this, &BlockQueue::HasBlockOrEnded));
    if (blocks_.empty()) return false;
    *block = std::move(blocks_.front());
    blocks_.pop_front();
    queued_bytes_ -= static_cast<int64_t>(block->size());
    return true;
  }
  absl::Status EndStatus() {
    absl::MutexLock lock(&mu_);
    return end_status_;
  }
  // The consumer stops taking blocks (its sink failed): Push returns false from now on.
  void Stop() {
    absl::MutexLock lock(&mu_);
    stopped_ = true;
  }

 private:
  bool HasRoomOrStopped() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return queued_bytes_ < kReadAheadBytes || stopped_;
  }
  bool HasBlockOrEnded() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return !blocks_.empty() || ended_;
  }

  absl::Mutex mu_;
  std::deque<std::string> blocks_ ABSL_GUARDED_BY(mu_);
  std::vector<std::string> free_ ABSL_GUARDED_BY(mu_);
  int64_t queued_bytes_ ABSL_GUARDED_BY(mu_) = 0;
  bool ended_ ABSL_GUARDED_BY(mu_) = false;
  bool stopped_ ABSL_GUARDED_BY(mu_) = false;
  absl::Status end_status_ ABSL_GUARDED_BY(mu_);
};

class HttpSource final : public ByteSource {
 public:
  HttpSource(std::string url, std::string ca_file)
      : url_(std::move(url)), ca_file_(std::move(ca_file)), where_(http::RedactUrl(url_)) {}

  absl::Status Read(const std::string& digest, int64_t offset, int64_t limit,
                    const std::function<absl::Status(absl::string_view)>& sink) override {
    cancel_.store(false);
    BlockQueue queue;
    std::thread transfer;
    try {
      transfer = std::thread([&] { Transfer(offset, limit, &queue); });
    } catch (const std::exception& e) {
      return MakeError(absl::StatusCode::kResourceExhausted, "THREAD_START_FAILED",
                       absl::StrCat("cannot start the receiving thread: ", e.what()));
    }
    absl::Status sink_status;
    std::string block;
    while (queue.Next(&block)) {
      sink_status = sink(block);
      queue.Recycle(std::move(block));
      if (!sink_status.ok()) break;
    }
    if (!sink_status.ok()) {
      // The transfer ends at its next piece, or within a second if none comes.
      queue.Stop();
      cancel_.store(true);
    }
    transfer.join();
    return sink_status.ok() ? queue.EndStatus() : sink_status;
  }

  void Cancel() override { cancel_.store(true); }

  std::string Describe() const override { return where_; }

 private:
  // Runs on the transfer's thread: the GET, its pieces gathered into blocks for `queue`.
  void Transfer(int64_t offset, int64_t limit, BlockQueue* queue) {
    http::HttpRequest request;
    request.url = url_;
    request.ca_file = ca_file_;
    request.follow_redirects = true;  // CDNs redirect to edge or signed URLs
    request.user_agent = "modeldist-agent";
    request.cancel = &cancel_;
    std::string block = queue->Fresh();
    auto gather = [&](absl::string_view piece) -> absl::Status {
      block.append(piece.data(), piece.size());
      if (block.size() < kBlockBytes) return absl::OkStatus();
      if (!queue->Push(std::exchange(block, queue->Fresh()))) {
        return MakeError(absl::StatusCode::kCancelled, "READ_STOPPED",
                         "the downloader stopped reading");
      }
      return absl::OkStatus();
    };
    // A server that ignores Range for a later offset is refused (RANGE_IGNORED), so the
    // next source is tried; the chunk checks catch anything else.
    int64_t delivered = 0;
    absl::Status status =
        http::GetRange(where_, offset, limit > 0 ? limit : -1,
                       http::PlainRangeRequest(std::move(request), where_), gather, &delivered);
    // What arrived before an error is still good to verify (a resume starts after it).
    if (!block.empty()) (void)queue->Push(std::move(block));
    queue->End(std::move(status));
  }

  const std::string url_;
  const std::string ca_file_;
  const std::string where_;
  std::atomic<bool> cancel_{false};
};

}  // namespace

std::unique_ptr<ByteSource> NewHttpSource(const std::string& url, const std::string& ca_file) {
  return std::make_unique<HttpSource>(url, ca_file);
}

}  // namespace modeldist::agent
