#include "client/download/artifact_download.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <deque>
#include <memory>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "client/download/raw_read.h"
#include "common/digest.h"
#include "common/file_util.h"
#include "common/status.h"

namespace modeldist::client {
namespace {

// Buffer for re-hashing an existing partial; big enough that the syscall cost vanishes.
constexpr size_t kRehashBufferBytes = 1 << 20;
// Received chunks are hashed and written in slices of this size (see HashWriter).
constexpr size_t kSliceBytes = 64 * 1024;

std::string DirName(const std::string& path) {
  size_t slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

// A verification failure: the partial cannot be trusted, so it goes; a retry starts over.
absl::Status DiscardPartial(const std::string& partial, absl::Status failure) {
  ::unlink(partial.c_str());
  return failure;
}

// Feeds bytes [0, length) of `fd` to `hash`. Fails with DATA_LOSS if the file is shorter.
absl::Status HashPrefix(int fd, int64_t length, const std::string& partial, Sha256* hash) {
  std::vector<char> buffer(kRehashBufferBytes);
  int64_t offset = 0;
  while (offset < length) {
    size_t want = static_cast<size_t>(std::min<int64_t>(length - offset, buffer.size()));
    ssize_t n = ::pread(fd, buffer.data(), want, offset);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return ErrnoStatus(errno, absl::StrCat("reading ", partial));
    if (n == 0) {
      return absl::DataLossError(absl::StrCat(partial, " shrank to ", offset,
                                              " bytes while "
                                              "being resumed"));
    }
    hash->Update(buffer.data(), static_cast<size_t>(n));
    offset += n;
  }
  return absl::OkStatus();
}

// Hashes bytes and appends them to a file in writes of about kSliceBytes. Each slice is written
// right after it is hashed, while it is still in the CPU cache: on the 2-vCPU CI VM
// (docs/benchmarks.md) writing a whole 256 KiB chunk after hashing it cost 3.3 CPU-s/GB end to
// end; slicing cut it to 1.7. Small pieces are gathered into one writev: gRPC's received
// slices, which the pieces point into, can be as small as 8 KiB (its first TCP reads).
class HashWriter {
 public:
  HashWriter(int fd, const std::string& path, Sha256* hash) : fd_(fd), path_(path), hash_(hash) {}

  // Hashes `piece` and queues it for writing; writes once kSliceBytes are queued. `piece` must
  // stay valid until the next Flush.
  absl::Status Add(absl::string_view piece) {
    for (size_t pos = 0; pos < piece.size(); pos += kSliceBytes) {
      const size_t n = std::min(kSliceBytes, piece.size() - pos);
      hash_->Update(piece.data() + pos, n);
      iov_.push_back({const_cast<char*>(piece.data() + pos), n});
      queued_ += n;
      if (queued_ >= kSliceBytes || iov_.size() >= kMaxIov) MD_RETURN_IF_ERROR(Flush());
    }
    return absl::OkStatus();
  }

  // Writes whatever is queued.
  absl::Status Flush() {
    size_t i = 0;
    while (i < iov_.size()) {
      ssize_t n = ::writev(fd_, &iov_[i], static_cast<int>(iov_.size() - i));
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return ErrnoStatus(errno, absl::StrCat("writing ", path_));
      // A short write: skip what went out, resume inside the first iovec not fully written.
      for (size_t left = static_cast<size_t>(n); left > 0;) {
        const size_t k = std::min(left, iov_[i].iov_len);
        iov_[i].iov_base = static_cast<char*>(iov_[i].iov_base) + k;
        iov_[i].iov_len -= k;
        left -= k;
        if (iov_[i].iov_len == 0) ++i;
      }
    }
    iov_.clear();
    queued_ = 0;
    return absl::OkStatus();
  }

 private:
  // Well under IOV_MAX (1024).
  static constexpr size_t kMaxIov = 64;

  const int fd_;
  const std::string path_;
  Sha256* const hash_;
  std::vector<iovec> iov_;
  size_t queued_ = 0;
};

// Hashes and writes received chunks on a second thread, so that receiving the next chunk
// (HTTP/2 framing and parsing, on the caller's thread) overlaps with hashing and writing the one
// before. Chunks are views into gRPC's receive buffers (client/download/raw_read.h), queued
// with the references that keep those alive: nothing is copied. At most kDepth chunks wait and
// their vectors are recycled, so memory stays at a few chunks whatever the artifact size.
// Bytes are hashed and written in order.
class HashWritePipeline {
 public:
  HashWritePipeline(int fd, const std::string& path, Sha256* hash) : writer_(fd, path, hash) {
    worker_ = std::thread([this] { Run(); });
  }
  ~HashWritePipeline() { (void)Drain(); }

  // Moves `*chunk` into the queue and leaves `*chunk` empty (with recycled capacity). Blocks
  // while the queue is full. Returns the worker's first error; nothing is queued after one.
  absl::Status Push(ReadChunk* chunk) {
    absl::MutexLock lock(&mu_);
    mu_.Await(absl::Condition(this, &HashWritePipeline::HasRoomOrError));
    if (!error_.ok()) return error_;
    queue_.push_back(std::move(*chunk));
    if (!free_.empty()) {
      *chunk = std::move(free_.back());
      free_.pop_back();
    } else {
      *chunk = ReadChunk();
    }
    return absl::OkStatus();
  }

  // Waits until every queued chunk is hashed and written, stops the worker, and returns the
  // first error. Idempotent.
  absl::Status Drain() {
    {
      absl::MutexLock lock(&mu_);
      closed_ = true;
    }
    if (worker_.joinable()) worker_.join();
    absl::MutexLock lock(&mu_);
    return error_;
  }

 private:
  static constexpr size_t kDepth = 4;

  bool HasRoomOrError() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return queue_.size() < kDepth || !error_.ok();
  }
  bool HasWorkOrClosed() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return !queue_.empty() || closed_;
  }

