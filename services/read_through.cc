#include "services/read_through.h"

#include <algorithm>
#include <iostream>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/digest.h"
#include "common/status.h"
#include "services/blob_import.h"
#include "storage/background_appender.h"
#include "storage/origin/origin_config.h"

namespace modeldist::services {
namespace {

int64_t NowMicros() { return absl::ToUnixMicros(absl::Now()); }

absl::Status Stopping() {
  return MakeError(absl::StatusCode::kUnavailable, "SERVER_STOPPING",
                   "the server is shutting down; retry against another server or later");
}

}  // namespace

ChainLookup RecordedChainLookup(storage::Catalog* catalog) {
  return [catalog](const std::string& hex) -> absl::StatusOr<RemoteBlob> {
    MD_ASSIGN_OR_RETURN(storage::RecordedChain recorded,
                        catalog->GetRecordedChain(FormatDigest(hex)));
    if (recorded.chunk_size != storage::kChunkDigestBytes) {
      return MakeError(
          absl::StatusCode::kNotFound, "CHAIN_NOT_RECORDED",
          absl::StrCat("the chain recorded for ", FormatDigest(hex), " has ", recorded.chunk_size,
                       "-byte chunks, not ", storage::kChunkDigestBytes));
    }
    return RemoteBlob{recorded.size, std::move(recorded.chain)};
  };
}

absl::Status RecordChain(storage::Catalog* catalog, const storage::BlobStore* blobs,
                         const std::string& digest) {
  MD_ASSIGN_OR_RETURN(std::string hex, ParseDigest("digest", digest));
  absl::StatusOr<int64_t> size = blobs->Size(hex);
  if (absl::IsNotFound(size.status())) return absl::OkStatus();
  MD_RETURN_IF_ERROR(size.status());
  MD_ASSIGN_OR_RETURN(std::vector<std::string> entries, blobs->ChunkChain(hex));
  storage::RecordedChain recorded;
  recorded.size = *size;
  recorded.chunk_size = storage::kChunkDigestBytes;
  for (const std::string& entry : entries) recorded.chain += entry;
  return catalog->RecordChain(digest, recorded);
}

absl::Status RecordChainsOfConfirmedReplicas(storage::Catalog* catalog,
                                             const storage::BlobStore* blobs) {
  MD_ASSIGN_OR_RETURN(auto confirmed, catalog->ListConfirmedReplicas());
  std::set<std::string> digests;
  for (const auto& [digest, origin] : confirmed) digests.insert(digest);
  for (const std::string& digest : digests) {
    if (catalog->GetRecordedChain(digest).ok()) continue;
    MD_RETURN_IF_ERROR(RecordChain(catalog, blobs, digest));
  }
  return absl::OkStatus();
}

BlobFetch::Progress BlobFetch::progress() const {
  absl::MutexLock lock(&mu_);
  return progress_;
}

void BlobFetch::WhenReady(int64_t end, std::function<void()> ready) {
  {
    absl::MutexLock lock(&mu_);
    if (progress_.verified < end && progress_.error.ok()) {
      waiters_.emplace(end, std::move(ready));
      return;
    }
  }
  ready();
}

absl::StatusOr<size_t> BlobFetch::ReadAt(int64_t offset, char* buf, size_t size) const {
  if (blob_.has_value()) return blob_->ReadAt(offset, buf, size);
  return PreadAll(file_.get(), buf, size, offset,
                  absl::StrCat("the fetch of ", FormatDigest(hex_)));
}

void BlobFetch::Advance(int64_t verified) {
  std::vector<std::function<void()>> ready;
  {
    absl::MutexLock lock(&mu_);
    progress_.verified = std::max(progress_.verified, verified);
    auto end = waiters_.upper_bound(progress_.verified);
    for (auto it = waiters_.begin(); it != end; ++it) ready.push_back(std::move(it->second));
    waiters_.erase(waiters_.begin(), end);
  }
  for (auto& r : ready) r();
}

BlobFetch::Progress BlobFetch::Wait() {
  absl::MutexLock lock(&mu_, absl::Condition(&progress_.ended));
  return progress_;
}

void BlobFetch::End(const absl::Status& error) {
  std::vector<std::function<void()>> ready;
  {
    absl::MutexLock lock(&mu_);
    if (error.ok()) progress_.verified = size_;
    progress_.error = error;
    progress_.ended = true;
    for (auto& [end, r] : waiters_) ready.push_back(std::move(r));
    waiters_.clear();
  }
  for (auto& r : ready) r();
}

ReadThrough::ReadThrough(storage::BlobStore* blobs, const origin::OriginSet* origins,
                         ChainLookup lookup, ReadThroughOptions options)
    : blobs_(blobs), origins_(origins), lookup_(std::move(lookup)), options_(std::move(options)) {}

ReadThrough::~ReadThrough() { Stop(); }

absl::StatusOr<RemoteBlob> ReadThrough::Lookup(const std::string& hex) const {
  absl::StatusOr<RemoteBlob> remote = lookup_(hex);
  if (absl::IsNotFound(remote.status())) {
    return MakeError(absl::StatusCode::kNotFound, "BLOB_NOT_FOUND",
                     absl::StrCat("no verified blob ", FormatDigest(hex), " is stored here"));
  }
  return remote;
}

absl::StatusOr<std::shared_ptr<BlobFetch>> ReadThrough::Fetch(const std::string& hex) {
  {
    absl::MutexLock lock(&mu_);
    if (stopping_) return Stopping();
    if (auto it = fetches_.find(hex); it != fetches_.end()) return it->second;
  }
  if (blobs_->Contains(hex)) return nullptr;
  MD_ASSIGN_OR_RETURN(RemoteBlob remote, Lookup(hex));
  absl::MutexLock lock(&mu_);
  if (stopping_) return Stopping();
  // Another Read may have started it while this one looked the blob up.
  if (auto it = fetches_.find(hex); it != fetches_.end()) return it->second;
  for (std::thread& t : ended_) t.join();
  ended_.clear();
  auto fetch = std::make_shared<BlobFetch>(hex, remote.size);
  fetches_[hex] = fetch;
  if (options_.fetches_started != nullptr) options_.fetches_started->Increment();
  threads_[fetch.get()] =
      std::thread([this, fetch, remote = std::move(remote)] { Run(fetch, remote); });
  watchdog_.Start();
  return fetch;
}

absl::Status ReadThrough::Restore(const std::string& hex) {
  MD_ASSIGN_OR_RETURN(std::shared_ptr<BlobFetch> fetch, Fetch(hex));
  if (fetch == nullptr) return absl::OkStatus();  // stored
  return fetch->Wait().error;
}

void ReadThrough::Stop() {
  std::map<const BlobFetch*, std::thread> threads;
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
    for (auto& [hex, fetch] : fetches_) fetch->cancel_ = true;
    threads.swap(threads_);
  }
  for (auto& [fetch, thread] : threads) thread.join();
  std::vector<std::thread> ended;
  {
    absl::MutexLock lock(&mu_);
    ended.swap(ended_);
  }
  for (std::thread& t : ended) t.join();
  watchdog_.Stop();  // not under mu_: its round takes it
}

