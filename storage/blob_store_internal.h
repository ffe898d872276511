// File: blob_store_internal.h
//
// What the blob store's own .cc files share; nothing else includes it. The store is one class
// (blob_store.h) in four files, one per side of it:
//   blob_store.cc            opening the store, the layout's paths, reading blobs and their
//                            records (chain sidecars);
//   blob_store_uploads.cc    uploads by digest, and the steps every upload shares (append,
//                            verify, commit);
//   blob_store_sessions.cc   upload sessions: query, append, finish, and their expiry;
//   blob_store_integrity.cc  listing, re-reading for a scrub, quarantine.
#ifndef MODELDIST_STORAGE_BLOB_STORE_INTERNAL_H_
#define MODELDIST_STORAGE_BLOB_STORE_INTERNAL_H_

#include <sys/stat.h>
#include <sys/types.h>

#include <cstdint>
#include <ctime>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "common/chunk_chain.h"
#include "common/file_util.h"
#include "storage/blob_record.h"
#include "storage/blob_store.h"

namespace modeldist::storage {

// Files under blobs/ are never written again; the mode makes an accidental write fail loudly.
inline constexpr mode_t kBlobMode = 0444;
inline constexpr mode_t kPartialMode = 0644;
// VerifyLocked's expected size when any size will do (a session that declared none).
inline constexpr int64_t kAnySize = -1;

// Whether `hex` is 64 lowercase hex digits: a digest, and so a safe file name.
bool IsHex64(absl::string_view hex);

// Every public entry point calls this first: a digest becomes part of a path, so anything but
// 64 lowercase hex digits (e.g. "../../etc") must never reach the file system.
absl::Status ValidateHex(absl::string_view hex);

// The key of a session's state and files. Only called with a validated id.
std::string SessionKey(absl::string_view id);

// How messages name an upload: by its digest, or by its session id.
std::string UploadName(absl::string_view key);

// What a name under uploads/ is; `key` gets the upload key of partials and records.
enum class UploadsEntry { kDebris, kDigestPartial, kSessionPartial, kSessionRecord };
UploadsEntry ClassifyUploadsEntry(absl::string_view name, std::string* key);

std::string DirOf(const std::string& path);

// Hashes a blob's bytes once, for both its SHA-256 and its chunk chain (common/chunk_chain.h).
class BlobHasher : public ChunkChainBuilder {
 public:
  BlobHasher() : ChunkChainBuilder(kChunkDigestBytes) {}
};

// Feeds the whole file `fd` (named `path` in errors) to `hasher`; returns how many bytes.
absl::StatusOr<int64_t> HashWholeFile(int fd, const std::string& path, BlobHasher* hasher);

// The in-memory half of an upload. `hash` (whole file and chunks) covers exactly the first
// `offset` bytes of the partial file; the file's identity (device, inode, size, mtime) is
// remembered after each write so that a partial truncated, replaced or removed behind our back is
// noticed and the state rebuilt from what is really on disk instead of trusting a stale hash.
struct BlobStore::Upload {
  absl::Mutex mu;
  bool loaded ABSL_GUARDED_BY(mu) = false;
  BlobHasher hash ABSL_GUARDED_BY(mu);
  int64_t offset ABSL_GUARDED_BY(mu) = 0;
  // Bytes of the partial whose write-back was started (see kWriteBehindBytes).
  int64_t written_back ABSL_GUARDED_BY(mu) = 0;
  // Whole chunks AppendVerified compared with the expected chain; 0 whenever `hash` is
  // rebuilt, so the first check after a restart covers every chunk on disk.
  int64_t checked_chunks ABSL_GUARDED_BY(mu) = 0;
  dev_t dev ABSL_GUARDED_BY(mu) = 0;
  ino_t ino ABSL_GUARDED_BY(mu) = 0;
  struct timespec mtime ABSL_GUARDED_BY(mu) = {};
  // An fsync of the partial failed. Its bytes on disk are then unknown, and the page cache
  // may not show it (Linux marks pages whose write-back failed clean, so a second fsync
  // "succeeds" over bytes that never reached the disk). The next Sync drops the file's cached
  // pages and hashes it from the disk again, so that only bytes the disk really holds are
  // verified and committed.
  bool reread_from_disk ABSL_GUARDED_BY(mu) = false;

  void Reset() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu);
  void Remember(const struct stat& st) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu);
  bool Matches(const struct stat& st) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu);

  // Opens the partial at `path` (creating it when `create`) and makes the state describe it,
  // hashing the file once when the state is missing (restart) or stale. Returns an invalid
  // fd, with an empty state, when the partial does not exist and `create` is false.
  absl::StatusOr<ScopedFd> Sync(const std::string& path, bool create, Fs& fs)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu);
};

}  // namespace modeldist::storage

#endif  // MODELDIST_STORAGE_BLOB_STORE_INTERNAL_H_
