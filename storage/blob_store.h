// File: blob_store.h
//
// A content-addressed store of verified blobs on the local file system.
//
// Layout under `root`:
//   blobs/sha256/<first 2 hex>/<64 hex>          verified, immutable blobs (mode 0444)
//   blobs/sha256/<first 2 hex>/<64 hex>.chain    its size and chunk chain (blob_record.h; 0444)
//   uploads/<64 hex>.partial                     bytes of an upload in progress
//   uploads/session-<upload id>.partial          bytes of an upload session in progress
//   uploads/session-<upload id>.done             the digest a finished session stored
//   uploads/<anything else>                      temp files; removed by Open
//   quarantine/<64 hex>/<unix micros>{,.chain,.reason}   blobs found damaged, kept for people
//
// The one rule: a file under blobs/ holds exactly the bytes of its name. Bytes are hashed while
// they are written (one pass), fsynced, and renamed into place only after size and SHA-256
// match; anything else is discarded and never listed or served. Disks and people can still
// break the rule later, so it is checked again whenever bytes leave: Size and OpenBlob compare
// the file's size with the recorded one, every byte a reader serves is checked against the
// chain (ServedBytesCheck, served_bytes_check.h), and Verify re-reads a blob from the disk for
// a scrub. What fails is moved to quarantine/ by the caller (services/blob_health.h).
//
// The same pass builds the blob's chunk chain for kChunkDigestBytes chunks (common/chunk_chain.h:
// one 32-byte entry per chunk that lets a device verify that chunk on its own). The entries,
// concatenated, go to the `.chain` sidecar, which is durable before the blob is renamed into
// place, so a stored blob has its sidecar (blobs stored by older versions get one on first
// use, see ChunkChain). A sidecar is never a blob: every lookup goes through a validated
// 64-hex name, which cannot end in `.chain`.
//
// Upload sessions are uploads whose digest the writer learns only from the bytes it sends
// (modeldistctl hashes a file while uploading it, so it reads the file once). A session is
// named by a client-chosen id, checked by ValidateUploadId (common/names.h) before it becomes
// part of a file name, and is written exactly like a digest upload: the same per-upload state,
// the same single hashing pass, the same rebuild after a restart. FinishSession is told the
// digest the writer computed and stores the blob under it only when the store's own hash and
// size agree; then the blob is like any other (fsynced, `.chain` sidecar, renamed into blobs/).
// The session leaves a small `.done` record naming the stored digest, so a writer that lost
// the answer (a crash, a dropped connection) can still learn it. Partials and records of
// sessions expire kUploadSessionTtl after their last change: Open removes them, and so does a
// sweep at most hourly while sessions are written. When a session's record expires, the blob
// it stored goes too if nothing wants it any more: no version declares it (asked through
// Options::is_referenced) and no other session's record names it. That is the blob of a
// publish that uploaded its bytes but never created its version (modeldistctl killed between
// the two, say); without it such blobs would stay forever.
//
// Thread-safe. Uploads of different digests (and sessions) proceed in parallel; writes to one
// digest or session are serialized and must come in order (offset == committed size), so
// concurrent writers of the same upload cannot interleave bytes.
#ifndef MODELDIST_STORAGE_BLOB_STORE_H_
#define MODELDIST_STORAGE_BLOB_STORE_H_

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/file_util.h"
#include "common/fs.h"
#include "storage/blob_record.h"

namespace modeldist::storage {

// The largest blob the store accepts (1 TiB): the bound of an upload session that declared no
// size, and of every artifact a version declares.
inline constexpr int64_t kMaxBlobBytes = int64_t{1} << 40;

// Upload session partials and `.done` records older than this (since their last write) are
// removed. A week lets a multi-GB upload interrupted on a Friday resume on Monday.
inline constexpr absl::Duration kUploadSessionTtl = absl::Hours(7 * 24);

// OK when `declared_size` can be an upload session's declared size: 0 (not known) to
// kMaxBlobBytes. Otherwise INVALID_ARGUMENT naming `size_bytes`.
absl::Status ValidateDeclaredSize(int64_t declared_size);

// What a session has: `committed_size` bytes so far, or, once finished, the stored blob's
// digest (64 hex) and size.
struct UploadSessionState {
  int64_t committed_size = 0;
  std::string digest_hex;  // Empty until the session is finished.
  bool finished() const { return !digest_hex.empty(); }
};

// An open, verified blob. Owns the file descriptor; movable, not copyable.
class BlobReader {
 public:
  BlobReader(int fd, std::shared_ptr<const BlobRecord> record)
      : fd_(fd), record_(std::move(record)) {}
  BlobReader(BlobReader&& other) noexcept;
  BlobReader& operator=(BlobReader&& other) noexcept;
  BlobReader(const BlobReader&) = delete;
  BlobReader& operator=(const BlobReader&) = delete;
  ~BlobReader();

