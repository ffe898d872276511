#include "storage/background_appender.h"

#include <utility>

namespace modeldist::storage {

BackgroundAppender::BackgroundAppender(AppendFn append) : append_(std::move(append)) {
  thread_ = std::thread([this] { Run(); });
}

BackgroundAppender::~BackgroundAppender() {
  {
    absl::MutexLock lock(&mu_);
    stop_ = true;
  }
  thread_.join();
}

absl::Status BackgroundAppender::Append(int64_t offset, std::string* data) {
  absl::MutexLock lock(&mu_);
  auto room = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return !error_.ok() || queue_.size() < kMaxQueued;
  };
  mu_.Await(absl::Condition(&room));
  if (!error_.ok()) return error_;
  Item& item = queue_.emplace_back();
  item.offset = offset;
  if (!spare_.empty()) {
    item.data = std::move(spare_.back());
    spare_.pop_back();
  }
  item.data.swap(*data);
  return absl::OkStatus();
}

absl::Status BackgroundAppender::Drain() {
  absl::MutexLock lock(&mu_);
  auto idle = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return queue_.empty() && !appending_; };
  mu_.Await(absl::Condition(&idle));
  return error_;
}

void BackgroundAppender::Run() {
  absl::MutexLock lock(&mu_);
  for (;;) {
    auto work = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return stop_ || !queue_.empty(); };
    mu_.Await(absl::Condition(&work));
    // Stopping still appends what was queued: the destructor promises it.
    if (queue_.empty()) return;
    Item item = std::move(queue_.front());
    queue_.pop_front();
    if (error_.ok()) {
      appending_ = true;
      mu_.Unlock();
      absl::Status status = append_(item.offset, item.data);
      mu_.Lock();
      appending_ = false;
      if (!status.ok() && error_.ok()) error_ = std::move(status);
    }
    item.data.clear();  // keeps its capacity
    spare_.push_back(std::move(item.data));
  }
}

}  // namespace modeldist::storage
