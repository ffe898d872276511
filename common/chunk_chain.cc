#include "common/chunk_chain.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "common/status.h"

namespace modeldist {

ChunkChainBuilder::ChunkChainBuilder(int64_t chunk_size) : chunk_size_(chunk_size) {}

void ChunkChainBuilder::Update(absl::string_view data) {
  while (!data.empty()) {
    if (fill_ == chunk_size_) {
      chain_ += hash_.ChainingValue();  // more bytes follow, so this chunk was not the last
      fill_ = 0;
    }
    const size_t take = static_cast<size_t>(
        std::min<int64_t>(static_cast<int64_t>(data.size()), chunk_size_ - fill_));
    hash_.Update(data.substr(0, take));
    fill_ += static_cast<int64_t>(take);
    data.remove_prefix(take);
  }
}

std::string ChunkChainBuilder::DigestHex() const { return Sha256(hash_).FinishHex(); }

std::string ChunkChainBuilder::Chain() const {
  if (fill_ == 0) return chain_;  // nothing hashed yet: the empty file has no entries
  return chain_ + Sha256(hash_).FinishRaw();
}

int64_t ChunkChainBuilder::WholeChunks() const {
  const int64_t listed = static_cast<int64_t>(chain_.size() / Sha256::kStateBytes);
  return fill_ == chunk_size_ ? listed + 1 : listed;
}

std::string ChunkChainBuilder::WholeChunkEntry(int64_t i) const {
  const int64_t listed = static_cast<int64_t>(chain_.size() / Sha256::kStateBytes);
  if (i < listed)
    return chain_.substr(static_cast<size_t>(i) * Sha256::kStateBytes, Sha256::kStateBytes);
  return hash_.ChainingValue();  // i == listed: the chunk that just filled up
}

absl::Status ChunkChainBuilder::RewindTo(int64_t whole_chunks) {
  if (whole_chunks < 0 || whole_chunks > WholeChunks()) {
    return MakeError(absl::StatusCode::kInvalidArgument, "INVALID_CHUNK_INDEX",
                     absl::StrCat("cannot rewind to chunk ", whole_chunks, " of ", WholeChunks(),
                                  " whole chunks"));
  }
  if (whole_chunks == 0) {
    *this = ChunkChainBuilder(chunk_size_);
    return absl::OkStatus();
  }
  // The state Update leaves right after a chunk fills up: its entry is not listed yet (it is
  // the digest if no byte follows), and the hash stands at its chaining value.
  const std::string last = WholeChunkEntry(whole_chunks - 1);
  MD_ASSIGN_OR_RETURN(hash_, Sha256::Resume(last, whole_chunks * chunk_size_));
  chain_.resize(static_cast<size_t>(whole_chunks - 1) * Sha256::kStateBytes);
  fill_ = chunk_size_;
  return absl::OkStatus();
}

absl::StatusOr<Sha256> StartChunkHash(absl::string_view previous_entry, int64_t index,
                                      int64_t chunk_size) {
  // Checked here, not only by Resume: index * chunk_size can be a multiple of 64 when
  // chunk_size is not (index 64, say), and such a chain cannot be resumed at every chunk.
  if (chunk_size <= 0 || chunk_size % 64 != 0) {
    return MakeError(
        absl::StatusCode::kInvalidArgument, "INVALID_CHUNK_SIZE",
        absl::StrCat("chunk size ", chunk_size, " is not a positive multiple of 64 bytes"));
  }
  if (index == 0) return Sha256();
  return Sha256::Resume(previous_entry, index * chunk_size);
}

std::string EndChunkHash(Sha256* hash, bool last) {
  return last ? hash->FinishRaw() : hash->ChainingValue();
}

}  // namespace modeldist
