#include "common/fs.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>

#include "absl/strings/str_cat.h"
#include "common/file_util.h"

namespace modeldist {

int Fs::Open(const std::string& path, int flags, mode_t mode) {
  return ::open(path.c_str(), flags, mode);
}
ssize_t Fs::Write(int fd, const void* data, size_t size) { return ::write(fd, data, size); }
ssize_t Fs::Pwrite(int fd, const void* data, size_t size, int64_t offset) {
  return ::pwrite(fd, data, size, offset);
}
int Fs::Fsync(int fd) { return ::fsync(fd); }
int Fs::Fdatasync(int fd) { return ::fdatasync(fd); }
int Fs::Ftruncate(int fd, int64_t size) { return ::ftruncate(fd, size); }
int Fs::Rename(const std::string& from, const std::string& to) {
  return ::rename(from.c_str(), to.c_str());
}
int Fs::Link(const std::string& from, const std::string& to) {
  return ::link(from.c_str(), to.c_str());
}
int Fs::Unlink(const std::string& path) { return ::unlink(path.c_str()); }
int Fs::Mkdir(const std::string& path, mode_t mode) { return ::mkdir(path.c_str(), mode); }
int Fs::Statvfs(const std::string& path, struct statvfs* out) {
  return ::statvfs(path.c_str(), out);
}

Fs& RealFs() {
  static Fs* real = new Fs();
  return *real;
}

absl::StatusOr<int64_t> FreeBytes(Fs& fs, const std::string& path) {
  struct statvfs st;
  if (fs.Statvfs(path, &st) != 0) return ErrnoStatus(errno, absl::StrCat("statvfs ", path));
  return static_cast<int64_t>(st.f_bavail) * static_cast<int64_t>(st.f_frsize);
}

}  // namespace modeldist
