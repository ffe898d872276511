// File: tar.h
//
// A small streaming POSIX tar (ustar, with a pax `size` record for files of 8 GiB and more):
// what a model bundle is (common/bundle_format.h). Both sides stream: the writer takes an
// entry's bytes in pieces of any size, the reader hands them out in pieces, so an archive of a
// 16 GiB model is never held in memory. Only regular files are written and read; entry names
// are plain relative paths of at most 100 bytes.
//
// The reader trusts nothing: every header's checksum is checked, sizes and pax records are
// bounded, and an archive that ends before its end-of-archive blocks (two zero blocks) is
// DATA_LOSS (TAR_TRUNCATED). Errors name the archive's path and the byte offset.
#ifndef MODELDIST_COMMON_TAR_H_
#define MODELDIST_COMMON_TAR_H_

#include <cstdint>
#include <functional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace modeldist {

// The tar block size: headers are one block, bodies are padded to a multiple of it.
inline constexpr int64_t kTarBlockBytes = 512;
// The largest entry written or read (1 PiB, far past any model): a header claiming more is
// hostile, and the bound keeps every offset sum far from int64 overflow.
inline constexpr int64_t kMaxTarEntryBytes = int64_t{1} << 50;

// Writes an archive to `fd` (not owned) from its current position. Usage:
//   TarWriter tar(fd, path);
//   MD_RETURN_IF_ERROR(tar.Begin("index", size));
//   MD_RETURN_IF_ERROR(tar.Write(bytes));   // any number of times, `size` bytes in all
//   MD_RETURN_IF_ERROR(tar.End());          // pads the entry
//   ... more entries ...
//   MD_RETURN_IF_ERROR(tar.Finish());       // the two zero blocks
// Errors: INVALID_ARGUMENT (TAR_BAD_ENTRY) for a name that the entry-name rule refuses
// (common/entry_names.h: empty, absolute, `.`/`..`/empty components, backslashes, control
// characters, a trailing `/`) or longer than 100 bytes, or a size < 0 or > kMaxTarEntryBytes;
// FAILED_PRECONDITION (TAR_BAD_ENTRY) when an entry gets more or fewer bytes than it declared;
// write errors as ErrnoStatus.
class TarWriter {
 public:
  TarWriter(int fd, std::string path) : fd_(fd), path_(std::move(path)) {}

  absl::Status Begin(absl::string_view name, int64_t size);
  absl::Status Write(absl::string_view data);
  absl::Status End();
  // Begin, Write, End of a small entry.
  absl::Status Add(absl::string_view name, absl::string_view data);
  absl::Status Finish();

 private:
  absl::Status WriteHeader(absl::string_view name, int64_t size, char type);

  int fd_;
  std::string path_;
  int64_t declared_ = -1;  // the open entry's size; -1 when none is open
  int64_t written_ = 0;
};

// Reads an archive from `fd` (not owned) front to back, never seeking.
//   TarReader tar(fd, path);
//   TarEntry entry;
//   while (true) {
//     MD_ASSIGN_OR_RETURN(bool more, tar.Next(&entry));
//     if (!more) break;                      // end-of-archive blocks seen
//     MD_RETURN_IF_ERROR(tar.Read(entry.size, sink));   // or Skip
//   }
struct TarEntry {
  std::string name;
  int64_t size = 0;
  int64_t offset = 0;  // where the entry's header starts in the archive, for messages
};

class TarReader {
 public:
  TarReader(int fd, std::string path) : fd_(fd), path_(std::move(path)) {}

  // The next regular file's header, skipping what is left of the previous entry's body.
  // false at the end-of-archive blocks. Errors: DATA_LOSS (TAR_TRUNCATED) for an archive
  // that ends early; INVALID_ARGUMENT (TAR_BAD_HEADER) for a bad checksum or number, an
  // entry that is not a regular file (links, folders, devices), a name the writer would
  // refuse (however it arrived: ustar name, prefix or pax path), a size over
  // kMaxTarEntryBytes, a pax header that is not a `size`/`path`/`mtime`... record list or is
  // over 64 KiB, a zero block followed by data; read errors as ErrnoStatus.
  absl::StatusOr<bool> Next(TarEntry* entry);

  // Passes the next `limit` bytes of the current entry's body to `sink` in pieces of at most
  // 1 MiB; `limit` must not exceed Remaining(). Stops with the sink's error. TAR_TRUNCATED
  // when the archive ends early.
  absl::Status Read(int64_t limit, const std::function<absl::Status(absl::string_view)>& sink);
  // The whole (small) body, at most `max_bytes` (else INVALID_ARGUMENT, TAR_ENTRY_TOO_LARGE).
  absl::StatusOr<std::string> ReadSmall(int64_t max_bytes);
  // Bytes of the current entry's body not yet read.
  int64_t Remaining() const { return remaining_; }
  const std::string& path() const { return path_; }

 private:
  absl::Status ReadExactly(char* buf, size_t size);
  absl::Status SkipBytes(int64_t size);
  absl::Status BadHeader(absl::string_view what) const;

  int fd_;
  std::string path_;
  int64_t position_ = 0;   // bytes read from fd_
  int64_t remaining_ = 0;  // of the current body
  int64_t padding_ = 0;    // after the current body
  std::string buffer_;
};

}  // namespace modeldist

#endif  // MODELDIST_COMMON_TAR_H_
