#include "common/file_util.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

#include "absl/strings/str_cat.h"
#include "common/status.h"

namespace modeldist {

absl::Status ErrnoStatus(int err, absl::string_view what) {
  const std::string message = absl::StrCat(what, ": ", strerror(err));
  const ErrorMetadata metadata = {{"errno", absl::StrCat(err)}};
  switch (err) {
    case ENOENT:
      return MakeError(absl::StatusCode::kNotFound, "FILE_NOT_FOUND", message, metadata);
    case EEXIST:
      return MakeError(absl::StatusCode::kAlreadyExists, "FILE_EXISTS", message, metadata);
    case EACCES:
    case EPERM:
      return MakeError(absl::StatusCode::kPermissionDenied, "FILE_PERMISSION_DENIED", message,
                       metadata);
    case ENOSPC:
    case EDQUOT:
      return MakeError(absl::StatusCode::kResourceExhausted, "DISK_FULL", message, metadata);
    default:
      return MakeError(absl::StatusCode::kUnavailable, "IO_ERROR", message, metadata);
  }
}

absl::StatusOr<std::string> ReadFileToString(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return ErrnoStatus(errno, path);
  std::string out;
  char buf[64 * 1024];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      int err = errno;
      ::close(fd);
      return ErrnoStatus(err, path);
    }
    if (n == 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  ::close(fd);
  return out;
}

absl::Status WriteAll(int fd, const void* data, size_t size, Fs& fs) {
  const char* p = static_cast<const char*>(data);
  while (size > 0) {
    ssize_t n = fs.Write(fd, p, size);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return ErrnoStatus(errno, "write");
    p += n;
    size -= static_cast<size_t>(n);
  }
  return absl::OkStatus();
}

absl::Status PwriteAll(int fd, const char* data, size_t size, int64_t offset,
                       const std::string& path, Fs& fs) {
  while (size > 0) {
    ssize_t n = fs.Pwrite(fd, data, size, offset);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return ErrnoStatus(errno, absl::StrCat("write ", path));
    data += n;
    size -= static_cast<size_t>(n);
    offset += n;
  }
  return absl::OkStatus();
}

namespace {

// Calls `read_some(dest, count, done)` (read or pread of `count` bytes into `dest`, `done` bytes
// in) until `size` bytes or the end, retrying on EINTR and short reads. With `direct`, a count
// that leaves `done` unaligned is the end (see PreadDirect).
template <typename ReadSome>
absl::StatusOr<size_t> ReadUntilFull(char* buf, size_t size, const std::string& path, bool direct,
                                     ReadSome read_some) {
  size_t done = 0;
  while (done < size) {
    ssize_t n = read_some(buf + done, size - done, done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return ErrnoStatus(errno, absl::StrCat("read ", path));
    if (n == 0) break;
    done += static_cast<size_t>(n);
    if (direct && done % kDirectIoAlignment != 0) break;
  }
  return done;
}

}  // namespace

absl::StatusOr<size_t> PreadAll(int fd, char* buf, size_t size, int64_t offset,
                                const std::string& path) {
  return ReadUntilFull(buf, size, path, /*direct=*/false,
                       [&](char* dest, size_t count, size_t done) {
                         return ::pread(fd, dest, count, offset + static_cast<int64_t>(done));
                       });
}

absl::StatusOr<size_t> ReadAll(int fd, char* buf, size_t size, const std::string& path) {
  return ReadUntilFull(buf, size, path, /*direct=*/false,
                       [&](char* dest, size_t count, size_t) { return ::read(fd, dest, count); });
}

AlignedBuffer AllocateAligned(size_t size) {
  const size_t rounded = (size + kDirectIoAlignment - 1) / kDirectIoAlignment * kDirectIoAlignment;
  return AlignedBuffer(static_cast<char*>(std::aligned_alloc(kDirectIoAlignment, rounded)));
}

absl::StatusOr<size_t> PreadDirect(int fd, char* buf, size_t size, int64_t offset,
                                   const std::string& path) {
  return ReadUntilFull(buf, size, path, /*direct=*/true,
                       [&](char* dest, size_t count, size_t done) {
                         return ::pread(fd, dest, count, offset + static_cast<int64_t>(done));
                       });
}

absl::Status FsyncDir(const std::string& dir, Fs& fs) {
  int fd = fs.Open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return ErrnoStatus(errno, dir);
  int rc = fs.Fsync(fd);
  int err = errno;
  ::close(fd);
  return rc == 0 ? absl::OkStatus() : ErrnoStatus(err, absl::StrCat("fsync ", dir));
}

absl::Status MakeDirs(const std::string& dir, mode_t mode, Fs& fs) {
  // mkdir(2) per component rather than std::filesystem::create_directories, which always
  // uses 0777 and so would ignore `mode` (e.g. 0700 for a directory holding keys).
  for (size_t end = dir.find('/', 1);; end = dir.find('/', end + 1)) {
    std::string prefix = dir.substr(0, end);
    if (!prefix.empty() && prefix.back() != '/' && fs.Mkdir(prefix, mode) != 0) {
      int err = errno;
      struct stat st;
      if (err != EEXIST || ::stat(prefix.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
        return ErrnoStatus(err == EEXIST ? ENOTDIR : err, absl::StrCat("mkdir ", prefix));
      }
    }
    if (end == std::string::npos) break;
  }
  return absl::OkStatus();
}

// WriteFileAtomically tries this many temporary names, all taken meaning something is wrong.
constexpr int kMaxTempAttempts = 16;

absl::Status WriteFileAtomically(const std::string& path, absl::string_view contents, mode_t mode,
                                 bool overwrite, Fs& fs) {
  std::filesystem::path target(path);
  std::string dir = target.has_parent_path() ? target.parent_path().string() : ".";
  // A fresh temporary file, never an existing entry: O_EXCL refuses a file or symlink already
  // at the name (left by a crash, planted by someone who can write the directory, or being
  // written by another thread), so nothing is followed, truncated or reused; the next name is
  // tried instead. O_NOFOLLOW says the same for readers of this line.
  std::string tmp;
  int fd = -1;
  for (int attempt = 0; attempt < kMaxTempAttempts && fd < 0; ++attempt) {
    tmp = attempt == 0 ? absl::StrCat(path, ".tmp.", ::getpid())
                       : absl::StrCat(path, ".tmp.", ::getpid(), ".", attempt);
    fd = fs.Open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode);
    if (fd < 0 && errno != EEXIST) return ErrnoStatus(errno, tmp);
  }
  if (fd < 0) return ErrnoStatus(EEXIST, tmp);
  // PwriteAll (at 0 of the fresh file) rather than WriteAll: its errors name the file.
  absl::Status status = PwriteAll(fd, contents.data(), contents.size(), 0, tmp, fs);
  if (status.ok() && ::fchmod(fd, mode) != 0) status = ErrnoStatus(errno, tmp);
  if (status.ok() && fs.Fsync(fd) != 0) status = ErrnoStatus(errno, absl::StrCat("fsync ", tmp));
  ::close(fd);
  if (status.ok()) {
    if (overwrite) {
      if (fs.Rename(tmp, path) != 0) status = ErrnoStatus(errno, path);
    } else if (fs.Link(tmp, path) != 0) {
      // link() fails with EEXIST instead of replacing, which rename() would do.
      status = ErrnoStatus(errno, path);
    }
  }
  fs.Unlink(tmp);
  if (!status.ok()) return status;
  return FsyncDir(dir, fs);
}

}  // namespace modeldist
