// File: blob_store.h
//
// A content-addressed store of verified blobs on the local file system.
//
// Layout under `root`:
//   blobs/sha256/<first 2 hex>/<64 hex>          verified, immutable blobs (mode 0444)
//   blobs/sha256/<first 2 hex>/<64 hex>.chain    the blob's chunk chain (mode 0444)
//   uploads/<64 hex>.partial                     bytes of an upload in progress
//   uploads/<anything else>                      temp files; removed by Open
//
// The one rule: a file under blobs/ always holds exactly the bytes of its name. Bytes are
// hashed while they are written (one pass), fsynced, and renamed into place only after size
// and SHA-256 match; anything else is discarded and never listed or served.
//
// The same pass builds the blob's chunk chain for kChunkDigestBytes chunks (common/chunk_chain.h:
// one 32-byte entry per chunk that lets a device verify that chunk on its own). The entries,
// concatenated, go to the `.chain` sidecar, which is durable before the blob is renamed into
// place, so a stored blob has its sidecar (blobs stored by older versions get one on first
// use, see ChunkChain). A sidecar is never a blob: every lookup goes through a validated
// 64-hex name, which cannot end in `.chain`.
//
// Thread-safe. Uploads of different digests proceed in parallel; writes to one digest are
// serialized and must come in order (offset == committed size), so concurrent writers of the
// same blob cannot interleave bytes.
#ifndef MODELDIST_STORAGE_BLOB_STORE_H_
#define MODELDIST_STORAGE_BLOB_STORE_H_

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"

namespace modeldist::storage {

// The chunk size of the chains the store keeps (the last chunk may be shorter); it is the
// `chunk_size` of every manifest artifact, and a multiple of SHA-256's 64-byte block as chains
// require. 4 MiB keeps a 16 GiB model at 4096 entries,
// about 128 KiB of manifest, while a device that resumes or refetches a failed chunk loses at
// most 4 MiB. Changing it changes every manifest, and sidecars of the old size would be
// recomputed (their length no longer matches).
inline constexpr int64_t kChunkDigestBytes = 4 * 1024 * 1024;

// An open, verified blob. Owns the file descriptor; movable, not copyable.
class BlobReader {
 public:
  BlobReader(int fd, int64_t size) : fd_(fd), size_(size) {}
  BlobReader(BlobReader&& other) noexcept;
  BlobReader& operator=(BlobReader&& other) noexcept;
  BlobReader(const BlobReader&) = delete;
  BlobReader& operator=(const BlobReader&) = delete;
  ~BlobReader();

  int64_t size() const { return size_; }
  // Reads up to `size` bytes at `offset` into `buf` (pread); returns the count, 0 at the end.
  absl::StatusOr<size_t> ReadAt(int64_t offset, char* buf, size_t size) const;
  // Like ReadAt, but takes only what the page cache holds now and never waits for the disk
  // (preadv2 with RWF_NOWAIT): returns how many bytes from `offset` on it read, possibly fewer
  // than asked or 0, where the file system cannot tell without blocking too. For threads that
  // must not block (gRPC's callback threads); the caller reads the rest with ReadAt elsewhere.
  absl::StatusOr<size_t> ReadCachedAt(int64_t offset, char* buf, size_t size) const;

 private:
  int fd_ = -1;
  int64_t size_ = 0;
};

class BlobStore {
 public:
  // Opens the store at `root`, creating its folders. Stale temp files from a crash are removed.
  static absl::StatusOr<std::unique_ptr<BlobStore>> Open(const std::string& root);

  // All `hex` arguments are 64 lowercase hex digits (callers parse digests with ParseDigest);
  // anything else gives INVALID_ARGUMENT and never reaches the file system.

  // True when a verified blob with this digest is stored.
  bool Contains(absl::string_view hex) const;
  // Size of a verified blob; NOT_FOUND when absent.
  absl::StatusOr<int64_t> Size(absl::string_view hex) const;
  // Opens a verified blob; NOT_FOUND when absent. Not an overload of Open: a std::string
  // argument would silently pick the static Open(root) and create a store named after it.
  absl::StatusOr<BlobReader> OpenBlob(absl::string_view hex) const;

