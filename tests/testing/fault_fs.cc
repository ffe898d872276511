#include "tests/testing/fault_fs.h"

#include <fcntl.h>

#include <cerrno>
#include <functional>

#include "absl/strings/match.h"

namespace modeldist::testing {

void FaultInjectingFs::Inject(const FaultRule& rule) {
  absl::MutexLock lock(&mu_);
  rules_.push_back(Rule{rule});
}

void FaultInjectingFs::Clear() {
  absl::MutexLock lock(&mu_);
  rules_.clear();
  short_written_.clear();
}

void FaultInjectingFs::SetFreeBytes(std::optional<int64_t> bytes) {
  absl::MutexLock lock(&mu_);
  free_bytes_ = bytes;
}

int FaultInjectingFs::injected() const {
  absl::MutexLock lock(&mu_);
  return injected_;
}

std::optional<Fault> FaultInjectingFs::Check(FsOp op, const std::string& path) {
  absl::MutexLock lock(&mu_);
  for (Rule& r : rules_) {
    if (r.rule.op != op || !absl::StartsWith(path, r.rule.path_prefix)) continue;
    if (r.rule.times >= 0 && r.fired >= r.rule.times) continue;
    if (r.seen++ < r.rule.skip) continue;
    ++r.fired;
    ++injected_;
    return r.rule.fault;
  }
  return std::nullopt;
}

std::string FaultInjectingFs::PathOf(int fd) const {
  absl::MutexLock lock(&mu_);
  auto it = paths_.find(fd);
  return it == paths_.end() ? std::string() : it->second;
}

int FaultInjectingFs::Fail(Fault fault) {
  errno = fault == Fault::kIoError ? EIO : ENOSPC;
  return -1;
}

int FaultInjectingFs::Open(const std::string& path, int flags, mode_t mode) {
  if ((flags & O_CREAT) != 0) {
    if (std::optional<Fault> fault = Check(FsOp::kOpen, path)) return Fail(*fault);
  }
  int fd = Fs::Open(path, flags, mode);
  if (fd >= 0) {
    // Descriptors are closed with close(2), not through the seam: a reused number simply
    // gets its new path here.
    absl::MutexLock lock(&mu_);
    paths_[fd] = path;
    short_written_.erase(fd);
  }
  return fd;
}

ssize_t FaultInjectingFs::FaultyWrite(int fd, size_t size,
                                      const std::function<ssize_t(size_t)>& write) {
  {
    absl::MutexLock lock(&mu_);
    if (short_written_.erase(fd) > 0) {
      ++injected_;
      return Fail(Fault::kNoSpace);
    }
  }
  std::optional<Fault> fault = Check(FsOp::kWrite, PathOf(fd));
  if (!fault) return write(size);
  if (*fault != Fault::kShortWrite || size < 2) return Fail(*fault);
  ssize_t n = write(size / 2);
  if (n > 0) {
    absl::MutexLock lock(&mu_);
    short_written_.insert(fd);
  }
  return n;
}

ssize_t FaultInjectingFs::Write(int fd, const void* data, size_t size) {
  return FaultyWrite(fd, size, [&](size_t n) { return Fs::Write(fd, data, n); });
}

ssize_t FaultInjectingFs::Pwrite(int fd, const void* data, size_t size, int64_t offset) {
  return FaultyWrite(fd, size, [&](size_t n) { return Fs::Pwrite(fd, data, n, offset); });
}

int FaultInjectingFs::Fsync(int fd) {
  if (std::optional<Fault> fault = Check(FsOp::kFsync, PathOf(fd))) return Fail(*fault);
  return Fs::Fsync(fd);
}

int FaultInjectingFs::Fdatasync(int fd) {
  if (std::optional<Fault> fault = Check(FsOp::kFsync, PathOf(fd))) return Fail(*fault);
  return Fs::Fdatasync(fd);
}

int FaultInjectingFs::Ftruncate(int fd, int64_t size) {
  if (std::optional<Fault> fault = Check(FsOp::kTruncate, PathOf(fd))) return Fail(*fault);
  return Fs::Ftruncate(fd, size);
}

int FaultInjectingFs::Rename(const std::string& from, const std::string& to) {
  if (std::optional<Fault> fault = Check(FsOp::kRename, to)) return Fail(*fault);
  return Fs::Rename(from, to);
}

int FaultInjectingFs::Link(const std::string& from, const std::string& to) {
  if (std::optional<Fault> fault = Check(FsOp::kLink, to)) return Fail(*fault);
  return Fs::Link(from, to);
}

int FaultInjectingFs::Unlink(const std::string& path) {
  if (std::optional<Fault> fault = Check(FsOp::kUnlink, path)) return Fail(*fault);
  return Fs::Unlink(path);
}

int FaultInjectingFs::Mkdir(const std::string& path, mode_t mode) {
  if (std::optional<Fault> fault = Check(FsOp::kMkdir, path)) return Fail(*fault);
  return Fs::Mkdir(path, mode);
}

int FaultInjectingFs::Statvfs(const std::string& path, struct statvfs* out) {
  int rc = Fs::Statvfs(path, out);
  absl::MutexLock lock(&mu_);
  if (rc == 0 && free_bytes_) {
    out->f_frsize = 1;
    out->f_bavail = static_cast<fsblkcnt_t>(*free_bytes_);
    out->f_bfree = out->f_bavail;
  }
  return rc;
}

}  // namespace modeldist::testing
