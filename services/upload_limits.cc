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
    grpc::ServerContext* context, absl::string_view credential) {
  std::string peer = PeerAddress(context->peer());
  absl::MutexLock lock(&mu_);
  auto by_peer = per_peer_.find(peer);
  const int open_by_peer = by_peer == per_peer_.end() ? 0 : by_peer->second;
  if (open_by_peer >= options_.max_per_peer) {
    return MakeError(absl::StatusCode::kResourceExhausted, kReasonTooManyUploads,
                     absl::StrCat(peer, " has ", open_by_peer, " upload streams open, at most ",
                                  options_.max_per_peer,
                                  " at once per client address: finish or close one first"),
                     {{"limit", "max-uploads-per-client"}});
  }
  auto by_credential = per_credential_.find(credential);
  const int open_by_credential = by_credential == per_credential_.end() ? 0 : by_credential->second;
  if (open_by_credential >= options_.max_per_credential) {
    return MakeError(absl::StatusCode::kResourceExhausted, kReasonTooManyUploads,
                     absl::StrCat("credential \"", credential, "\" has ", open_by_credential,
                                  " upload streams open, at most ", options_.max_per_credential,
                                  " at once per credential: finish or close one first"),
                     {{"limit", "max-uploads-per-credential"}});
  }
  ++per_peer_[peer];
  ++per_credential_[credential];
  streams_.push_front(Stream{context, std::move(peer), std::string(credential), options_.now()});
  return std::unique_ptr<Slot>(new Slot(this, streams_.begin()));
}

void UploadLimiter::Release(std::list<Stream>::iterator stream) {
  absl::MutexLock lock(&mu_);
  auto peer = per_peer_.find(stream->peer);
  if (peer != per_peer_.end() && --peer->second <= 0) per_peer_.erase(peer);
  auto credential = per_credential_.find(stream->credential);
  if (credential != per_credential_.end() && --credential->second <= 0) {
    per_credential_.erase(credential);
  }
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