  void Run() {
    for (;;) {
      ReadChunk chunk;
      {
        absl::MutexLock lock(&mu_);
        mu_.Await(absl::Condition(this, &HashWritePipeline::HasWorkOrClosed));
        if (queue_.empty()) return;  // closed and drained
        chunk = std::move(queue_.front());
        queue_.pop_front();
      }
      absl::Status status;
      for (absl::string_view piece : chunk.data) {
        status = writer_.Add(piece);
        if (!status.ok()) break;
      }
      if (status.ok()) status = writer_.Flush();  // before the pieces go away
      chunk.Clear();  // hands gRPC's buffers back; the vectors keep their capacity
      absl::MutexLock lock(&mu_);
      if (!status.ok() && error_.ok()) error_ = status;
      free_.push_back(std::move(chunk));
      if (!error_.ok()) queue_.clear();
    }
  }

  HashWriter writer_;  // used by the worker only
  absl::Mutex mu_;
  std::deque<ReadChunk> queue_ ABSL_GUARDED_BY(mu_);
  std::vector<ReadChunk> free_ ABSL_GUARDED_BY(mu_);
  absl::Status error_ ABSL_GUARDED_BY(mu_);
  bool closed_ ABSL_GUARDED_BY(mu_) = false;
  std::thread worker_;
};

}  // namespace

std::string PartialPath(const std::string& out_path) { return out_path + ".partial"; }

