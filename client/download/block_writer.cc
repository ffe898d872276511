#include "client/download/block_writer.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <new>

#include "common/status.h"

namespace modeldist::client {

Block::Block() : data_(static_cast<char*>(std::aligned_alloc(kAlignment, kCapacity))) {
  if (data_ == nullptr) throw std::bad_alloc();
}

Block::~Block() { std::free(data_); }

size_t Block::Append(absl::string_view bytes) {
  const size_t n = std::min(bytes.size(), kCapacity - size_);
  std::memcpy(data_ + size_, bytes.data(), n);
  size_ += n;
  return n;
}

BlockWriter::BlockWriter(int fd, std::string path, bool writeback)
    : fd_(fd),
      direct_fd_(::open(path.c_str(), O_WRONLY | O_DIRECT | O_CLOEXEC)),
      path_(std::move(path)),
      writeback_(writeback),
      storage_(kBlocks) {
  for (Block& block : storage_) free_.push_back(&block);
  worker_ = std::thread([this] { Run(); });
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
      mu_.Await(absl::Condition(this, &BlockWriter::HasFreeBlockOrFailed));
      if (!error_.ok()) return error_;
      current_ = free_.back();
      free_.pop_back();
      current_->clear();
      current_offset_ = offset;
    }
    const size_t n = current_->Append(data);
    data.remove_prefix(n);
    offset += static_cast<int64_t>(n);
  }
  return error();
}

void BlockWriter::Checkpoint(std::function<absl::Status()> then) {
  Submit();
  absl::MutexLock lock(&mu_);
  queue_.push_back(Item{nullptr, 0, std::move(then)});
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
  if (worker_.joinable()) worker_.join();
  absl::MutexLock lock(&mu_);
  return error_;
}

void BlockWriter::Submit() {
  if (current_ == nullptr) return;
  absl::MutexLock lock(&mu_);
  queue_.push_back(Item{current_, current_offset_, nullptr});
  current_ = nullptr;
}

void BlockWriter::Run() {
  for (;;) {
    Item item;
    bool failed;
    {
      absl::MutexLock lock(&mu_);
      mu_.Await(absl::Condition(this, &BlockWriter::HasWorkOrClosed));
      if (queue_.empty()) return;  // closed and drained
      item = std::move(queue_.front());
      queue_.pop_front();
      failed = !error_.ok();
    }
    absl::Status status;
    if (!failed) {  // after an error, blocks are only recycled
      status = item.block != nullptr ? Write(*item.block, item.offset) : item.then();
    }
    absl::MutexLock lock(&mu_);
    if (!status.ok() && error_.ok()) error_ = status;
    if (item.block != nullptr) free_.push_back(item.block);
  }
}

absl::Status BlockWriter::Write(const Block& block, int64_t offset) {
  const bool aligned = offset % Block::kAlignment == 0 && block.size() % Block::kAlignment == 0;
  if (direct_fd_.valid() && aligned) {
    return PwriteAll(direct_fd_.get(), block.data(), block.size(), offset, path_);
  }
  MD_RETURN_IF_ERROR(PwriteAll(fd_, block.data(), block.size(), offset, path_));
  if (writeback_) StartWriteback(offset, static_cast<int64_t>(block.size()));
  return absl::OkStatus();
}

void BlockWriter::StartWriteback(int64_t offset, int64_t length) {
#ifdef __linux__
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
