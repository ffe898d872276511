#include "common/http/read_ahead_body.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/status.h"

namespace modeldist::http {

ReadAheadBody::ReadAheadBody(BodyReader source, int64_t length,
                             std::function<void(absl::string_view block)> on_block, Options options)
    : source_(std::move(source)),
      length_(length),
      on_block_(std::move(on_block)),
      options_(options),
      thread_([this] { Run(); }) {}

ReadAheadBody::~ReadAheadBody() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  thread_.join();
}

BodyReader ReadAheadBody::Reader() {
  return [this](int64_t offset, char* buf, size_t size) { return Read(offset, buf, size); };
}

void ReadAheadBody::Run() {
  for (int64_t offset = 0; offset < length_;) {
    std::string block;
    {
      // A block to fill: a spare one, or a new one while fewer than depth exist.
      absl::MutexLock lock(&mu_);
      auto room = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return stopping_ || !spare_.empty() || blocks_ < options_.depth;
      };
      mu_.Await(absl::Condition(&room));
      if (stopping_) return;
      if (!spare_.empty()) {
        block = std::move(spare_.back());
        spare_.pop_back();
      } else {
        ++blocks_;
      }
    }
    const size_t want =
        static_cast<size_t>(std::min<int64_t>(options_.block_bytes, length_ - offset));
    block.resize(want);
    absl::Status failed;
    for (size_t filled = 0; filled < want && failed.ok();) {
      absl::StatusOr<size_t> got =
          source_(offset + static_cast<int64_t>(filled), block.data() + filled, want - filled);
      if (!got.ok()) {
        failed = got.status();
      } else if (*got == 0 || *got > want - filled) {
        failed = MakeError(absl::StatusCode::kFailedPrecondition, "HTTP_BODY_SHORT",
                           "the file to upload ended before the body did");
      } else {
        filled += *got;
      }
    }
    if (failed.ok() && on_block_) on_block_(block);
    absl::MutexLock lock(&mu_);
    if (!failed.ok()) {
      error_ = failed;
      return;
    }
    ready_.push_back(std::move(block));
    offset += static_cast<int64_t>(want);
  }
}

absl::StatusOr<size_t> ReadAheadBody::Read(int64_t offset, char* buf, size_t size) {
  absl::MutexLock lock(&mu_);
  if (offset != position_) {
    return MakeError(absl::StatusCode::kUnavailable, "HTTP_BODY_REWOUND",
                     absl::StrCat("the body was asked for at ", offset, " after ", position_,
                                  " bytes; it is read once, in order: send it again"));
  }
  if (size == 0 || position_ >= length_) return 0;
  auto readable = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return !ready_.empty() || !error_.ok();
  };
  mu_.Await(absl::Condition(&readable));
  if (ready_.empty()) return error_;
  std::string& front = ready_.front();
  const size_t n = std::min(size, front.size() - front_used_);
  std::copy_n(front.data() + front_used_, n, buf);
  front_used_ += n;
  position_ += static_cast<int64_t>(n);
  if (front_used_ == front.size()) {
    spare_.push_back(std::move(front));
    ready_.pop_front();
    front_used_ = 0;
  }
  return n;
}

}  // namespace modeldist::http
