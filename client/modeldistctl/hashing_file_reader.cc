#include "client/modeldistctl/hashing_file_reader.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <utility>

#include "absl/strings/str_cat.h"
#include "client/modeldistctl/errors.h"
#include "common/status.h"

namespace modeldist::ctl {
namespace {

// Buffer size of SkipTo; the upload's own messages size ReadNext.
constexpr int64_t kSkipChunk = 1 << 20;

// read(2) or pread(2) until `size` bytes or the end, retrying on EINTR: pipes return short
// reads at any time. `offset` < 0 reads at the file position.
absl::StatusOr<int64_t> ReadFully(int fd, const std::string& path, int64_t offset, char* out,
                                  int64_t size) {
  int64_t done = 0;
  while (done < size) {
    const size_t want = static_cast<size_t>(size - done);
    ssize_t n =
        offset < 0 ? ::read(fd, out + done, want) : ::pread(fd, out + done, want, offset + done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return LocalError(ErrnoStatus(errno, absl::StrCat("reading ", path)));
    if (n == 0) break;
    done += n;
  }
  return done;
}

}  // namespace

absl::StatusOr<HashingFileReader> HashingFileReader::Open(const std::string& path) {
  // O_NONBLOCK is not used: a pipe's writer may start after us, and we wait for it.
  ScopedFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) return LocalError(ErrnoStatus(errno, path));
  struct stat st;
  if (::fstat(fd.get(), &st) != 0) return LocalError(ErrnoStatus(errno, path));
  if (!S_ISREG(st.st_mode) && !S_ISFIFO(st.st_mode)) {
    return LocalError(
        absl::InvalidArgumentError(absl::StrCat(path, " is not a regular file or a pipe")));
  }
  if (S_ISREG(st.st_mode) && st.st_size == 0) {
    return LocalError(absl::InvalidArgumentError(absl::StrCat(path, " is empty")));
  }
  return HashingFileReader(path, std::move(fd), st);
}

absl::Status HashingFileReader::ReadNext(int64_t max, std::string* out) {
  int64_t want = max;
  if (!is_pipe()) want = std::min(want, size() - position());
  out->resize(static_cast<size_t>(std::max<int64_t>(want, 0)));
  if (want <= 0) {
    at_end_ = at_end_ || !is_pipe();
    return absl::OkStatus();
  }
  // Sequential reads: the file position is ours alone, and a pipe has no other kind.
  absl::StatusOr<int64_t> n = ReadFully(fd_.get(), path_, -1, out->data(), want);
  if (!n.ok()) return n.status();
  out->resize(static_cast<size_t>(*n));
  bytes_read_ += *n;
  hash_.Update(*out);
  if (*n < want) {
    if (!is_pipe()) {
      return LocalError(absl::DataLossError(absl::StrCat(path_, " ended at byte ", position(),
                                                         " but had ", size(), "; did it change?")));
    }
    at_end_ = true;
  } else if (!is_pipe() && position() == size()) {
    at_end_ = true;
  }
  return absl::OkStatus();
}

absl::Status HashingFileReader::SkipTo(int64_t offset,
                                       const std::function<void(int64_t)>& on_progress) {
  std::string buffer;
  while (position() < offset) {
    MD_RETURN_IF_ERROR(ReadNext(std::min(kSkipChunk, offset - position()), &buffer));
    if (on_progress) on_progress(position());
    if (buffer.empty() || (at_end_ && position() < offset)) {
      return LocalError(absl::DataLossError(absl::StrCat(path_, " ended at byte ", position(),
                                                         " but the server holds ", offset,
                                                         " bytes of it; did it change?")));
    }
  }
  return absl::OkStatus();
}

absl::Status HashingFileReader::ReadToEnd(const std::function<void(int64_t)>& on_progress) {
  std::string buffer;
  while (!at_end_) {
    MD_RETURN_IF_ERROR(ReadNext(kSkipChunk, &buffer));
    if (on_progress) on_progress(position());
  }
  return absl::OkStatus();
}

absl::Status HashingFileReader::Reread(int64_t offset, int64_t size, std::string* out) {
  if (is_pipe()) {
    return LocalError(absl::FailedPreconditionError(absl::StrCat(
        "the server lost bytes ", offset, " to ", offset + size, " of ", path_,
        ", a pipe, which cannot give them again; publish from a regular file to resume")));
  }
  out->resize(static_cast<size_t>(size));
  absl::StatusOr<int64_t> n = ReadFully(fd_.get(), path_, offset, out->data(), size);
  if (!n.ok()) return n.status();
  bytes_read_ += *n;
  if (*n < size) {
    return LocalError(absl::DataLossError(
        absl::StrCat(path_, " ended at byte ", offset + *n, " on a second read; did it change?")));
  }
  return absl::OkStatus();
}

absl::Status HashingFileReader::CheckUnchanged() const {
  if (is_pipe()) {
    if (position() > 0) return absl::OkStatus();
    return LocalError(
        absl::InvalidArgumentError(absl::StrCat(path_, " gave no bytes; an artifact has some")));
  }
  struct stat now;
  if (::fstat(fd_.get(), &now) != 0) return LocalError(ErrnoStatus(errno, path_));
  if (now.st_size != opened_.st_size || now.st_mtim.tv_sec != opened_.st_mtim.tv_sec ||
      now.st_mtim.tv_nsec != opened_.st_mtim.tv_nsec) {
    return LocalError(absl::FailedPreconditionError(
        absl::StrCat(path_, " changed while it was read (", opened_.st_size, " bytes before, ",
                     now.st_size, " now, or a new modification time); publish it again")));
  }
  return absl::OkStatus();
}

std::string HashingFileReader::DigestHex() const {
  Sha256 copy = hash_;  // FinishHex ends a hash; the reader's own may still be needed.
  return copy.FinishHex();
}

}  // namespace modeldist::ctl
