// File: chunk_chain.h
//
// Chunk chains: what a manifest lists so that a device can verify each chunk of an artifact on
// its own, and the whole file's SHA-256, while hashing every byte once.
//
// A file of `size` bytes is cut into n = ceil(size / chunk_size) chunks; `chunk_size` is a
// multiple of 64 (SHA-256's block), the last chunk may be shorter. Its chain has one 32-byte
// entry per chunk:
//   entry i < n - 1: SHA-256's chaining value (H0..H7, big-endian) after bytes
//                    [0, (i + 1) * chunk_size), i.e. Sha256::ChainingValue() at that point;
//   entry n - 1:     the file's SHA-256 digest.
// Chunk i is verified by resuming SHA-256 from entry i - 1 (the standard initial value for
// chunk 0), hashing the chunk's bytes and comparing the result with entry i. Verifying the last
// chunk therefore computes the file's standard SHA-256, from bytes that were each verified
// once. The empty file has no entries.
//
// Why not the SHA-256 of each chunk: a device would then hash every byte twice, once per chunk
// and once for the file digest, which cost about a third of the agent's CPU (docs/benchmarks.md).
// Why it is as strong: the manifest signs every entry, so a chunk that verifies but differs from
// the publisher's is a second preimage (or, for a malicious publisher, a collision) of SHA-256's
// compression function iterated from a fixed state, which is what SHA-256 itself rests on.
#ifndef MODELDIST_COMMON_CHUNK_CHAIN_H_
#define MODELDIST_COMMON_CHUNK_CHAIN_H_

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/digest.h"

namespace modeldist {

// Builds the chain of a byte stream that arrives in pieces of any size, in the same pass as
// the stream's SHA-256. Copyable, so a result can be taken without ending the stream.
class ChunkChainBuilder {
 public:
  // `chunk_size` must be a positive multiple of Sha256::kBlockBytes (CHECKed by the callers'
  // constants; see storage/blob_store.h kChunkDigestBytes).
  explicit ChunkChainBuilder(int64_t chunk_size);

  void Update(absl::string_view data);
  // Bytes passed to Update.
  int64_t bytes() const { return hash_.bytes(); }
  // Lowercase hex SHA-256 of the bytes so far.
  std::string DigestHex() const;
  // The chain of the bytes so far, its 32-byte entries concatenated.
  std::string Chain() const;
  // How many whole chunks were hashed so far, and the chaining value after chunk `i` of them
  // (i < WholeChunks()): the chain entry of any chunk but a stream's last (whose entry is the
  // digest). For checking a stream against a known chain while it arrives, without copying
  // the chain built so far.
  int64_t WholeChunks() const;
  std::string WholeChunkEntry(int64_t i) const;
  // Forgets every byte after the first `whole_chunks` chunks (at most WholeChunks()), as if
  // only those had been passed to Update: the stream goes on from a chunk boundary.
  absl::Status RewindTo(int64_t whole_chunks);

 private:
  int64_t chunk_size_;
  Sha256 hash_;
  // Bytes of the current chunk hashed so far: 0 only before the first byte, so a chunk that
  // just filled up gets its chaining value only once more bytes follow (else it is the last
  // chunk and its entry is the digest).
  int64_t fill_ = 0;
  std::string chain_;  // entries of the completed chunks that were followed by more bytes
};

// The hash to feed chunk `index` into: the standard SHA-256 start for chunk 0, else SHA-256
// resumed from `previous_entry` (the chain's entry index - 1) after index * chunk_size bytes.
// INVALID_ARGUMENT if `previous_entry` is not 32 bytes or chunk_size is not block-aligned.
absl::StatusOr<Sha256> StartChunkHash(absl::string_view previous_entry, int64_t index,
                                      int64_t chunk_size);

// Ends the hash of a chunk fed through StartChunkHash: the value its chain entry must equal
// (the chaining value, or the file's digest when `last`). `hash` is spent when `last`.
std::string EndChunkHash(Sha256* hash, bool last);

}  // namespace modeldist

#endif  // MODELDIST_COMMON_CHUNK_CHAIN_H_
