#include "client/modeldistctl/hashing_file_reader.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "client/modeldistctl/errors.h"
#include "common/status.h"

namespace modeldist::ctl {
namespace {

// Buffer size of SkipTo and ReadToEnd; the upload's own messages size ReadNext.
constexpr int64_t kSkipChunk = 1 << 20;
// Read-ahead: blocks of this size, at offsets that are multiples of it, read one at a time. One
// request per block: disks serve 4 MiB requests about twice as fast as 1 MiB ones (no other
// request is queued behind them), and the upload's 1 MiB messages take a quarter block each.
constexpr int64_t kBlockBytes = 4 << 20;
// Blocks read or being read ahead of the caller, the one it reads included: the disk stays busy
// while the caller hashes and sends a block, and 12 MiB is small next to a model file.
constexpr int kBlocks = 3;

// Whether every page of [offset, offset + size) of `fd` is in the page cache, from mincore(2)
// on a mapping that is never touched. False when that cannot be told.
bool AllCached(int fd, int64_t offset, size_t size) {
  void* map = ::mmap(nullptr, size, PROT_READ, MAP_SHARED, fd, offset);
  if (map == MAP_FAILED) return false;
  const long page = ::sysconf(_SC_PAGESIZE);
  std::vector<unsigned char> pages((size + page - 1) / page);
  const bool known = ::mincore(map, size, pages.data()) == 0;
  ::munmap(map, size);
  return known && std::all_of(pages.begin(), pages.end(), [](unsigned char p) { return p & 1; });
}

}  // namespace

// Reads a regular file ahead of its one caller, block after block, on a thread of its own. A
// block the page cache holds entirely is copied from there; any other is read with O_DIRECT
// into the block's buffer, so that a file read once does not first fill the page cache (which
// costs more CPU than the copy: docs/benchmarks.md, "Publish"). Without O_DIRECT (a file system
// that refuses it) every block is read through the page cache.
class HashingFileReader::ReadAhead {
 public:
  // Reads the first `size` bytes of `fd` (owned by the HashingFileReader, which outlives this).
  ReadAhead(int fd, std::string path, int64_t size)
      : fd_(fd),
        path_(std::move(path)),
        size_(size),
        buffers_(AllocateAligned(kBlocks * kBlockBytes)) {
    // The same open file, not whatever the path names now.
    direct_fd_ = ScopedFd(
        ::open(absl::StrCat("/proc/self/fd/", fd).c_str(), O_RDONLY | O_DIRECT | O_CLOEXEC));
    if (buffers_ == nullptr) return;  // Read says so
    for (int i = 0; i < kBlocks; ++i) blocks_[i].data = buffers_.get() + i * kBlockBytes;
    thread_ = std::thread([this] { Run(); });
  }

  ~ReadAhead() {
    {
      absl::MutexLock lock(&mu_);
      stop_ = true;
    }
    if (thread_.joinable()) thread_.join();
  }

  ReadAhead(const ReadAhead&) = delete;
  ReadAhead& operator=(const ReadAhead&) = delete;

  // Copies up to `n` bytes at `offset` into `out`; fewer only where the file ends (or ended
  // early: it shrank). Offsets never go back: the blocks before `offset` are reused.
  absl::StatusOr<size_t> Read(int64_t offset, char* out, size_t n) {
    if (buffers_ == nullptr) {
      return absl::ResourceExhaustedError(
          absl::StrCat("no memory to read ", path_, " ahead (", kBlocks * kBlockBytes, " bytes)"));
    }
    size_t done = 0;
    while (done < n && offset + static_cast<int64_t>(done) < size_) {
      const int64_t at = offset + static_cast<int64_t>(done);
      const int64_t start = at / kBlockBytes * kBlockBytes;
      Block& block = blocks_[(start / kBlockBytes) % kBlocks];
      {
        absl::MutexLock lock(&mu_);
        reading_ = start;
        auto arrived = [&] { return block.ready && block.start == start; };
        mu_.Await(absl::Condition(&arrived));
        if (!block.status.ok()) return block.status;
      }
      // The block is ours until `reading_` moves past it: the thread does not touch it.
      const size_t in_block = static_cast<size_t>(at - start);
      if (in_block >= block.size) break;
      const size_t take = std::min(n - done, block.size - in_block);
      std::memcpy(out + done, block.data + in_block, take);
      done += take;
    }
    return done;
  }

