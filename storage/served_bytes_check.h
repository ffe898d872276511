// File: served_bytes_check.h
//
// Checks the bytes of one Read stream against the blob's chunk chain before they are all out:
// the server's half of "only verified bytes are ever served".
//
// A reader hands each message's bytes to Check before sending them, in order, each message
// within one chain chunk (MessageEnd says where a message must stop). The chunk's hash is fed
// as its messages pass, and the message that completes a chunk is let through only once the
// chunk matched its chain entry; so a damaged chunk is never complete on the wire: the stream
// ends with DATA_LOSS instead. A stream that starts inside a chunk, or ends inside one (a
// `limit`), reads the rest of that chunk from the file to check it: at most 4 MiB more.
//
// What it costs, and how that is kept small: SHA-256 runs at ~1.3-2 GB/s a core, about as much
// CPU as serving the bytes. A chunk that matched once in this process (BlobRecord's verified
// bits, reset when the file's identity changes) is not hashed again while every byte of it
// comes from the page cache (the caller says so: ReadCachedAt got them all), since those
// are the very pages that were checked. Bytes that come from the disk are always hashed: that
// is where bit rot shows. The one gap left: pages evicted and read back by another process
// are trusted; the scrub (BlobStore::Verify, reading the disk itself) covers it.
//
// Not thread-safe: one per stream.
#ifndef MODELDIST_STORAGE_SERVED_BYTES_CHECK_H_
#define MODELDIST_STORAGE_SERVED_BYTES_CHECK_H_

#include <cstdint>
#include <memory>
#include <optional>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "common/digest.h"
#include "storage/blob_store.h"

namespace modeldist::storage {

class ServedBytesCheck {
 public:
  // `blob` must outlive the check.
  explicit ServedBytesCheck(const BlobReader* blob) : blob_(blob) {}

  // The end of a message that starts at `offset` and wants `want` bytes: it stops at the end
  // of its chain chunk, so each message belongs to one chunk.
  int64_t MessageEnd(int64_t offset, int64_t want) const;

  // Whether Check of the next message (bytes at `offset`, all from the page cache when
  // `from_cache`) can skip hashing: its chunk matched before in this process and every byte of
  // it this stream sent came from the page cache. Cheap; for callers on threads that must not
  // do heavy work (they hand the message to a pool when this is false).
  bool CanSkip(int64_t offset, bool from_cache) const;

  // Checks `data`, the bytes at `offset` about to be sent (the message after the previous one,
  // or the first of the stream). `read_end` is where the stream stops. OK: send them.
  // DATA_LOSS (reason BLOB_CORRUPT, or BLOB_SIZE_MISMATCH when the file is shorter than
  // recorded): do not; the chunk they belong to does not match. May read other bytes of the
  // chunk from the file (the part before a mid-chunk start, the part after a mid-chunk end),
  // so call it where blocking is fine unless CanSkip said true.
  absl::Status Check(int64_t offset, absl::string_view data, bool from_cache, int64_t read_end);

  // Reads the next message into `buf` and Checks it: the `size` bytes at `offset` (no more than
  // MessageEnd allows), of which the first `filled` are in `buf` already (what a caller that must
  // not block took from the page cache). The rest comes from the page cache when it holds it,
  // else from the disk, so this blocks. OK: all `size` bytes are in `buf` and may be sent.
  // DATA_LOSS as Check, or BLOB_SIZE_MISMATCH when the file ends early; an I/O error as is.
  absl::Status FillAndCheck(int64_t offset, char* buf, size_t size, size_t filled,
                            int64_t read_end);

 private:
  // Feeds bytes [from, to) of the current chunk from the file into hash_.
  absl::Status HashFromFile(int64_t from, int64_t to);

  const BlobReader* blob_;
  int64_t chunk_ = -1;          // the chunk of the last message
  bool trusted_ = false;        // chunk_ passes without hashing so far
  std::optional<Sha256> hash_;  // chunk_'s hash, from its start to hashed_to_
  int64_t hashed_to_ = 0;
  std::unique_ptr<char[]> scratch_;  // for HashFromFile
};

// For a zero-copy send (sendfile) of bytes [offset, offset + size) of `blob`: a descriptor of
// its file, when those bytes may go out without hashing by the rule above: every chain chunk
// they belong to matched in this process, the file is the one it was then, and all their pages
// are in the page cache now. nullopt otherwise: send them through a ServedBytesCheck, which
// hashes what it must and marks the chunks that match, so the next send of them is zero-copy.
// The gap is the rule's (pages evicted and read back during the send are trusted), a little
// wider since the kernel reads them after the check; the scrub covers it.
std::optional<ScopedFd> TrustedSendFd(const BlobReader& blob, int64_t offset, int64_t size);

// The same check for a reader that pulls a blob's bytes by offset, as an upload to an origin
// does (an http::BodyReader): every chunk is hashed from the file and matched against its chain
// entry before its last byte is handed out, so no copy of a damaged blob is ever complete at
// an origin. Reads must come in order; a read at another offset (a part sent again, a resumed
// upload) starts a new pass, which first hashes the start of its chunk from the file. Never
// skips hashing: bytes that leave the machine are always checked.
//
// Not thread-safe: one per upload.
class CheckedBlobReads {
 public:
  // `blob` must outlive this.
  explicit CheckedBlobReads(const BlobReader* blob) : blob_(blob) {}

  // Up to `size` bytes at `offset` into `buf` (fewer at the end of a chain chunk); 0 at the
  // end of the blob. DATA_LOSS as ServedBytesCheck::Check, when the chunk does not match.
  absl::StatusOr<size_t> ReadAt(int64_t offset, char* buf, size_t size);

 private:
  const BlobReader* blob_;
  std::optional<ServedBytesCheck> check_;  // the current pass
  int64_t next_ = -1;                      // where the current pass continues
};

}  // namespace modeldist::storage

#endif  // MODELDIST_STORAGE_SERVED_BYTES_CHECK_H_
