// File: blob_record.h
//
// What the blob store knows of one stored blob, beyond its bytes: the size and chunk chain it
// recorded when it verified the upload (the `.chain` sidecar), the identity of the file it
// opened, and which chunks this process has since checked against the chain.
//
// Why a recorded size: a blob's name fixes its bytes, but a file that lost or gained bytes on
// disk would report another size through stat. The sidecar keeps the size the store verified,
// so Stat and Read can tell a truncated or extended file from a good one without hashing.
//
// Sidecar layout (little-endian):
//   bytes 0..7    "mdchain2"
//   bytes 8..15   the blob's size
//   bytes 16..    the chunk chain's 32-byte entries for kChunkDigestBytes chunks
// Stores before this layout wrote the entries alone; DecodeChainSidecar refuses those (their
// length is a multiple of 32, never 16 more), and the store recomputes them from the blob once,
// checking its digest on the way (BlobStore::ChunkChain).
#ifndef MODELDIST_STORAGE_BLOB_RECORD_H_
#define MODELDIST_STORAGE_BLOB_RECORD_H_

#include <sys/stat.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace modeldist::storage {

// The chunk size of the chains the store keeps (the last chunk may be shorter); it is the
// `chunk_size` of every manifest artifact, and a multiple of SHA-256's 64-byte block as chains
// require. 4 MiB keeps a 16 GiB model at 4096 entries,
// about 128 KiB of manifest, while a device that resumes or refetches a failed chunk loses at
// most 4 MiB. Changing it changes every manifest, and sidecars of the old size would be
// recomputed (their length no longer matches).
inline constexpr int64_t kChunkDigestBytes = 4 * 1024 * 1024;

// The length of one chain entry: a SHA-256 chaining value or digest.
inline constexpr size_t kChainEntryBytes = 32;

// The number of chain entries (chunks) of a blob of `size` bytes.
inline int64_t ChunkCount(int64_t size) {
  return (size + kChunkDigestBytes - 1) / kChunkDigestBytes;
}

// A file as the kernel describes it. When none of these changed, neither did the file's bytes
// through any write path (a write moves mtime and ctime; a chmod to allow one moves ctime).
struct FileIdentity {
  dev_t dev = 0;
  ino_t ino = 0;
  int64_t size = 0;
  struct timespec mtime = {};
  struct timespec ctime = {};

  static FileIdentity Of(const struct stat& st);
  bool operator==(const FileIdentity& other) const;
};

// A decoded `.chain` sidecar.
struct ChainSidecar {
  int64_t size = 0;
  std::string chain;  // ChunkCount(size) entries of 32 bytes, concatenated
};
std::string EncodeChainSidecar(int64_t size, absl::string_view chain);
// nullopt for anything but a well-formed sidecar of the current layout.
std::optional<ChainSidecar> DecodeChainSidecar(absl::string_view raw);
// A sidecar of the older layout (the entries alone) for a file of `file_size` bytes: nullopt
// unless it has exactly that many entries and is not a damaged sidecar of the current layout.
std::optional<ChainSidecar> DecodeLegacyChainSidecar(absl::string_view raw, int64_t file_size);

// One stored blob as this process knows it. Immutable but for the verified bits, which any
// reader may set (atomically) once it has hashed a chunk and found it matches.
class BlobRecord {
 public:
  BlobRecord(std::string hex, FileIdentity identity, ChainSidecar sidecar);

  const std::string& hex() const { return hex_; }
  const FileIdentity& identity() const { return identity_; }
  // The size the store verified; the file must still have it.
  int64_t size() const { return size_; }
  int64_t chunks() const { return ChunkCount(size_); }
  // Chain entry `index` (32 bytes); the last is the blob's SHA-256.
  absl::string_view entry(int64_t index) const;
  const std::string& chain() const { return chain_; }

  // Whether chunk `index` was hashed and matched its entry in this process, for this file.
  bool verified(int64_t index) const;
  void MarkVerified(int64_t index) const;

 private:
  std::string hex_;
  FileIdentity identity_;
  int64_t size_;
  std::string chain_;
  std::unique_ptr<std::atomic<uint64_t>[]> verified_;
};

// The DATA_LOSS (reason BLOB_CORRUPT) for chunk `chunk` of `record` not matching its entry.
absl::Status ChunkMismatchError(const BlobRecord& record, int64_t chunk);
// The DATA_LOSS (reason BLOB_SIZE_MISMATCH) for the file of `record` holding `actual` bytes.
absl::Status SizeMismatchError(const BlobRecord& record, int64_t actual);

}  // namespace modeldist::storage

#endif  // MODELDIST_STORAGE_BLOB_RECORD_H_
