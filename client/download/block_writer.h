// File: block_writer.h
//
// Writes a stream of bytes into a file on worker threads, so that the caller (which received
// and hashed them) can go on with the next ones while the disk works.
//
// The caller copies each piece into one of kBlocks fixed, page-aligned blocks (reused: no
// allocation per piece) and waits for a free block when the disk lags, so memory stays at
// kBlocks * Block::kCapacity (8 MiB) whatever the file size. kWorkers threads write the full
// blocks, so that that many writes are in flight at the device: a direct write returns only
// once the device has the bytes, and one 256 KiB write at a time left a loaded disk idle
// between requests (docs/benchmarks.md, agent). Checkpoints queued between the blocks run, in
// order and one at a time, once every byte queued before them is written (the agent moves its
// journal there).
//
// Blocks are written with O_DIRECT where the file system allows it (a second descriptor): the
// bytes go from the block to the disk, with no copy into the page cache, no dirty pages to flush
// at the end, and no eviction of the rest of the page cache by a model that may be larger than
// RAM. On the 2-vCPU CI VM a buffered write of 1 GiB cost 0.3-3 CPU-s (page-cache allocation)
// and its fsync 0.5-1.5 s, while direct writes ran at the disk's 1.6 GB/s. Blocks that are not
// 4 KiB-aligned (a file's tail, the first block of a stream resumed mid-way, which ends at the
// next kCapacity boundary so that the rest are aligned) and file systems without O_DIRECT (tmpfs)
// use the caller's ordinary descriptor; so does every block after a direct write is refused
// with EINVAL (a device that needs a larger alignment). With `writeback`, buffered writes have
// their writeback started at once and waited for a few blocks later, so a final fsync finds
// little left to do.
#ifndef MODELDIST_CLIENT_DOWNLOAD_BLOCK_WRITER_H_
#define MODELDIST_CLIENT_DOWNLOAD_BLOCK_WRITER_H_

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "common/file_util.h"
#include "common/fs.h"

namespace modeldist::client {

// A fixed-size, page-aligned buffer (O_DIRECT needs aligned memory), a slice of the writer's
// arena.
class Block {
 public:
  // 1 MiB: a quarter of the requests (and of the per-request CPU: page pinning, the virtio
  // notification) of 256 KiB blocks, for the same bytes.
  static constexpr size_t kCapacity = 1024 * 1024;
  static constexpr size_t kAlignment = 4096;

  // `data`: kCapacity bytes aligned to kAlignment, owned by the caller.
  explicit Block(char* data) : data_(data) {}
  Block(const Block&) = delete;
  Block& operator=(const Block&) = delete;

  const char* data() const { return data_; }
  size_t size() const { return size_; }
  bool full() const { return size_ == limit_; }
  // Empties the block and lets it take `limit` (<= kCapacity) bytes.
  void Reset(size_t limit) {
    size_ = 0;
    limit_ = limit;
  }
  // Appends as much of `bytes` as fits; returns how much.
  size_t Append(absl::string_view bytes);

 private:
  char* const data_;
  size_t size_ = 0;
  size_t limit_ = kCapacity;
};

class BlockWriter {
 public:
  // Starts a writer into `fd` (an open, writable descriptor of `path`, owned by the caller and
  // kept open until Drain returns; O_DIRECT is used only if `path` still names the file `fd`
  // refers to). `writeback`: start and pace writeback of buffered writes (for callers that
  // fsync at the end). The writes go through `fs` (common/fs.h; tests make them fail).
  // RESOURCE_EXHAUSTED when its blocks or its thread cannot be had.
  static absl::StatusOr<std::unique_ptr<BlockWriter>> Start(int fd, std::string path,
                                                            bool writeback, Fs& fs = RealFs());
  ~BlockWriter();
  BlockWriter(const BlockWriter&) = delete;
  BlockWriter& operator=(const BlockWriter&) = delete;

  // Queues a copy of `data` for writing at `offset`. Blocks while every block is in use.
  // Returns the workers' first error; nothing is queued after one. FAILED_PRECONDITION after
  // Drain.
  absl::Status Append(int64_t offset, absl::string_view data);

  // Runs `then` on a worker once every byte queued so far is written (checkpoints run in the
  // order queued, never two at once); its error becomes the writer's error. After Drain
  // (everything written) it runs at once, on the caller's thread.
  void Checkpoint(std::function<absl::Status()> then);