  // The size the store verified (the file had it when opened).
  int64_t size() const { return record_->size(); }
  // Chain, recorded size and verified chunks (storage/blob_record.h).
  const BlobRecord& record() const { return *record_; }
  // Whether the open file is still the one the record describes (fstat; see FileIdentity).
  bool Unchanged() const;
  // Reads up to `size` bytes at `offset` into `buf` (pread); returns the count, 0 at the end.
  absl::StatusOr<size_t> ReadAt(int64_t offset, char* buf, size_t size) const;
  // Like ReadAt, but takes only what the page cache holds now and never waits for the disk
  // (preadv2 with RWF_NOWAIT): returns how many bytes from `offset` on it read, possibly fewer
  // than asked or 0, where the file system cannot tell without blocking too. For threads that
  // must not block (gRPC's callback threads); the caller reads the rest with ReadAt elsewhere.
  absl::StatusOr<size_t> ReadCachedAt(int64_t offset, char* buf, size_t size) const;
  // Whether every page of bytes [offset, offset + size) is in the page cache now (mincore).
  bool Resident(int64_t offset, int64_t size) const;
  // Another descriptor of the open file, for a zero-copy send; invalid when dup fails.
  ScopedFd Dup() const;

 private:
  // ReadAt and ReadCachedAt: preadv2 with `flags` until `size` bytes or the end.
  absl::StatusOr<size_t> Read(int64_t offset, char* buf, size_t size, int flags) const;

  int fd_ = -1;
  std::shared_ptr<const BlobRecord> record_;
};

// Whether `status` (of Size, OpenBlob or ChunkChain) says the blob is simply not stored here:
// NOT_FOUND with reason BLOB_NOT_FOUND, not a blob that was quarantined. Read-through
// (services/read_through.h) fetches such a blob from the origins.
bool IsNotStored(const absl::Status& status);

// What BlobStore::Open takes besides its root.
struct BlobStoreOptions {
  // Whether any version declares the blob `hex` (the catalog's answer). Unset: the store
  // never removes a blob. An error counts as "referenced": a blob is removed only when it
  // is known to be unwanted.
  std::function<absl::StatusOr<bool>(absl::string_view hex)> is_referenced;
  // Where the store's writes go (common/fs.h); null: the real file system. Tests pass a
  // FaultInjectingFs (tests/testing/fault_fs.h).
  Fs* fs = nullptr;
  // The free space an upload must leave on the store's file system (the server's
  // --min-free-space). An Append that would leave less, counting every byte its upload still
  // has to write when the size is known (only the bytes at hand for a session of unknown
  // size), is refused with RESOURCE_EXHAUSTED (reason INSUFFICIENT_SPACE) before a byte is
  // written: a full disk would break the catalog and every other upload, not just this one.
  // Read-through's AppendVerified is not limited. 0: no margin.
  int64_t min_free_bytes = 0;
};

class BlobStore {
 public:
  // Declared outside the class: a nested struct with default member initializers cannot be
  // the default argument of Open.
  using Options = BlobStoreOptions;

  // Opens the store at `root`, creating its folders. Stale temp files from a crash are removed.
  static absl::StatusOr<std::unique_ptr<BlobStore>> Open(const std::string& root,
                                                         Options options = {});

  // All `hex` arguments are 64 lowercase hex digits (callers parse digests with ParseDigest);
  // anything else gives INVALID_ARGUMENT and never reaches the file system.

  // True when a blob with this digest is stored (its file exists; see Size for a check).
  bool Contains(absl::string_view hex) const;
  // The size the store verified for blob `hex`, once the file is seen to still have it.
  // NOT_FOUND when absent (reason BLOB_QUARANTINED when it was quarantined); DATA_LOSS
  // (reason BLOB_SIZE_MISMATCH) when the file's size is no longer the recorded one.
  absl::StatusOr<int64_t> Size(absl::string_view hex) const;
  // Opens a blob, with the same checks as Size. Its bytes are checked against the chain
  // as they are read (ServedBytesCheck). Not an overload of Open: a std::string argument
  // would silently pick the static Open(root) and create a store named after it.
  absl::StatusOr<BlobReader> OpenBlob(absl::string_view hex) const;