 private:
  struct Block {
    int64_t start = -1;  // file offset of data[0]
    size_t size = 0;     // bytes read; less than kBlockBytes only at the end
    bool ready = false;
    absl::Status status;
    char* data = nullptr;  // kBlockBytes, aligned for O_DIRECT
  };

  void Run() {
    for (int64_t start = 0; start < size_; start += kBlockBytes) {
      Block& block = blocks_[(start / kBlockBytes) % kBlocks];
      {
        absl::MutexLock lock(&mu_);
        // The slot is free once the caller reads a block past the one it held.
        auto free = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
          return stop_ || start < reading_ + kBlocks * kBlockBytes;
        };
        mu_.Await(absl::Condition(&free));
        if (stop_) return;
        block.ready = false;
        block.start = -1;
      }
      const size_t want = static_cast<size_t>(std::min(kBlockBytes, size_ - start));
      absl::StatusOr<size_t> n = ReadBlock(start, block.data, want);
      absl::MutexLock lock(&mu_);
      block.start = start;
      block.status = n.status();
      block.size = n.ok() ? *n : 0;
      block.ready = true;
      // An error, or a file that ended early, ends the read-ahead: the caller stops there.
      if (!n.ok() || *n < want) return;
    }
  }

  absl::StatusOr<size_t> ReadBlock(int64_t start, char* data, size_t want) {
    if (direct_fd_.valid() && !AllCached(fd_, start, want)) {
      // At the end of the file O_DIRECT still reads whole aligned blocks, and returns less.
      const size_t aligned =
          (want + kDirectIoAlignment - 1) / kDirectIoAlignment * kDirectIoAlignment;
      absl::StatusOr<size_t> n = PreadDirect(direct_fd_.get(), data, aligned, start, path_);
      if (n.ok()) return std::min(*n, want);
      // Some file systems accept O_DIRECT at open and refuse the read: use the page cache.
      direct_fd_.Close();
    }
    return PreadAll(fd_, data, want, start, path_);
  }

  const int fd_;
  const std::string path_;
  const int64_t size_;
  ScopedFd direct_fd_;  // only the thread uses it
  AlignedBuffer buffers_;
  Block blocks_[kBlocks];
  absl::Mutex mu_;
  // Start of the block the caller reads: blocks before it may be overwritten.
  int64_t reading_ ABSL_GUARDED_BY(mu_) = 0;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;
};

HashingFileReader::HashingFileReader(std::string path, ScopedFd fd, const struct stat& opened)
    : path_(std::move(path)), fd_(std::move(fd)), opened_(opened) {}
HashingFileReader::HashingFileReader(HashingFileReader&&) noexcept = default;
HashingFileReader& HashingFileReader::operator=(HashingFileReader&&) noexcept = default;
HashingFileReader::~HashingFileReader() = default;

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
  absl::StatusOr<size_t> n;
  if (is_pipe()) {
    n = ReadAll(fd_.get(), out->data(), static_cast<size_t>(want), path_);
  } else {
    // Started at the first read, not at Open: publish opens every file before it reads any.
    if (read_ahead_ == nullptr) read_ahead_ = std::make_unique<ReadAhead>(fd_.get(), path_, size());
    n = read_ahead_->Read(position(), out->data(), static_cast<size_t>(want));
  }
  if (!n.ok()) return LocalError(n.status());
  out->resize(*n);
  bytes_read_ += static_cast<int64_t>(*n);
  hash_.Update(*out);
  if (static_cast<int64_t>(*n) < want) {
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
  absl::StatusOr<size_t> n = PreadAll(fd_.get(), out->data(), out->size(), offset, path_);
  if (!n.ok()) return LocalError(n.status());
  bytes_read_ += static_cast<int64_t>(*n);
  if (static_cast<int64_t>(*n) < size) {
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
