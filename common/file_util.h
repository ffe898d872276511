// File: file_util.h
//
// Small POSIX file helpers with the durability rules the project relies on: a file written
// "atomically" is written to a temp file in the same directory, fsynced, renamed into place,
// and the directory fsynced, so after a crash a reader sees the old file or the new one.
#ifndef MODELDIST_COMMON_FILE_UTIL_H_
#define MODELDIST_COMMON_FILE_UTIL_H_

#include <sys/types.h>

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace modeldist {

// Reads a whole (small) file. NOT_FOUND when missing.
absl::StatusOr<std::string> ReadFileToString(const std::string& path);

// Writes `contents` to `path` atomically with permission `mode`. With overwrite=false an
// existing `path` gives ALREADY_EXISTS and is left untouched.
absl::Status WriteFileAtomically(const std::string& path, absl::string_view contents, mode_t mode,
                                 bool overwrite = true);

// fsyncs a directory so that a rename or unlink in it is durable.
absl::Status FsyncDir(const std::string& dir);

// mkdir -p with `mode` for created directories.
absl::Status MakeDirs(const std::string& dir, mode_t mode = 0755);

// Writes all of `data` at the fd's current position, retrying on EINTR and short writes.
absl::Status WriteAll(int fd, const void* data, size_t size);

// Returns an absl status for `errno` with "what: strerror" as message.
absl::Status ErrnoStatus(int err, absl::string_view what);

}  // namespace modeldist

#endif  // MODELDIST_COMMON_FILE_UTIL_H_