  // Moves blob `hex` and its sidecar out of blobs/ into quarantine/<hex>/<unix micros> (with
  // a `.reason` file holding `details`), so it is never served or listed again but is kept
  // for an operator to look at. OK when there is no blob to move (the reason is still kept).
  absl::Status Quarantine(absl::string_view hex, absl::string_view details);
  // Whether blob `hex` was ever quarantined (quarantine/<hex>/ exists).
  bool WasQuarantined(absl::string_view hex) const;
  // Removes blob `hex` and its sidecar because copies elsewhere make this one unneeded (the
  // server's --evict-replicated: its origins hold it and it is read through from them).
  // Readers that opened it keep reading it. OK when it is not stored.
  absl::Status Evict(absl::string_view hex);

  // Every blob in blobs/ (64 hex each), sorted.
  absl::StatusOr<std::vector<std::string>> ListBlobs() const;
  // Reads blob `hex` from the disk, not the page cache where the file system allows
  // (O_DIRECT), and checks its size and every chunk against the recorded chain: what a scrub
  // does. `on_read(n)` is called after each read of n bytes (for pacing and progress); when it
  // returns false the check stops with CANCELLED. DATA_LOSS (reason BLOB_CORRUPT or
  // BLOB_SIZE_MISMATCH) says what does not match; NOT_FOUND when absent.
  absl::Status Verify(absl::string_view hex,
                      const std::function<bool(int64_t bytes)>& on_read = nullptr) const;

  // The number of bytes an upload of `hex` has committed: `expected_size` when the blob is
  // already stored, else the partial upload's length (0 when none).
  absl::StatusOr<int64_t> UploadOffset(absl::string_view hex, int64_t expected_size);

  // Appends `data` to the upload of `hex` at `offset`, hashing as it writes.
  // INVALID_ARGUMENT when `offset` is not the committed size or the upload would exceed
  // `expected_size`; ALREADY_EXISTS when the blob is already stored.
  absl::Status Append(absl::string_view hex, int64_t expected_size, int64_t offset,
                      absl::string_view data);

  // Append for bytes that must follow a known chunk chain: a blob read through from an origin
  // (services/read_through.h), checked against the chain recorded at publish while it
  // arrives, in the pass that hashes it for the store. After the write, each whole chunk not
  // yet compared (all of them on the first call for an upload, e.g. with empty `data` after a
  // restart) is compared with its entry of `expected_chain` (ChunkCount(expected_size)
  // entries, concatenated). Returns how many leading bytes are verified: the whole chunks
  // whose entries matched, and all of them once every byte is there and hashes to `hex` (a
  // wrong last chunk is then left for Finish to refuse).
  // DATA_LOSS (CHUNK_MISMATCH) when an entry differs: the partial is then dropped, so the
  // next upload starts at 0. INVALID_ARGUMENT (INVALID_CHAIN) for a chain of the wrong length.
  absl::StatusOr<int64_t> AppendVerified(absl::string_view hex, int64_t expected_size,
                                         int64_t offset, absl::string_view data,
                                         absl::string_view expected_chain);
  // Drops the bytes of the upload of `hex` past `offset`, a multiple of kChunkDigestBytes not
  // past the whole chunks it holds, as if they had never been appended. Read-through hands an
  // unfinished chunk to the next origin from its start, so that every chunk it checks came
  // from one origin and a mismatch is blamed on the right one.
  absl::Status RewindUpload(absl::string_view hex, int64_t offset);
  // The partial upload of `hex`, open for reading: read-through serves its verified bytes
  // while it grows. The descriptor keeps reading the same bytes after Finish renames the file
  // into blobs/. NOT_FOUND when there is no partial.
  absl::StatusOr<ScopedFd> OpenPartial(absl::string_view hex) const;

  // Verifies the upload of `hex` and moves it into blobs/. DATA_LOSS when the size is not
  // `expected_size` or the SHA-256 differs; the partial upload is then deleted, so the next
  // upload starts at 0. OK (no-op) when the blob is already stored.
  absl::Status Finish(absl::string_view hex, int64_t expected_size);

  // Stores a whole blob from memory in one call (Append + Finish). For small blobs and tests.
  absl::Status Put(absl::string_view hex, absl::string_view data);