  // Waits until every byte queued so far (the block being filled included) is written, and
  // returns the first error. A caller about to queue bytes for a range it queued before (a
  // refetched chunk) calls it first: the workers write blocks in any order, so the old bytes
  // could otherwise land over the new ones.
  absl::Status Flush();

  // The first error so far, without waiting.
  absl::Status error();

  // Writes everything queued, stops the workers and returns the first error. Idempotent.
  absl::Status Drain();

  // Whether aligned blocks go to the disk with O_DIRECT (false on file systems without it, or
  // once a direct write was refused).
  bool direct() const { return direct_fd_.valid() && !direct_refused_.load(); }
  // Bytes written so far with O_DIRECT (the rest went through the page cache).
  int64_t direct_bytes() const { return direct_bytes_.load(); }

 private:
  BlockWriter(int fd, std::string path, bool writeback, Fs& fs);

  static constexpr size_t kBlocks = 8;
  static constexpr size_t kWorkers = 2;
  // A full block to write at `offset`; `seq` numbers the blocks in the order queued.
  struct Item {
    Block* block = nullptr;
    int64_t offset = 0;
    uint64_t seq = 0;
  };
  // Runs once every block numbered below `before` is written.
  struct PendingCheckpoint {
    uint64_t before = 0;
    std::function<absl::Status()> then;
  };

  bool HasFreeBlockOrFailed() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return !free_.empty() || !error_.ok();
  }
  bool CheckpointReady() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return !checkpoints_.empty() && !running_checkpoint_ &&
           checkpoints_.front().before <= written_below_;
  }
  bool FlushedOrFailed() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return written_below_ >= flush_target_ || !error_.ok();
  }
  bool HasWorkOrClosed() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return !queue_.empty() || CheckpointReady() || closed_;
  }
  void Submit();
  void Run();
  // Makes `status` the writer's error unless it is OK or there is one already.
  void Fail(const absl::Status& status) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Records block `seq` as written (or dropped after an error) and returns it to free_.
  void Finished(const Item& item) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status Write(const Block& block, int64_t offset);
  // Writes with O_DIRECT; false (nothing written) when the file system refuses it.
  absl::StatusOr<bool> TryWriteDirect(const Block& block, int64_t offset);
  void StartWriteback(int64_t offset, int64_t length);

  const int fd_;
  Fs& fs_;
  const ScopedFd direct_fd_;  // invalid where O_DIRECT is not supported
  std::atomic<bool> direct_refused_{false};
  std::atomic<int64_t> direct_bytes_{0};
  const std::string path_;
  const bool writeback_;
  // The blocks' memory, in one piece aligned for huge pages (see the constructor).
  std::unique_ptr<char, void (*)(void*)> arena_;
  std::deque<Block> storage_;
  // The caller's block being filled (not in free_ or queue_), and its file offset.
  Block* current_ = nullptr;
  int64_t current_offset_ = 0;
  // The last kWritebackLag buffered writes whose writeback was started.
  static constexpr size_t kWritebackLag = 16;
  absl::Mutex writeback_mu_;
  std::pair<int64_t, int64_t> started_[kWritebackLag] ABSL_GUARDED_BY(writeback_mu_) = {};
  size_t writebacks_ ABSL_GUARDED_BY(writeback_mu_) = 0;

  absl::Mutex mu_;
  std::vector<Block*> free_ ABSL_GUARDED_BY(mu_);
  std::deque<Item> queue_ ABSL_GUARDED_BY(mu_);
  std::deque<PendingCheckpoint> checkpoints_ ABSL_GUARDED_BY(mu_);
  uint64_t next_seq_ ABSL_GUARDED_BY(mu_) = 0;
  // Every block numbered below this is written; `done_` holds the ones above it that are too
  // (the workers finish out of order).
  uint64_t written_below_ ABSL_GUARDED_BY(mu_) = 0;
  // What Flush waits for: every block numbered below this written.
  uint64_t flush_target_ ABSL_GUARDED_BY(mu_) = 0;
  std::set<uint64_t> done_ ABSL_GUARDED_BY(mu_);
  bool running_checkpoint_ ABSL_GUARDED_BY(mu_) = false;
  bool closed_ ABSL_GUARDED_BY(mu_) = false;
  absl::Status error_ ABSL_GUARDED_BY(mu_);
  std::atomic<bool> failed_{false};  // error_ is set
  std::vector<std::thread> workers_;
};

}  // namespace modeldist::client

#endif  // MODELDIST_CLIENT_DOWNLOAD_BLOCK_WRITER_H_