  // The number of bytes an upload of `hex` has committed: `expected_size` when the blob is
  // already stored, else the partial upload's length (0 when none).
  absl::StatusOr<int64_t> UploadOffset(absl::string_view hex, int64_t expected_size);

  // Appends `data` to the upload of `hex` at `offset`, hashing as it writes.
  // INVALID_ARGUMENT when `offset` is not the committed size or the upload would exceed
  // `expected_size`; ALREADY_EXISTS when the blob is already stored.
  absl::Status Append(absl::string_view hex, int64_t expected_size, int64_t offset,
                      absl::string_view data);

  // Verifies the upload of `hex` and moves it into blobs/. DATA_LOSS when the size is not
  // `expected_size` or the SHA-256 differs; the partial upload is then deleted, so the next
  // upload starts at 0. OK (no-op) when the blob is already stored.
  absl::Status Finish(absl::string_view hex, int64_t expected_size);

  // Stores a whole blob from memory in one call (Append + Finish). For small blobs and tests.
  absl::Status Put(absl::string_view hex, absl::string_view data);

  // The chunk chain of a stored blob for kChunkDigestBytes chunks (common/chunk_chain.h), as
  // its 32-byte entries: ceil(size / kChunkDigestBytes) of them, none for the empty blob, the
  // last one the blob's digest. NOT_FOUND when the blob is absent. Normally read from the
  // sidecar written by Finish. When the sidecar is missing (a blob stored by an older
  // version) or has the wrong length, the blob is read once to compute the chain, its
  // whole-file SHA-256 is checked on the way (DATA_LOSS, reason BLOB_CORRUPT, when the bytes
  // on disk no longer match the name; nothing is written), and the sidecar is written so the
  // next call is cheap (and a legacy `.chunks` sidecar removed); failing to write it is an
  // error too.
  absl::StatusOr<std::vector<std::string>> ChunkChain(absl::string_view hex) const;

  const std::string& root() const { return root_; }
  std::string BlobPath(absl::string_view hex) const;

 private:
  explicit BlobStore(std::string root);
  std::string PartialPath(absl::string_view hex) const;
  std::string ChainPath(absl::string_view hex) const;
  // Atomically replaces the sidecar of `hex` with `chain` (its entries concatenated): temp
  // file in uploads/ (so Open cleans up after a crash), fsync, rename, fsync of the directory.
  absl::Status WriteChain(absl::string_view hex, absl::string_view chain) const;

  // Per-digest upload state, kept in memory so that a resumed upload keeps hashing where it
  // stopped instead of reading its partial file again. After a restart (or when the partial
  // changed behind our back) the state is rebuilt by hashing the partial once.
  struct Upload;
  // Returns the state for `hex`, creating it. Shared so that Finish can drop the map entry
  // while another thread still waits on the upload's own mutex.
  std::shared_ptr<Upload> GetUpload(absl::string_view hex) ABSL_LOCKS_EXCLUDED(mu_);
  void ForgetUpload(absl::string_view hex, const Upload* upload) ABSL_LOCKS_EXCLUDED(mu_);

  // The steps of Append/Finish with `upload->mu` held, so Put can run them as one unit.
  absl::Status AppendLocked(Upload& upload, absl::string_view hex, int64_t expected_size,
                            int64_t offset, absl::string_view data);
  absl::Status FinishLocked(Upload& upload, absl::string_view hex, int64_t expected_size);
  // Deletes the partial file and resets `upload` to an empty upload.
  void DiscardLocked(Upload& upload, absl::string_view hex);

  std::string root_;
  // Guards only the map; file I/O happens under each Upload's mutex, so different digests
  // upload in parallel.
  absl::Mutex mu_;
  std::map<std::string, std::shared_ptr<Upload>, std::less<>> uploads_ ABSL_GUARDED_BY(mu_);
};

}  // namespace modeldist::storage

#endif  // MODELDIST_STORAGE_BLOB_STORE_H_