  // Upload sessions. `id` is checked with ValidateUploadId (INVALID_ARGUMENT naming
  // `upload_id` otherwise, before any file is touched). `declared_size` is the size the writer
  // announced, 0 when it did not know it (e.g. it reads a pipe): the session may then grow to
  // kMaxBlobBytes and is finished at whatever size it has.

  // The session's state: its committed size (0 for a session nobody wrote, which is not an
  // error: sessions start with their first Append), or its stored digest once finished.
  absl::StatusOr<UploadSessionState> QuerySession(absl::string_view id);

  // Appends `data` at `offset`, hashing as it writes, like Append. INVALID_ARGUMENT when
  // `offset` is not the committed size or the session would exceed its size;
  // ALREADY_EXISTS when the session is finished.
  absl::Status AppendToSession(absl::string_view id, int64_t declared_size, int64_t offset,
                               absl::string_view data);

  // Verifies that the session's bytes hash to `hex` (the writer's digest) and number
  // `declared_size` (when declared), then stores them as blob `hex` like Finish, and records
  // the digest for QuerySession. Returns the blob's size. If the blob is already stored the
  // bytes are dropped instead of stored twice. DATA_LOSS on a mismatch: nothing is stored and
  // the session is discarded (it starts again at 0). Repeating a successful call with the same
  // digest returns OK again; with another digest, ALREADY_EXISTS.
  absl::StatusOr<int64_t> FinishSession(absl::string_view id, int64_t declared_size,
                                        absl::string_view hex);

  // Removes session partials and records not changed for kUploadSessionTtl before `now`, and
  // the blobs of the removed records that nothing wants (see the file comment). Open calls
  // it; so does AppendToSession, at most once an hour.
  absl::Status RemoveExpiredSessions(absl::Time now);

  // The chunk chain of a stored blob for kChunkDigestBytes chunks (common/chunk_chain.h), as
  // its 32-byte entries: ceil(size / kChunkDigestBytes) of them, none for the empty blob, the
  // last one the blob's digest. NOT_FOUND when the blob is absent, DATA_LOSS as for Size.
  // Normally read from the sidecar written by Finish. When the sidecar is missing or not of
  // the current layout (a blob stored by an older version) or damaged, the blob is read once
  // to compute the chain, its whole-file SHA-256 is checked on the way (DATA_LOSS, reason
  // BLOB_CORRUPT, when the bytes on disk no longer match the name; nothing is written), and
  // the sidecar is written so the next call is cheap (and a legacy `.chunks` sidecar
  // removed); failing to write it is an error too.
  absl::StatusOr<std::vector<std::string>> ChunkChain(absl::string_view hex) const;

  const std::string& root() const { return root_; }
  std::string BlobPath(absl::string_view hex) const;

 private:
  BlobStore(std::string root, Options options);
  Fs& fs() const { return options_.fs != nullptr ? *options_.fs : RealFs(); }
  // OK when writing `bytes` more leaves at least Options::min_free_bytes free; else
  // RESOURCE_EXHAUSTED (INSUFFICIENT_SPACE) with the figures.
  absl::Status CheckFreeSpace(absl::string_view key, int64_t bytes) const;
  // Uploads are keyed by the blob's hex digest, or by "session-<upload id>" for a session;
  // a session key is never 64 hex digits, so the two never meet.
  std::string PartialPath(absl::string_view key) const;
  // uploads/session-<id>.done for the session key `key`.
  std::string SessionRecordPath(absl::string_view key) const;
  std::string ChainPath(absl::string_view hex) const;
  // Atomically replaces the sidecar of `hex` with one for a blob of `size` bytes with `chain`
  // (its entries concatenated): temp file in uploads/ (so Open cleans up after a crash), fsync,
  // rename, fsync of the directory.
  absl::Status WriteChain(absl::string_view hex, int64_t size, absl::string_view chain) const;
  // Opens blob `hex` and its record: NOT_FOUND when absent, DATA_LOSS when the file's size is
  // not the recorded one.
  absl::StatusOr<std::pair<ScopedFd, std::shared_ptr<const BlobRecord>>> OpenWithRecord(
      absl::string_view hex) const;
  // The record of blob `hex` open as `fd` with `st`: cached while the file's identity is the
  // same, else read from the sidecar, else (no usable sidecar) computed from the blob.
  absl::StatusOr<std::shared_ptr<const BlobRecord>> LoadRecord(absl::string_view hex, int fd,
                                                               const struct stat& st) const;
  void ForgetRecord(absl::string_view hex) const;
  void RememberRecord(std::shared_ptr<const BlobRecord> record) const;

