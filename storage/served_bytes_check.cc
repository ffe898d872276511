#include "storage/served_bytes_check.h"

#include <algorithm>
#include <string>

#include "absl/strings/str_cat.h"
#include "common/chunk_chain.h"
#include "common/status.h"

namespace modeldist::storage {
namespace {

constexpr size_t kScratchBytes = 256 * 1024;

}  // namespace

int64_t ServedBytesCheck::MessageEnd(int64_t offset, int64_t want) const {
  const int64_t chunk_end = (offset / kChunkDigestBytes + 1) * kChunkDigestBytes;
  return std::min({offset + want, chunk_end, blob_->size()});
}

bool ServedBytesCheck::CanSkip(int64_t offset, bool from_cache) const {
  if (!from_cache) return false;
  const int64_t chunk = offset / kChunkDigestBytes;
  if (chunk == chunk_) return trusted_;
  return blob_->record().verified(chunk) && blob_->Unchanged();
}

absl::Status ServedBytesCheck::Check(int64_t offset, absl::string_view data, bool from_cache,
                                     int64_t read_end) {
  const BlobRecord& record = blob_->record();
  const int64_t chunk = offset / kChunkDigestBytes;
  const int64_t chunk_start = chunk * kChunkDigestBytes;
  const int64_t chunk_end = std::min(chunk_start + kChunkDigestBytes, record.size());
  const int64_t end = offset + static_cast<int64_t>(data.size());
  if (end > chunk_end) {
    return absl::InternalError(
        absl::StrCat("a message [", offset, ", ", end, ") crosses the end of chain chunk ", chunk));
  }
  if (chunk != chunk_) {
    trusted_ = CanSkip(offset, from_cache);
    chunk_ = chunk;
    hash_.reset();
  }
  if (trusted_ && from_cache) return absl::OkStatus();
  trusted_ = false;

  if (!hash_.has_value()) {
    MD_ASSIGN_OR_RETURN(Sha256 start,
                        StartChunkHash(chunk == 0 ? absl::string_view() : record.entry(chunk - 1),
                                       chunk, kChunkDigestBytes));
    hash_ = std::move(start);
    hashed_to_ = chunk_start;
  }
  // What this stream sent of the chunk unhashed (trusted, before a byte came from the disk),
  // or what lies before a start inside the chunk.
  if (hashed_to_ < offset) MD_RETURN_IF_ERROR(HashFromFile(hashed_to_, offset));
  if (hashed_to_ != offset) {
    return absl::InternalError(
        absl::StrCat("message at ", offset, " does not follow ", hashed_to_));
  }
  hash_->Update(data);
  hashed_to_ = end;
  // The stream stops inside the chunk: check the rest of it before the last bytes go.
  if (end == read_end && end < chunk_end) MD_RETURN_IF_ERROR(HashFromFile(end, chunk_end));
  if (hashed_to_ < chunk_end) return absl::OkStatus();

  const bool last = chunk == record.chunks() - 1;
  const std::string got = EndChunkHash(&*hash_, last);
  hash_.reset();
  if (got != record.entry(chunk)) return ChunkMismatchError(record, chunk);
  record.MarkVerified(chunk);
  return absl::OkStatus();
}

absl::Status ServedBytesCheck::FillAndCheck(int64_t offset, char* buf, size_t size, size_t filled,
                                            int64_t read_end) {
  MD_ASSIGN_OR_RETURN(
      const size_t cached,
      blob_->ReadCachedAt(offset + static_cast<int64_t>(filled), buf + filled, size - filled));
  filled += cached;
  const bool from_cache = filled == size;
  if (!from_cache) {
    MD_ASSIGN_OR_RETURN(const size_t got, blob_->ReadAt(offset + static_cast<int64_t>(filled),
                                                        buf + filled, size - filled));
    filled += got;
    if (filled != size) {
      return SizeMismatchError(blob_->record(), offset + static_cast<int64_t>(filled));
    }
  }
  return Check(offset, absl::string_view(buf, size), from_cache, read_end);
}

std::optional<ScopedFd> TrustedSendFd(const BlobReader& blob, int64_t offset, int64_t size) {
  if (size <= 0 || offset < 0 || offset + size > blob.size()) return std::nullopt;
  const BlobRecord& record = blob.record();
  for (int64_t chunk = offset / kChunkDigestBytes; chunk <= (offset + size - 1) / kChunkDigestBytes;
       ++chunk) {
    if (!record.verified(chunk)) return std::nullopt;
  }
  if (!blob.Unchanged() || !blob.Resident(offset, size)) return std::nullopt;
  ScopedFd fd = blob.Dup();
  if (!fd.valid()) return std::nullopt;
  return fd;
}

absl::Status ServedBytesCheck::HashFromFile(int64_t from, int64_t to) {
  if (!scratch_) scratch_.reset(new char[kScratchBytes]);
  while (from < to) {
    const size_t want = static_cast<size_t>(std::min<int64_t>(kScratchBytes, to - from));
    MD_ASSIGN_OR_RETURN(size_t got, blob_->ReadAt(from, scratch_.get(), want));
    if (got != want) {
      return SizeMismatchError(blob_->record(), from + static_cast<int64_t>(got));
    }
    hash_->Update(absl::string_view(scratch_.get(), got));
    from += static_cast<int64_t>(got);
  }
  hashed_to_ = to;
  return absl::OkStatus();
}

absl::StatusOr<size_t> CheckedBlobReads::ReadAt(int64_t offset, char* buf, size_t size) {
  if (offset >= blob_->size() || size == 0) return 0;
  if (!check_.has_value() || offset != next_) check_.emplace(blob_);
  next_ = -1;  // until this read passed
  const int64_t end = check_->MessageEnd(offset, static_cast<int64_t>(size));
  const size_t want = static_cast<size_t>(end - offset);
  MD_ASSIGN_OR_RETURN(size_t got, blob_->ReadAt(offset, buf, want));
  if (got != want) return SizeMismatchError(blob_->record(), offset + static_cast<int64_t>(got));
  MD_RETURN_IF_ERROR(
      check_->Check(offset, absl::string_view(buf, got), /*from_cache=*/false, blob_->size()));
  next_ = end;
  return got;
}

}  // namespace modeldist::storage
