#include "services/upload_limits.h"

#include <vector>

#include "absl/strings/str_cat.h"
#include "common/status.h"
#include "services/credentials.h"

namespace modeldist::services {

UploadLimiter::Slot::~Slot() { limiter_->Release(stream_); }

void UploadLimiter::Slot::Touch() {
  absl::MutexLock lock(&limiter_->mu_);
  stream_->last_activity = limiter_->options_.now();
}

absl::StatusOr<std::unique_ptr<UploadLimiter::Slot>> UploadLimiter::Admit(
    grpc::ServerContext* context) {
  std::string peer = PeerAddress(context->peer());
  absl::MutexLock lock(&mu_);
  int& open_by_peer = per_peer_[peer];
  if (open_by_peer >= options_.max_per_peer) {
    if (open_by_peer == 0) per_peer_.erase(peer);
    return MakeError(absl::StatusCode::kResourceExhausted, kReasonTooManyUploads,
                     absl::StrCat(peer, " has ", open_by_peer, " upload streams open, at most ",
                                  options_.max_per_peer,
                                  " at once per client address: finish or close one first"));
  }
  ++open_by_peer;
  streams_.push_front(Stream{context, std::move(peer), options_.now()});
  return std::unique_ptr<Slot>(new Slot(this, streams_.begin()));
}

void UploadLimiter::Release(std::list<Stream>::iterator stream) {
  absl::MutexLock lock(&mu_);
  auto it = per_peer_.find(stream->peer);
  if (it != per_peer_.end() && --it->second <= 0) per_peer_.erase(it);
  streams_.erase(stream);
}

int UploadLimiter::CancelIdle() {
  absl::MutexLock lock(&mu_);
  const absl::Time now = options_.now();
  int cancelled = 0;
  for (Stream& stream : streams_) {
    if (stream.cancelled || now - stream.last_activity < options_.idle_timeout) continue;
    // The handler's blocked Read returns false; it keeps what was committed and ends.
    stream.context->TryCancel();
    stream.cancelled = true;
    ++cancelled;
  }
  return cancelled;
}

int UploadLimiter::open() const {
  absl::MutexLock lock(&mu_);
  return static_cast<int>(streams_.size());
}

}  // namespace modeldist::services