  // Per-digest upload state, kept in memory so that a resumed upload keeps hashing where it
  // stopped instead of reading its partial file again. After a restart (or when the partial
  // changed behind our back) the state is rebuilt by hashing the partial once.
  struct Upload;
  // Returns the state for `key`, creating it. Shared so that Finish can drop the map entry
  // while another thread still waits on the upload's own mutex.
  std::shared_ptr<Upload> GetUpload(absl::string_view key) ABSL_LOCKS_EXCLUDED(mu_);
  void ForgetUpload(absl::string_view key, const Upload* upload) ABSL_LOCKS_EXCLUDED(mu_);

  // The steps of Append/Finish with `upload->mu` held, so Put can run them as one unit, and
  // digest uploads and sessions share them. AppendLocked refuses to grow the upload beyond
  // `max_size` bytes, and with `keep_margin` to go below Options::min_free_bytes (uploads;
  // not read-through's fills, which serve devices what a version already declared).
  absl::Status AppendLocked(Upload& upload, absl::string_view key, int64_t max_size, int64_t offset,
                            absl::string_view data, bool keep_margin = true);
  absl::Status FinishLocked(Upload& upload, absl::string_view hex, int64_t expected_size);
  // Checks that the upload `key` holds `expected_size` bytes (any number for kAnySize) that
  // hash to `hex`; returns its partial, open. DATA_LOSS, with the partial discarded, when not.
  absl::StatusOr<ScopedFd> VerifyLocked(Upload& upload, absl::string_view key,
                                        int64_t expected_size, absl::string_view hex);
  // Makes the verified partial of `key` (open as `fd`) the blob `hex`: fsync, read-only,
  // chain sidecar, rename into blobs/, fsync of the directory; then forgets the upload.
  absl::Status CommitLocked(Upload& upload, absl::string_view key, absl::string_view hex, int fd);
  // Deletes the partial file and resets `upload` to an empty upload.
  void DiscardLocked(Upload& upload, absl::string_view key);
  absl::StatusOr<int64_t> FinishSessionLocked(Upload& upload, absl::string_view key,
                                              int64_t declared_size, absl::string_view hex);
  // The digest (64 hex) a finished session stored, or "" while it is not finished. A record
  // counts only while no partial exists and its blob is stored: a crash between writing the
  // record and storing the blob leaves the partial, and the session finishes again.
  std::string FinishedDigestLocked(absl::string_view key) const;
  // Runs RemoveExpiredSessions(now) when the last sweep is an hour old. Best effort: a sweep
  // that fails is logged, not reported to the writer whose call triggered it.
  void MaybeRemoveExpiredSessions(absl::Time now);
  // The keys of the sessions that have files in uploads/: with records, and unless
  // `records_only`, with partials (a session with both is listed twice).
  absl::StatusOr<std::vector<std::string>> SessionKeys(bool records_only) const;
  // Removes those of `candidates` (hex digests whose session records just expired) that no
  // version declares and no session record names.
  absl::Status RemoveUnwantedBlobs(const std::vector<std::string>& candidates);
  // Unlinks blob `hex` and then its sidecar (a crash between the two leaves only a small
  // sidecar, never taken for a blob) and forgets its record. Returns the size it had, 0 when
  // it was not stored.
  absl::StatusOr<int64_t> RemoveBlobFiles(absl::string_view hex);

  std::string root_;
  Options options_;
  // Shared by a session's finish from its record write to its blob being in place, exclusive
  // while RemoveUnwantedBlobs decides: a blob a session has just claimed is never removed.
  absl::Mutex claim_mu_;
  // Guards only the map; file I/O happens under each Upload's mutex, so different digests
  // upload in parallel.
  absl::Mutex mu_;
  std::map<std::string, std::shared_ptr<Upload>, std::less<>> uploads_ ABSL_GUARDED_BY(mu_);
  // Records of blobs opened lately, so a Read stream neither rereads the sidecar nor forgets
  // which chunks it verified. Bounded (cleared when full); a record is cheap to reload.
  mutable absl::Mutex records_mu_;
  mutable std::map<std::string, std::shared_ptr<const BlobRecord>, std::less<>> records_
      ABSL_GUARDED_BY(records_mu_);
  absl::Mutex sweep_mu_;
  absl::Time next_sweep_ ABSL_GUARDED_BY(sweep_mu_) = absl::InfinitePast();
};

}  // namespace modeldist::storage

#endif  // MODELDIST_STORAGE_BLOB_STORE_H_
