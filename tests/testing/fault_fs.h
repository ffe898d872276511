// File: fault_fs.h
//
// FaultInjectingFs: the file-system seam (common/fs.h) with faults on demand, after leveldb's
// FaultInjectionTestEnv. A rule makes calls of one kind fail, optionally only those on paths
// under a prefix (descriptor calls match by the path the descriptor was opened with through
// this Fs), after letting the first `skip` such calls through, and `times` times (forever by
// default). The faults are those a full or failing disk gives:
//   * kNoSpace: the call fails with ENOSPC;
//   * kIoError: the call fails with EIO (on kFsync: a failed fsync, whose data is then unsure);
//   * kShortWrite (kWrite only): half of the bytes are written and their count returned, and
//     the caller's next write to that descriptor fails with ENOSPC, which is how a disk that
//     fills up mid-write looks to the writer.
// The free space Statvfs reports can be set (SetFreeBytes), for the free-space margin.
// Everything not matched by a rule is the real call. Thread-safe.
#ifndef MODELDIST_TESTS_TESTING_FAULT_FS_H_
#define MODELDIST_TESTS_TESTING_FAULT_FS_H_

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "common/fs.h"

namespace modeldist::testing {

enum class FsOp {
  kOpen,   // only opens with O_CREAT: a full disk refuses a new file, not opening one
  kWrite,  // write and pwrite
  kFsync,  // fsync and fdatasync
  kTruncate,
  kRename,
  kLink,
  kUnlink,
  kMkdir,
};

enum class Fault { kNoSpace, kIoError, kShortWrite };

struct FaultRule {
  FsOp op = FsOp::kWrite;
  Fault fault = Fault::kNoSpace;
  // Only calls on paths starting with this (all when empty).
  std::string path_prefix;
  // Matching calls let through before the first fault.
  int skip = 0;
  // Faults to inject; -1: every matching call from then on.
  int times = -1;
};

class FaultInjectingFs : public Fs {
 public:
  // Adds a rule; rules are checked in the order added, the first that fires wins.
  void Inject(const FaultRule& rule);
  // Removes every rule and pending short-write follow-up: the disk is healthy again.
  void Clear();
  // Makes Statvfs report `bytes` free (f_bavail * f_frsize); nullopt: the real figure.
  void SetFreeBytes(std::optional<int64_t> bytes);
  // How many faults were injected so far (a test checks its fault was reached).
  int injected() const;
  // The fault for a call of `op` on `path`, counting it as a rule's call; nullopt: let it
  // through. For other seams that consult the same rules (fault_vfs.h: SQLite's writes).
  std::optional<Fault> Check(FsOp op, const std::string& path) ABSL_LOCKS_EXCLUDED(mu_);

  int Open(const std::string& path, int flags, mode_t mode = 0) override;
  ssize_t Write(int fd, const void* data, size_t size) override;
  ssize_t Pwrite(int fd, const void* data, size_t size, int64_t offset) override;
  int Fsync(int fd) override;
  int Fdatasync(int fd) override;
  int Ftruncate(int fd, int64_t size) override;
  int Rename(const std::string& from, const std::string& to) override;
  int Link(const std::string& from, const std::string& to) override;
  int Unlink(const std::string& path) override;
  int Mkdir(const std::string& path, mode_t mode) override;
  int Statvfs(const std::string& path, struct statvfs* out) override;

 private:
  struct Rule {
    FaultRule rule;
    int seen = 0;
    int fired = 0;
  };
  std::string PathOf(int fd) const ABSL_LOCKS_EXCLUDED(mu_);
  // Fails the call with the errno of `fault` (-1).
  static int Fail(Fault fault);
  // Write and Pwrite: `write` does the real call with the size given.
  ssize_t FaultyWrite(int fd, size_t size, const std::function<ssize_t(size_t)>& write);

  mutable absl::Mutex mu_;
  std::vector<Rule> rules_ ABSL_GUARDED_BY(mu_);
  std::map<int, std::string> paths_ ABSL_GUARDED_BY(mu_);
  std::set<int> short_written_ ABSL_GUARDED_BY(mu_);
  std::optional<int64_t> free_bytes_ ABSL_GUARDED_BY(mu_);
  int injected_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace modeldist::testing

#endif  // MODELDIST_TESTS_TESTING_FAULT_FS_H_
