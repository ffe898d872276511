// File: file_util.h
//
// Small POSIX file helpers with the durability rules the project relies on: a file written
// "atomically" is written to a temp file in the same directory, fsynced, renamed into place,
// and the directory fsynced, so after a crash a reader sees the old file or the new one.
#ifndef MODELDIST_COMMON_FILE_UTIL_H_
#define MODELDIST_COMMON_FILE_UTIL_H_

#include <sys/types.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/fs.h"

namespace modeldist {

// Reads a whole (small) file. NOT_FOUND when missing.
absl::StatusOr<std::string> ReadFileToString(const std::string& path);

// Writes `contents` to `path` atomically with permission `mode`. With overwrite=false an
// existing `path` gives ALREADY_EXISTS and is left untouched. Whatever fails, `path` keeps its
// old contents and no temp file is left. The writes go through `fs` (common/fs.h).
absl::Status WriteFileAtomically(const std::string& path, absl::string_view contents, mode_t mode,
                                 bool overwrite = true, Fs& fs = RealFs());

// fsyncs a directory so that a rename or unlink in it is durable.
absl::Status FsyncDir(const std::string& dir, Fs& fs = RealFs());

// mkdir -p with `mode` for created directories.
absl::Status MakeDirs(const std::string& dir, mode_t mode = 0755, Fs& fs = RealFs());

// Writes all of `data` at the fd's current position, retrying on EINTR and short writes.
absl::Status WriteAll(int fd, const void* data, size_t size, Fs& fs = RealFs());

// Writes all of `data` at `offset` (pwrite), retrying on EINTR and short writes; errors name
// `path`.
absl::Status PwriteAll(int fd, const char* data, size_t size, int64_t offset,
                       const std::string& path, Fs& fs = RealFs());

// Reads at `offset` (pread) until `size` bytes or the end of the file, retrying on EINTR and
// short reads; returns the count (less than `size` only at the end). Errors name `path`.
absl::StatusOr<size_t> PreadAll(int fd, char* buf, size_t size, int64_t offset,
                                const std::string& path);

// Like PreadAll, at the fd's current position (read): also for pipes, which return short reads
// whenever their writer has not written more yet.
absl::StatusOr<size_t> ReadAll(int fd, char* buf, size_t size, const std::string& path);

// O_DIRECT wants buffers, file offsets and lengths aligned to the device's logical block size;
// 4096 is a multiple of every common one.
inline constexpr size_t kDirectIoAlignment = 4096;

struct FreeDeleter {
  void operator()(char* p) const { std::free(p); }
};
// Memory aligned to kDirectIoAlignment, for O_DIRECT reads and writes.
using AlignedBuffer = std::unique_ptr<char, FreeDeleter>;
// `size` bytes (rounded up to a multiple of kDirectIoAlignment); null when there is no memory.
AlignedBuffer AllocateAligned(size_t size);

// PreadAll for a descriptor opened with O_DIRECT: `buf`, `size` and `offset` aligned to
// kDirectIoAlignment. The end of the file comes as a count that is not a multiple of the
// alignment (past it, a read would have to start unaligned), or as a read of 0.
absl::StatusOr<size_t> PreadDirect(int fd, char* buf, size_t size, int64_t offset,
                                   const std::string& path);

// Owns a file descriptor: closed on destruction unless released. Movable, not copyable.
class ScopedFd {
 public:
  explicit ScopedFd(int fd = -1) : fd_(fd) {}
  ScopedFd(ScopedFd&& other) noexcept : fd_(other.Release()) {}
  ScopedFd& operator=(ScopedFd&& other) noexcept {
    if (this != &other) {
      Close();
      fd_ = other.Release();
    }
    return *this;
  }
  ScopedFd(const ScopedFd&) = delete;
  ScopedFd& operator=(const ScopedFd&) = delete;
  ~ScopedFd() { Close(); }

  int get() const { return fd_; }
  bool valid() const { return fd_ >= 0; }
  // Gives up ownership; returns the descriptor.
  int Release() {
    int fd = fd_;
    fd_ = -1;
    return fd;
  }
  // Closes now; returns close()'s result (0 when there was nothing to close), so that callers
  // that must see write-back errors can check it.
  int Close() {
    int rc = fd_ >= 0 ? ::close(fd_) : 0;
    fd_ = -1;
    return rc;
  }

 private:
  int fd_;
};

// Returns a status for `errno` with "what: strerror" as message and the errno in its
// ErrorInfo metadata ({"errno": "5"}): NOT_FOUND (reason FILE_NOT_FOUND) for ENOENT,
// ALREADY_EXISTS (FILE_EXISTS) for EEXIST, PERMISSION_DENIED (FILE_PERMISSION_DENIED) for
// EACCES and EPERM, RESOURCE_EXHAUSTED (DISK_FULL) for ENOSPC and EDQUOT, and UNAVAILABLE
// (IO_ERROR) for the rest.
absl::Status ErrnoStatus(int err, absl::string_view what);

}  // namespace modeldist

#endif  // MODELDIST_COMMON_FILE_UTIL_H_
