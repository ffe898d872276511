#include "client/modeldistctl/upload.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <memory>
#include <random>
#include <utility>

#include "absl/strings/str_cat.h"
#include "client/modeldistctl/errors.h"
#include "common/file_util.h"
#include "common/status.h"

namespace modeldist::ctl {
namespace {


// Reads exactly `size` bytes at `offset`; a short file is a local error, since the bytes the
// digest was computed over are gone.
absl::Status PreadFully(int fd, const std::string& path, int64_t offset, char* out, int64_t size) {
  int64_t done = 0;
  while (done < size) {
    ssize_t n = ::pread(fd, out + done, static_cast<size_t>(size - done), offset + done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return LocalError(ErrnoStatus(errno, absl::StrCat("reading ", path)));
    if (n == 0) {
      return LocalError(absl::DataLossError(
          absl::StrCat(path, " ended at byte ", offset + done, "; did it change after hashing?")));
    }
    done += n;
  }
  return absl::OkStatus();
}

}  // namespace

bool RetryPolicy::IsRetryable(const absl::Status& status) const {
  // Errors the CLI made itself (a file it cannot read) are never the network's fault.
  return !status.ok() && ExitCodeFor(status) == kExitRpc &&
         retryable_codes.count(status.code()) > 0;
}

absl::Duration RetryPolicy::Backoff(int retry, double random) const {
  double scale = std::pow(multiplier, std::max(0, retry - 1));
  absl::Duration base = std::min(max_backoff, initial_backoff * scale);
  return base * (1.0 - jitter * std::clamp(random, 0.0, 1.0));
}

ArtifactUploader::ArtifactUploader(RegistryClient* client, UploadOptions options)
    : client_(client), options_(std::move(options)) {
  if (!options_.random) {
    auto engine = std::make_shared<std::mt19937_64>(std::random_device{}());
    options_.random = [engine] {
      return std::uniform_real_distribution<double>(0.0, 1.0)(*engine);
    };
  }
}

absl::Status ArtifactUploader::Upload(const std::string& path, const std::string& digest,
                                      int64_t size, UploadStats* stats) {
  ScopedFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (fd.get() < 0) return LocalError(ErrnoStatus(errno, absl::StrCat("opening ", path)));
  struct stat st;
  if (::fstat(fd.get(), &st) != 0) {
    return LocalError(ErrnoStatus(errno, absl::StrCat("stat ", path)));
  }
  if (st.st_size != size) {
    return LocalError(absl::FailedPreconditionError(absl::StrCat(
        path, " is ", st.st_size, " bytes but was ", size, " when hashed; did it change?")));
  }

  int failures = 0;  // In a row, without progress.
  int64_t last_committed = -1;
  for (;;) {
    int64_t committed = -1;
    absl::Status status = Attempt(fd.get(), path, digest, size, stats, &committed);
    if (status.ok()) return status;
    if (!options_.retry.IsRetryable(status)) return status;
    // An attempt that moved the committed size forward resets the count: a flaky link that
    // keeps making progress should finish a multi-GB upload, while a dead server still makes
    // us give up after max_attempts.
    if (committed > last_committed && last_committed >= 0) failures = 0;
    if (committed >= 0) last_committed = std::max(last_committed, committed);
    if (++failures >= options_.retry.max_attempts) {
      return absl::Status(status.code(), absl::StrCat(status.message(), " (gave up after ",
                                                      failures, " attempts without progress)"));
    }
    absl::Duration wait = options_.retry.Backoff(failures, options_.random());
    if (options_.on_retry) options_.on_retry(status, failures, wait);
    options_.sleep(wait);
  }
}

absl::Status ArtifactUploader::Attempt(int fd, const std::string& path, const std::string& digest,
                                       int64_t size, UploadStats* stats,
                                       int64_t* committed_at_start) {
  v1::QueryUploadRequest query;
  query.set_digest(digest);
  MD_ASSIGN_OR_RETURN(v1::QueryUploadResponse progress, client_->QueryUpload(query));
  int64_t offset = progress.committed_size();
  *committed_at_start = offset;
  if (stats->resumed_from < 0) {
    stats->resumed_from = offset;
    stats->already_complete = progress.complete();
  }
  if (progress.complete()) return absl::OkStatus();
  if (offset < 0 || offset > size) {
    return absl::InternalError(absl::StrCat("QueryUpload reported ", offset,
                                            " bytes committed of a ", size, "-byte artifact"));
  }
  if (options_.on_progress) options_.on_progress(offset);
  if (options_.max_bytes_to_send >= 0 && stats->bytes_sent >= options_.max_bytes_to_send &&
      offset < size) {
    // Servers refuse a stream without messages, so a spent cap opens none.
    return absl::AbortedError(absl::StrCat("stopped after sending ", stats->bytes_sent,
                                           " bytes (byte cap); the server committed ", offset));
  }

  std::unique_ptr<grpc::ClientContext> context = client_->NewStreamContext();
  v1::WriteArtifactResponse response;
  std::unique_ptr<grpc::ClientWriter<v1::WriteArtifactRequest>> writer =
      client_->stub().WriteArtifact(context.get(), &response);
  ++stats->streams;

  v1::WriteArtifactRequest request;
  request.set_digest(digest);  // Only the first message needs it.
  bool finished = false;       // The finish_write message went out.
  bool capped = false;
  bool broken = false;
  while (!finished) {
    int64_t n = std::min(options_.chunk_size, size - offset);
    if (options_.max_bytes_to_send >= 0) {
      n = std::min(n, options_.max_bytes_to_send - stats->bytes_sent);
    }
    bool last = offset + n == size;
    if (n <= 0 && !last) {
      capped = true;
      break;
    }
    request.set_write_offset(offset);
    std::string* data = request.mutable_data();
    data->resize(static_cast<size_t>(n));
    if (absl::Status read = PreadFully(fd, path, offset, data->data(), n); !read.ok()) {
      context->TryCancel();
      writer->Finish().IgnoreError();
      return read;
    }
    request.set_finish_write(last);
    if (!writer->Write(request)) {
      broken = true;  // Finish says why.
      break;
    }
    request.clear_digest();
    stats->bytes_sent += n;
    offset += n;
    finished = last;
    if (options_.on_progress) options_.on_progress(offset);
  }
  if (!broken) writer->WritesDone();
  absl::Status status = FromGrpcStatus(writer->Finish());
  if (!status.ok()) return status;
  if (capped) {
    return absl::AbortedError(absl::StrCat("stopped after sending ", stats->bytes_sent,
                                           " bytes (byte cap); the server committed ",
                                           response.committed_size()));
  }
  if (!finished) {
    // The server ended the stream early yet said OK; re-ask where it stands.
    return absl::UnavailableError("the upload stream ended before the last message");
  }
  if (response.committed_size() != size) {
    return absl::InternalError(absl::StrCat("the server committed ", response.committed_size(),
                                            " of ", size, " bytes after finish_write"));
  }
  return absl::OkStatus();
}

}  // namespace modeldist::ctl
