// File: unzip.h
//
// Extraction of an untrusted zip archive (a zipped CoreML .mlpackage / .mlmodelc) that can
// neither write outside its target folder nor exhaust the disk by surprise.
//
// Every entry is checked before any byte is written: its name must be a relative path of plain
// components (no `..` or `.`, no leading `/`, no drive letter, no backslash, no control
// characters), it must be a regular file or a directory (unix symlinks, devices, fifos and
// sockets are refused), not encrypted, compressed with a method libzip can decompress, and the
// archive must stay within UnzipLimits. While extracting, an entry that decompresses to more
// or fewer bytes than its declared size is refused as well, so the declared sizes the limits
// were checked against are the sizes written.
//
// Files are created 0644 and directories 0755 with O_NOFOLLOW | O_EXCL in a folder the
// extraction made itself, so nothing pre-existing (least of all a symlink) is ever written
// through.
#ifndef MODELDIST_CLIENT_AGENT_UNZIP_H_
#define MODELDIST_CLIENT_AGENT_UNZIP_H_

#include <cstdint>
#include <string>

#include "absl/status/status.h"

namespace modeldist::agent {

struct UnzipLimits {
  int64_t max_total_bytes = int64_t{64} << 30;  // sum of uncompressed sizes
  int64_t max_entries = 100000;
  // Refuse entries whose uncompressed/compressed ratio exceeds this (zip bombs).
  int64_t max_ratio = 1000;
};

// Extracts the zip archive `zip_path` into `dest_dir`, which must not exist (its parent must).
// On success `dest_dir` holds the archive's files and directories, every one of them fsynced.
// On any error `dest_dir` is removed again: nothing extracted is left behind.
// Errors (each with an ErrorInfo reason, common/status.h):
// * INVALID_ARGUMENT: not a readable zip (ZIP_UNREADABLE), an entry escapes or has an unsafe
//   name (ZIP_UNSAFE_PATH), is a symlink/device/fifo/socket (ZIP_UNSUPPORTED_ENTRY_TYPE), is
//   encrypted or uses an unsupported method (ZIP_UNSUPPORTED_ENTRY), two entries collide
//   (ZIP_DUPLICATE_ENTRY), or data does not match its declared size or CRC (ZIP_CORRUPT).
// * RESOURCE_EXHAUSTED: more than max_entries (ZIP_TOO_MANY_ENTRIES), uncompressed total over
//   max_total_bytes (ZIP_TOO_LARGE), an entry's ratio over max_ratio (ZIP_RATIO_EXCEEDED),
//   or the disk is full.
// * ALREADY_EXISTS: `dest_dir` exists.
// * Other codes from the file system (common/file_util.h ErrnoStatus).
absl::Status UnzipSafely(const std::string& zip_path, const std::string& dest_dir,
                         const UnzipLimits& limits);

}  // namespace modeldist::agent

#endif  // MODELDIST_CLIENT_AGENT_UNZIP_H_