absl::StatusOr<DownloadResult> DownloadArtifact(std::shared_ptr<grpc::ChannelInterface> channel,
                                                const std::string& digest, int64_t expected_size,
                                                const std::string& out_path,
                                                const DownloadOptions& options) {
  MD_ASSIGN_OR_RETURN(std::string want_hex, ParseDigest("digest", digest));
  if (expected_size < 0) {
    return InvalidArgument("expected_size", "INVALID_SIZE", "expected_size must be >= 0");
  }
  if (out_path.empty()) {
    return InvalidArgument("out_path", "EMPTY_PATH", "out_path is required");
  }
  const std::string partial = PartialPath(out_path);

  DownloadResult result;
  result.path = out_path;
  result.digest = digest;
  result.size_bytes = expected_size;

  // Decide where to start. A partial longer than the artifact cannot be a prefix of it.
  Sha256 hash;
  int64_t offset = 0;
  int fd = -1;
  if (options.resume) {
    fd = ::open(partial.c_str(), O_RDWR | O_CLOEXEC);
    if (fd < 0 && errno != ENOENT) return ErrnoStatus(errno, partial);
  }
  if (fd >= 0) {
    struct stat st;
    if (::fstat(fd, &st) != 0) {
      int err = errno;
      ::close(fd);
      return ErrnoStatus(err, partial);
    }
    offset = st.st_size;
    if (options.resume_offset >= 0) offset = std::min(offset, options.resume_offset);
    if (offset > expected_size) offset = 0;
  } else {
    fd = ::open(partial.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) return ErrnoStatus(errno, partial);
  }
  ScopedFd file(fd);
  if (offset > 0) MD_RETURN_IF_ERROR(HashPrefix(file.get(), offset, partial, &hash));
  // Drop anything past the resume point, then append from there.
  if (::ftruncate(file.get(), offset) != 0 || ::lseek(file.get(), offset, SEEK_SET) != offset) {
    return ErrnoStatus(errno, absl::StrCat("truncating ", partial));
  }
  result.resumed_from = offset;

  if (offset < expected_size) {
    grpc::ClientContext context;
    if (options.timeout != absl::InfiniteDuration()) {
      context.set_deadline(absl::ToChronoTime(absl::Now() + options.timeout));
    }
    v1::ReadRequest request;
    request.set_digest(digest);
    request.set_offset(offset);
    RawReadStream stream(channel, &context, request);

    // One chunk object for the whole stream: the pipeline hands back a recycled one, so the
    // steady state allocates nothing.
    ReadChunk chunk;
    HashWritePipeline pipeline(file.get(), partial, &hash);
    absl::Status local;  // first local failure; ends the stream early
    while (stream.Next(&chunk)) {
      const int64_t size = static_cast<int64_t>(chunk.size());
      if (chunk.offset != offset) {
        local = absl::DataLossError(
            absl::StrCat("chunk at offset ", chunk.offset, ", expected ", offset));
      } else if (size > expected_size - offset) {
        local = absl::DataLossError(
            absl::StrCat(digest, " is longer than the expected ", expected_size, " bytes"));
      } else {
        local = pipeline.Push(&chunk);
      }
      if (!local.ok()) {
        context.TryCancel();
        break;
      }
      offset += size;
      result.bytes_received += size;
      if (options.on_progress) options.on_progress(offset, expected_size);
    }
    if (absl::Status written = pipeline.Drain(); local.ok()) local = written;
    if (absl::Status finished = stream.Finish(); local.ok()) local = finished;
    if (!local.ok()) {
      if (absl::IsDataLoss(local) || offset == 0) return DiscardPartial(partial, local);
      return local;
    }
  }

  if (offset != expected_size) {
    return DiscardPartial(partial,
                          absl::DataLossError(absl::StrCat(digest, " ended after ", offset,
                                                           " bytes, expected ", expected_size)));
  }
  std::string got_hex = hash.FinishHex();
  if (got_hex != want_hex) {
    return DiscardPartial(
        partial,
        MakeError(absl::StatusCode::kDataLoss, "DIGEST_MISMATCH",
                  absl::StrCat("downloaded bytes hash to sha256:", got_hex, ", expected ", digest),
                  {{"digest", digest}}));
  }
  if (options.fsync && ::fsync(file.get()) != 0) {
    return ErrnoStatus(errno, absl::StrCat("fsync ", partial));
  }
  if (file.Close() != 0) return ErrnoStatus(errno, absl::StrCat("closing ", partial));
  if (::rename(partial.c_str(), out_path.c_str()) != 0) {
    return ErrnoStatus(errno, absl::StrCat("renaming ", partial, " to ", out_path));
  }
  if (options.fsync) MD_RETURN_IF_ERROR(FsyncDir(DirName(out_path)));
  return result;
}

}  // namespace modeldist::client
