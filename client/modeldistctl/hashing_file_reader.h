// File: hashing_file_reader.h
//
// Reads a file that publish uploads exactly once, in order, hashing every byte as it is read:
// the SHA-256 a version must declare comes out of the same pass that sends the bytes, so a
// 16 GiB model costs 16 GiB of reads, not 32. Works on pipes (FIFOs) too, which can only be
// read once.
//
// A regular file is read ahead of the caller by a thread of its own (ReadAhead in the .cc), in
// aligned blocks: from the page cache when a block is all there, else straight from the disk
// (O_DIRECT), which spares the cost of filling the page cache with a file that is read once. The
// disk reads while the caller hashes and sends what came before. Pipes are read as they come.
//
// Bytes are read a second time only after a failure, and only through the two calls made for
// it:
//   - SkipTo: the server already holds a prefix of the file (a run before this one was
//     interrupted); the prefix is read again, only to rebuild the hash. On a pipe this is
//     simply reading on, since a pipe's earlier bytes went to the run that was interrupted.
//   - Reread: a broken stream lost bytes the server had not committed yet; a regular file
//     gives them again, not hashed again. A pipe cannot, which is a local error.
// bytes_read() counts every byte handed out (blocks read ahead count once they are), so tests
// can check the rule.
#ifndef MODELDIST_CLIENT_MODELDISTCTL_HASHING_FILE_READER_H_
#define MODELDIST_CLIENT_MODELDISTCTL_HASHING_FILE_READER_H_

#include <sys/stat.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/digest.h"
#include "common/file_util.h"

namespace modeldist::ctl {

class HashingFileReader {
 public:
  // Opens `path`, which must be a regular file of at least 1 byte (an artifact has one) or a
  // pipe. A local error (errors.h) otherwise.
  static absl::StatusOr<HashingFileReader> Open(const std::string& path);

  HashingFileReader(HashingFileReader&&) noexcept;
  HashingFileReader& operator=(HashingFileReader&&) noexcept;
  ~HashingFileReader();

  const std::string& path() const { return path_; }
  bool is_pipe() const { return S_ISFIFO(opened_.st_mode); }
  // The size when opened; -1 for a pipe, whose size is known only at its end.
  int64_t size() const { return is_pipe() ? -1 : static_cast<int64_t>(opened_.st_size); }
  // What fstat said at Open: the file's identity (device, inode, size, modification time).
  const struct stat& opened_stat() const { return opened_; }
  // Bytes read and hashed so far: the position of the next ReadNext.
  int64_t position() const { return hash_.bytes(); }
  // True once ReadNext reached the end: size() bytes of a regular file, or EOF of a pipe.
  bool at_end() const { return at_end_; }
  // Every byte handed out so far (ReadNext, SkipTo, ReadToEnd, Reread), rereads included.
  int64_t bytes_read() const { return bytes_read_; }

  // Reads the next bytes, up to `max`, into `out` (resized to what was read) and hashes them.
  // Fewer than `max` only at the end; a regular file is never read past the size it had at
  // Open (CheckUnchanged notices growth). A regular file that ends early is a local error.
  absl::Status ReadNext(int64_t max, std::string* out);

  // Reads and hashes on to `offset` without returning the bytes; `on_progress` gets the
  // position as it goes. A local error when the file ends first.
  absl::Status SkipTo(int64_t offset, const std::function<void(int64_t)>& on_progress = nullptr);

  // Reads and hashes on to the end (e.g. to learn a file's digest without uploading it).
  absl::Status ReadToEnd(const std::function<void(int64_t)>& on_progress = nullptr);

  // Reads [offset, offset + size) again into `out`; the range must have been read already. The
  // hash is not touched. A local error for a pipe.
  absl::Status Reread(int64_t offset, int64_t size, std::string* out);

  // At the end: a local error when the file's size or modification time is not what it was
  // at Open, i.e. it changed while it was read (a pipe has neither to compare). A pipe that
  // gave no bytes is an error here too: an artifact has at least one.
  absl::Status CheckUnchanged() const;

  // The SHA-256 (lowercase hex) of the bytes read so far.
  std::string DigestHex() const;

 private:
  class ReadAhead;

  HashingFileReader(std::string path, ScopedFd fd, const struct stat& opened);

  std::string path_;
  ScopedFd fd_;
  struct stat opened_;
  // Regular files only, from the first ReadNext on.
  std::unique_ptr<ReadAhead> read_ahead_;
  Sha256 hash_;
  bool at_end_ = false;
  int64_t bytes_read_ = 0;
};

}  // namespace modeldist::ctl

#endif  // MODELDIST_CLIENT_MODELDISTCTL_HASHING_FILE_READER_H_