void ReadThrough::Run(const std::shared_ptr<BlobFetch>& fetch, const RemoteBlob& remote) {
  const absl::Status status = FetchAll(*fetch, remote);
  {
    // First, so that a Read after this one starts afresh (or finds the blob stored).
    absl::MutexLock lock(&mu_);
    fetches_.erase(fetch->hex());
  }
  if (status.ok()) {
    if (options_.on_stored) options_.on_stored(fetch->hex());
  } else {
    std::cerr << "modeldist-server: read-through of " << FormatDigest(fetch->hex())
              << " failed: " << status << "\n";
  }
  fetch->End(status);
  absl::MutexLock lock(&mu_);
  // Joined by the next Fetch or by Stop: a thread cannot join itself.
  if (auto it = threads_.find(fetch.get()); it != threads_.end()) {
    ended_.push_back(std::move(it->second));
    threads_.erase(it);
  }
}

absl::Status ReadThrough::FetchAll(BlobFetch& fetch, const RemoteBlob& remote) {
  const std::string& hex = fetch.hex();
  const int64_t size = fetch.size();
  if (blobs_->Contains(hex)) {  // stored since the Read looked
    MD_ASSIGN_OR_RETURN(storage::BlobReader blob, blobs_->OpenBlob(hex));
    fetch.blob_.emplace(std::move(blob));
    return absl::OkStatus();
  }
  // What an earlier fetch left is kept if every chunk of it matches (a partial that does not
  // is dropped by the check, and the fetch starts at 0).
  MD_ASSIGN_OR_RETURN(int64_t offset, blobs_->UploadOffset(hex, size));
  absl::StatusOr<int64_t> verified = blobs_->AppendVerified(hex, size, offset, "", remote.chain);
  if (absl::IsDataLoss(verified.status())) {
    offset = 0;
    verified = blobs_->AppendVerified(hex, size, offset, "", remote.chain);
  }
  MD_RETURN_IF_ERROR(verified.status());
  MD_ASSIGN_OR_RETURN(fetch.file_, blobs_->OpenPartial(hex));
  fetch.Advance(*verified);
  // Every chunk is checked against bytes of one origin, so that a mismatch is blamed on the
  // one that sent it: an unfinished chunk (left by an earlier fetch, or by an origin that
  // failed) starts again from its first byte with the next origin. At most a chunk is fetched
  // twice.
  auto rewind = [&]() -> absl::Status {
    const int64_t checked = fetch.progress().verified;
    if (offset <= checked || offset == size) return absl::OkStatus();
    MD_RETURN_IF_ERROR(blobs_->RewindUpload(hex, checked));
    offset = checked;
    return absl::OkStatus();
  };

  absl::Status last;
  bool all_not_found = true;
  const origin::ConfiguredOrigin* sender = nullptr;  // of the chunk being fetched
  for (const origin::ConfiguredOrigin* target : OriginsFor(hex)) {
    if (offset == size) break;
    MD_RETURN_IF_ERROR(rewind());
    fetch.cancel_ = false;
    fetch.stalled_ = false;
    fetch.last_byte_micros_ = NowMicros();
    {
      absl::MutexLock lock(&mu_);
      if (stopping_) return Stopping();
    }
    ++origin_gets_;
    sender = target;
    std::cerr << "modeldist-server: reading " << FormatDigest(hex) << " from origin "
              << target->config.name() << " at byte " << offset << " of " << size << "\n";
    // The store hashes and writes each block on the appender's thread while this one
    // receives the next (read_through_bench: one thread doing both ran at under half of
    // curl's speed).
    int64_t sent = offset;  // bytes handed to the appender
    storage::BackgroundAppender appender([&](int64_t at, absl::string_view block) -> absl::Status {
      MD_ASSIGN_OR_RETURN(int64_t checked,
                          blobs_->AppendVerified(hex, size, at, block, remote.chain));
      fetch.Advance(checked);
      return absl::OkStatus();
    });
    BlockBuffer buffer(kFetchBlockBytes, [&](std::string* block) {
      const int64_t at = sent;
      sent += static_cast<int64_t>(block->size());
      return appender.Append(at, block);
    });
    absl::Status got = target->origin->Get(
        origin::BlobKey(target->config, hex), offset, size - offset,
        [&](absl::string_view piece) {
          fetch.last_byte_micros_ = NowMicros();
          return buffer.Add(piece);
        },
        &fetch.cancel_);
    // What arrived before a failure is checked and kept: the next origin goes on after it.
    absl::Status kept = buffer.Flush();
    if (kept.ok()) kept = appender.Drain();
    MD_ASSIGN_OR_RETURN(offset, blobs_->UploadOffset(hex, size));
    if (got.ok() || ErrorReason(kept) == "CHUNK_MISMATCH") got = kept;
    if (got.ok() && offset < size) {
      got = MakeError(absl::StatusCode::kOutOfRange, "ORIGIN_OBJECT_SHORT",
                      absl::StrCat("the object ended at byte ", offset, " of ", size));
    }
    if (got.ok()) break;
    if (ErrorReason(got) == "CHUNK_MISMATCH") {
      absl::MutexLock lock(&mu_);
      bad_origins_[hex].insert(target->config.name());
      return WithContext(got, absl::StrCat("origin ", target->config.name()));
    }
    if (fetch.stalled_) {
      got = MakeError(
          absl::StatusCode::kUnavailable, "ORIGIN_STALLED",
          absl::StrCat("no byte arrived for ", absl::FormatDuration(options_.stall_timeout)));
    } else if (absl::IsCancelled(got)) {
      return Stopping();
    }
    all_not_found &= absl::IsNotFound(got);
    last = WithContext(got, absl::StrCat("origin ", target->config.name()));
  }
  if (offset < size) {
    if (sender == nullptr || all_not_found) {
      return MakeError(
          absl::StatusCode::kNotFound, "BLOB_NOT_ON_ORIGINS",
          absl::StrCat("blob ", FormatDigest(hex), " is not stored here and no origin has it",
                       last.ok() ? "" : absl::StrCat(" (", last.message(), ")")));
    }
    return WithRetryDelay(
        MakeError(absl::StatusCode::kUnavailable, "ORIGINS_UNAVAILABLE",
                  absl::StrCat("blob ", FormatDigest(hex), " is not stored here and its origins ",
                               "failed; ", offset, " of ", size,
                               " bytes are kept, retry: ", last.message())),
        options_.retry_delay);
  }
  absl::Status stored = blobs_->Finish(hex, size);
  if (absl::IsDataLoss(stored) && sender != nullptr) {  // the last chunk did not match
    absl::MutexLock lock(&mu_);
    bad_origins_[hex].insert(sender->config.name());
  }
  if (stored.ok()) {
    absl::MutexLock lock(&mu_);
    bad_origins_.erase(hex);
  }
  return stored;
}

std::vector<const origin::ConfiguredOrigin*> ReadThrough::OriginsFor(const std::string& hex) {
  std::set<std::string> bad;
  {
    absl::MutexLock lock(&mu_);
    if (auto it = bad_origins_.find(hex); it != bad_origins_.end()) bad = it->second;
  }
  std::vector<const origin::ConfiguredOrigin*> out;
  for (const origin::ConfiguredOrigin& o : origins_->origins()) {
    if (!bad.count(o.config.name())) out.push_back(&o);
  }
  for (const origin::ConfiguredOrigin& o : origins_->origins()) {
    if (bad.count(o.config.name())) out.push_back(&o);
  }
  return out;
}

absl::Duration ReadThrough::Watch() {
  const int64_t stale_before = NowMicros() - absl::ToInt64Microseconds(options_.stall_timeout);
  absl::MutexLock lock(&mu_);
  for (auto& [hex, fetch] : fetches_) {
    if (!fetch->cancel_ && fetch->last_byte_micros_ < stale_before) {
      fetch->stalled_ = true;
      fetch->cancel_ = true;
    }
  }
  return std::min(absl::Seconds(1), options_.stall_timeout / 4);
}

}  // namespace modeldist::services
