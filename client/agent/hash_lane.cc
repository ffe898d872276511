#include "client/agent/hash_lane.h"

#include <algorithm>
#include <cstring>
#include <exception>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/chunk_chain.h"

namespace modeldist::agent {

HashLane::HashLane() : ring_(new char[kRingBytes]) {}

absl::StatusOr<std::unique_ptr<HashLane>> HashLane::Start() {
  std::unique_ptr<HashLane> lane(new HashLane());
  try {
    lane->thread_ = std::thread([raw = lane.get()] { raw->Run(); });
  } catch (const std::exception& e) {
    return absl::ResourceExhaustedError(
        absl::StrCat("cannot start the hashing thread: ", e.what()));
  }
  return lane;
}

HashLane::~HashLane() {
  {
    absl::MutexLock lock(&mu_);
    stop_ = true;
  }
  if (thread_.joinable()) thread_.join();
}

void HashLane::Begin(Sha256 start, bool last) {
  absl::MutexLock lock(&mu_);
  hash_ = std::move(start);
  last_ = last;
  added_ = 0;
  hashed_ = 0;
  ended_ = false;
  abandon_ = false;
  done_ = false;
  active_ = true;
}

void HashLane::Add(absl::string_view bytes) {
  while (!bytes.empty()) {
    int64_t at = 0;
    size_t n = 0;
    {
      absl::MutexLock lock(&mu_);
      mu_.Await(absl::Condition(this, &HashLane::HasRoom));
      at = added_ % kRingBytes;
      n = static_cast<size_t>(std::min({static_cast<int64_t>(bytes.size()),
                                        kRingBytes - (added_ - hashed_), kRingBytes - at}));
    }
    // The thread reads only [hashed_, added_): the bytes copied here are not yet its.
    std::memcpy(ring_.get() + at, bytes.data(), n);
    absl::MutexLock lock(&mu_);
    added_ += static_cast<int64_t>(n);
    bytes.remove_prefix(n);
  }
}

void HashLane::End() {
  absl::MutexLock lock(&mu_);
  ended_ = true;
}

std::string HashLane::Wait() {
  absl::MutexLock lock(&mu_);
  mu_.Await(absl::Condition(this, &HashLane::Done));
  active_ = false;
  return std::move(result_);
}

void HashLane::Abandon() {
  if (!active_) return;
  absl::MutexLock lock(&mu_);
  abandon_ = true;
  ended_ = true;
  mu_.Await(absl::Condition(this, &HashLane::Done));
  active_ = false;
}

void HashLane::Run() {
  mu_.Lock();
  for (;;) {
    mu_.Await(absl::Condition(this, &HashLane::HasWork));
    if (stop_) break;
    if (hashed_ < added_ && !abandon_) {
      const int64_t at = hashed_ % kRingBytes;
      const int64_t n = std::min({added_ - hashed_, kRingBytes - at, kStepBytes});
      // Unlocked: the caller only appends past added_, and Begin/Abandon wait for done_.
      mu_.Unlock();
      hash_.Update(ring_.get() + at, static_cast<size_t>(n));
      mu_.Lock();
      hashed_ += n;
      continue;
    }
    result_ = abandon_ ? std::string() : EndChunkHash(&hash_, last_);
    done_ = true;
  }
  mu_.Unlock();
}

}  // namespace modeldist::agent
