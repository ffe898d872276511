#include "client/download/block_writer.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <new>

#include "absl/strings/str_cat.h"
#include "common/status.h"

namespace modeldist::client {

size_t Block::Append(absl::string_view bytes) {
  const size_t n = std::min(bytes.size(), limit_ - size_);
  std::memcpy(data_ + size_, bytes.data(), n);
  size_ += n;
  return n;
}

namespace {

// The arena's alignment: a transparent huge page on x86-64 and arm64 (4 KiB base pages).
constexpr size_t kHugePageBytes = 2 * 1024 * 1024;

// A second, O_DIRECT descriptor of the file `fd` refers to, opened by `path`; invalid where the
// file system has no O_DIRECT or `path` now names another file (renamed or replaced meanwhile).
ScopedFd OpenDirectTwin(int fd, const std::string& path, Fs& fs) {
  ScopedFd direct(fs.Open(path, O_WRONLY | O_DIRECT | O_CLOEXEC));
  struct stat a {};
  struct stat b {};
  if (!direct.valid() || ::fstat(fd, &a) != 0 || ::fstat(direct.get(), &b) != 0 ||
      a.st_dev != b.st_dev || a.st_ino != b.st_ino) {
    return ScopedFd();
  }
  return direct;
}

}  // namespace

BlockWriter::BlockWriter(int fd, std::string path, bool writeback, Fs& fs)
    : fd_(fd),
      fs_(fs),
      direct_fd_(OpenDirectTwin(fd, path, fs)),
      path_(std::move(path)),
      writeback_(writeback),
      arena_(static_cast<char*>(std::aligned_alloc(kHugePageBytes, kBlocks * Block::kCapacity)),
             std::free) {
  if (arena_ == nullptr) throw std::bad_alloc();
#ifdef MADV_HUGEPAGE
  // Where transparent huge pages are on request (the kernel's `madvise` setting), a block is
  // physically contiguous: pinning it for a direct write takes one huge page instead of 256
  // pages, and it always fits one device request (virtio-blk takes at most 254 segments). On
  // the 2-vCPU VM this took 0.15-0.3 CPU-s per GiB off a sync. A hint: errors change nothing.
  ::madvise(arena_.get(), kBlocks * Block::kCapacity, MADV_HUGEPAGE);
#endif
  for (size_t i = 0; i < kBlocks; ++i) {
    storage_.emplace_back(arena_.get() + i * Block::kCapacity);
    free_.push_back(&storage_.back());
  }
}

absl::StatusOr<std::unique_ptr<BlockWriter>> BlockWriter::Start(int fd, std::string path,
                                                                bool writeback, Fs& fs) {
  // The only exceptions here: allocating the blocks, and starting the threads (the ones that
  // did start are joined by the destructor's Drain).
  std::unique_ptr<BlockWriter> writer;
  try {
    writer.reset(new BlockWriter(fd, std::move(path), writeback, fs));
    writer->workers_.reserve(kWorkers);
    for (size_t i = 0; i < kWorkers; ++i) {
      writer->workers_.emplace_back([w = writer.get()] { w->Run(); });
    }
    return writer;
  } catch (const std::exception& e) {
    return absl::ResourceExhaustedError(absl::StrCat("cannot start the block writer (", kBlocks,
                                                     " x ", Block::kCapacity, " bytes and ",
                                                     kWorkers, " threads): ", e.what()));
  }
}

BlockWriter::~BlockWriter() { (void)Drain(); }

absl::Status BlockWriter::Append(int64_t offset, absl::string_view data) {
  while (!data.empty()) {
    if (current_ != nullptr &&
        (offset != current_offset_ + static_cast<int64_t>(current_->size()) || current_->full())) {
      Submit();
    }
    if (current_ == nullptr) {
      absl::MutexLock lock(&mu_);
      if (closed_) return absl::FailedPreconditionError("BlockWriter::Append after Drain");
      mu_.Await(absl::Condition(this, &BlockWriter::HasFreeBlockOrFailed));
      if (!error_.ok()) return error_;
      current_ = free_.back();
      free_.pop_back();
      // A block starting off a kCapacity boundary (a resumed stream) ends at the next one, so
      // that the blocks after it are aligned for O_DIRECT.
      current_->Reset(Block::kCapacity - static_cast<size_t>(offset % Block::kCapacity));
      current_offset_ = offset;
    }
    const size_t n = current_->Append(data);
    data.remove_prefix(n);
    offset += static_cast<int64_t>(n);
  }
  // Append runs for every piece received: no lock unless a worker failed.
  return failed_.load() ? error() : absl::OkStatus();
}

void BlockWriter::Checkpoint(std::function<absl::Status()> then) {
  Submit();
  absl::MutexLock lock(&mu_);
  if (!closed_) {
    checkpoints_.push_back(PendingCheckpoint{next_seq_, std::move(then)});
    return;
  }
  // Drained: every byte is written and the workers are gone.
  if (error_.ok()) Fail(then());
}

absl::Status BlockWriter::Flush() {
  Submit();
  absl::MutexLock lock(&mu_);
  flush_target_ = next_seq_;
  mu_.Await(absl::Condition(this, &BlockWriter::FlushedOrFailed));
  return error_;
}

absl::Status BlockWriter::error() {
  absl::MutexLock lock(&mu_);
  return error_;
}

absl::Status BlockWriter::Drain() {
  Submit();
  {
    absl::MutexLock lock(&mu_);
    closed_ = true;
  }
  for (std::thread& worker : workers_) {
    if (worker.joinable()) worker.join();
  }
  absl::MutexLock lock(&mu_);
  return error_;
}

void BlockWriter::Submit() {
  if (current_ == nullptr) return;
  absl::MutexLock lock(&mu_);
  queue_.push_back(Item{current_, current_offset_, next_seq_++});
  current_ = nullptr;
}

void BlockWriter::Fail(const absl::Status& status) {
  if (status.ok() || !error_.ok()) return;
  error_ = status;
  failed_ = true;
}

void BlockWriter::Finished(const Item& item) {
  free_.push_back(item.block);
  done_.insert(item.seq);
  while (!done_.empty() && *done_.begin() == written_below_) {
    done_.erase(done_.begin());
    ++written_below_;
  }
}

void BlockWriter::Run() {
  absl::MutexLock lock(&mu_);
  for (;;) {
    mu_.Await(absl::Condition(this, &BlockWriter::HasWorkOrClosed));
    if (CheckpointReady()) {
      PendingCheckpoint checkpoint = std::move(checkpoints_.front());
      checkpoints_.pop_front();
      if (!error_.ok()) continue;  // after an error, checkpoints are dropped
      running_checkpoint_ = true;
      mu_.Unlock();
      absl::Status status = checkpoint.then();
      mu_.Lock();
      running_checkpoint_ = false;
      Fail(status);
      continue;
    }
    if (queue_.empty()) {
      // Closed, nothing left to write, and no checkpoint ready: any checkpoint still queued
      // waits for a block another worker is writing, and that worker runs it.
      return;
    }
    const Item item = queue_.front();
    queue_.pop_front();
    absl::Status status;
    if (error_.ok()) {  // after an error, blocks are only recycled
      mu_.Unlock();
      status = Write(*item.block, item.offset);
      mu_.Lock();
    }
    Fail(status);
    Finished(item);
  }
}

absl::Status BlockWriter::Write(const Block& block, int64_t offset) {
  const bool aligned = offset % Block::kAlignment == 0 && block.size() % Block::kAlignment == 0;
  if (aligned && direct()) {
    MD_ASSIGN_OR_RETURN(bool written, TryWriteDirect(block, offset));
    if (written) return absl::OkStatus();
  }
  MD_RETURN_IF_ERROR(PwriteAll(fd_, block.data(), block.size(), offset, path_, fs_));
  if (writeback_) StartWriteback(offset, static_cast<int64_t>(block.size()));
  return absl::OkStatus();
}

absl::StatusOr<bool> BlockWriter::TryWriteDirect(const Block& block, int64_t offset) {
  ssize_t n;
  do {
    n = fs_.Pwrite(direct_fd_.get(), block.data(), block.size(), offset);
  } while (n < 0 && errno == EINTR);
  if (n < 0 && errno == EINVAL) {
    // The device wants a larger alignment than kAlignment: buffered from now on.
    direct_refused_ = true;
    return false;
  }
  if (n < 0) return ErrnoStatus(errno, absl::StrCat("write ", path_));
  direct_bytes_ += n;
  if (static_cast<size_t>(n) < block.size()) {  // short (e.g. the disk filled): finish buffered
    MD_RETURN_IF_ERROR(PwriteAll(fd_, block.data() + n, block.size() - static_cast<size_t>(n),
                                 offset + n, path_, fs_));
  }
  return true;
}

void BlockWriter::StartWriteback(int64_t offset, int64_t length) {
#ifdef __linux__
  absl::MutexLock lock(&writeback_mu_);
  // Hints: errors are ignored here, the caller's final fsync reports any I/O error.
  ::sync_file_range(fd_, offset, length, SYNC_FILE_RANGE_WRITE);
  started_[writebacks_ % kWritebackLag] = {offset, length};
  ++writebacks_;
  if (writebacks_ >= kWritebackLag) {
    const auto [old_offset, old_length] = started_[writebacks_ % kWritebackLag];
    ::sync_file_range(
        fd_, old_offset, old_length,
        SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WRITE | SYNC_FILE_RANGE_WAIT_AFTER);
  }
#else
  (void)offset;
  (void)length;
#endif
}

}  // namespace modeldist::client
