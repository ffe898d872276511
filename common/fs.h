// File: fs.h
//
// The seam between the code that writes durable files (the server's blob store and key files,
// the agent's model store and downloads) and the file system, after leveldb's Env: every call
// that can fail with a full or broken disk goes through an Fs, so that tests can make exactly
// that call fail (tests/testing/fault_fs.h: ENOSPC, EIO, short writes, failed fsyncs) and check
// that the caller reports it clearly and loses nothing. Production code uses RealFs(), which is
// the plain POSIX call. Reads stay direct: a failed read cannot lose data.
//
// The methods mirror the system calls they wrap, errno included (-1 and errno on failure), so
// that a call site changes from `::fsync(fd)` to `fs.Fsync(fd)` and nothing else.
#ifndef MODELDIST_COMMON_FS_H_
#define MODELDIST_COMMON_FS_H_

#include <sys/statvfs.h>
#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/status/statusor.h"

namespace modeldist {

class Fs {
 public:
  virtual ~Fs() = default;

  // open(2); `mode` matters only with O_CREAT.
  virtual int Open(const std::string& path, int flags, mode_t mode = 0);
  // write(2) at the descriptor's position, pwrite(2) at `offset`.
  virtual ssize_t Write(int fd, const void* data, size_t size);
  virtual ssize_t Pwrite(int fd, const void* data, size_t size, int64_t offset);
  virtual int Fsync(int fd);
  virtual int Fdatasync(int fd);
  virtual int Ftruncate(int fd, int64_t size);
  virtual int Rename(const std::string& from, const std::string& to);
  virtual int Link(const std::string& from, const std::string& to);
  virtual int Unlink(const std::string& path);
  virtual int Mkdir(const std::string& path, mode_t mode);
  virtual int Statvfs(const std::string& path, struct statvfs* out);
};

// The real file system (the POSIX calls themselves). One shared, stateless instance.
Fs& RealFs();

// The bytes an unprivileged process may still write on the file system holding `path`
// (f_bavail * f_frsize), through `fs`. Errors as ErrnoStatus (common/file_util.h).
absl::StatusOr<int64_t> FreeBytes(Fs& fs, const std::string& path);

}  // namespace modeldist

#endif  // MODELDIST_COMMON_FS_H_
