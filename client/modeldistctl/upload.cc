#include "client/modeldistctl/upload.h"

#include <algorithm>
#include <optional>
#include <utility>

#include "absl/strings/str_cat.h"
#include "client/modeldistctl/errors.h"
#include "common/status.h"

namespace modeldist::ctl {

bool IsRetryableUploadError(const RetryPolicy& policy, const absl::Status& status) {
  // Errors the CLI made itself (a file it cannot read) are never the network's fault.
  return ExitCodeFor(status) == kExitRpc && policy.IsRetryable(status);
}

ArtifactUploader::ArtifactUploader(RegistryClient* client, UploadOptions options)
    : client_(client), options_(std::move(options)) {}

absl::StatusOr<FileDigest> ArtifactUploader::Upload(HashingFileReader& file,
                                                    const std::string& upload_id,
                                                    UploadStats* stats) {
  absl::StatusOr<FileDigest> result = UploadWithRetries(file, upload_id, stats);
  stats->bytes_read = file.bytes_read();
  return result;
}

absl::StatusOr<FileDigest> ArtifactUploader::UploadWithRetries(HashingFileReader& file,
                                                               const std::string& upload_id,
                                                               UploadStats* stats) {
  Retrier retrier(options_.retry, RetryClock{.random = options_.random});
  int64_t last_committed = -1;
  for (;;) {
    int64_t committed = -1;
    FileDigest result;
    absl::Status status = Attempt(file, upload_id, stats, &committed, &result);
    if (status.ok()) return result;
    if (!IsRetryableUploadError(options_.retry, status)) return status;
    // An attempt that moved the committed size forward resets the count: a flaky link that
    // keeps making progress should finish a multi-GB upload, while a dead server still makes
    // us give up after max_attempts.
    if (committed > last_committed && last_committed >= 0) retrier.Progressed();
    if (committed >= 0) last_committed = std::max(last_committed, committed);
    std::optional<absl::Duration> wait = retrier.NextWait(status);
    if (!wait.has_value()) {
      return WithMessage(status, absl::StrCat(status.message(), " (gave up after ",
                                              retrier.failures(), " attempts without progress)"));
    }
    if (options_.on_retry) options_.on_retry(status, retrier.failures(), *wait);
    options_.sleep(*wait);
  }
}

absl::Status ArtifactUploader::CheckFinished(HashingFileReader& file, const std::string& upload_id,
                                             const std::string& stored_digest, FileDigest* result) {
  MD_RETURN_IF_ERROR(file.ReadToEnd(options_.on_progress));
  MD_RETURN_IF_ERROR(file.CheckUnchanged());
  const std::string digest = FormatDigest(file.DigestHex());
  if (digest != stored_digest) {
    return LocalError(absl::FailedPreconditionError(
        absl::StrCat(file.path(), " hashes to ", digest, " but upload session ", upload_id,
                     " stored ", stored_digest,
                     " from it: the file changed since without a new size or "
                     "modification time; touch it and publish again")));
  }
  result->hex = file.DigestHex();
  result->size = file.position();
  return options_.check_digest ? options_.check_digest(*result) : absl::OkStatus();
}

absl::Status ArtifactUploader::Attempt(HashingFileReader& file, const std::string& upload_id,
                                       UploadStats* stats, int64_t* committed_at_start,
                                       FileDigest* result) {
  v1::QueryUploadRequest query;
  query.set_upload_id(upload_id);
  MD_ASSIGN_OR_RETURN(v1::QueryUploadResponse progress, client_->QueryUpload(query));
  const int64_t committed = progress.committed_size();
  *committed_at_start = committed;
  if (stats->resumed_from < 0) {
    stats->resumed_from = committed;
    stats->already_complete = progress.complete();
  }
  if (committed < 0 || (file.size() >= 0 && committed > file.size())) {
    return absl::InternalError(absl::StrCat("QueryUpload reported ", committed,
                                            " bytes committed of ", file.path(), " (", file.size(),
                                            " bytes)"));
  }
  if (progress.complete()) return CheckFinished(file, upload_id, progress.digest(), result);
  // The hash must cover what the server holds before more bytes go out. After a ctl restart
  // this reads the committed prefix again: the one second read the rule allows.
  if (committed > file.position()) {
    MD_RETURN_IF_ERROR(file.SkipTo(committed, options_.on_progress));
  }
  if (options_.on_progress) options_.on_progress(committed);
  const bool data_left = committed < file.position() || !file.at_end();
  if (CapSpent(*stats) && data_left) {
    // Servers refuse a stream without messages, so a spent cap opens none.
    return CapError(*stats, committed);
  }
  return Stream(file, upload_id, committed, stats, result);
}

bool ArtifactUploader::CapSpent(const UploadStats& stats) const {
  return options_.max_bytes_to_send >= 0 && stats.bytes_sent >= options_.max_bytes_to_send;
}

absl::Status ArtifactUploader::CapError(const UploadStats& stats, int64_t committed) const {
  return absl::AbortedError(absl::StrCat("stopped after sending ", stats.bytes_sent,
                                         " bytes (byte cap); the server committed ", committed));
}

absl::Status ArtifactUploader::Stream(HashingFileReader& file, const std::string& upload_id,
                                      int64_t committed, UploadStats* stats, FileDigest* result) {
  std::unique_ptr<grpc::ClientContext> context = client_->NewStreamContext();
  v1::WriteArtifactResponse response;
  std::unique_ptr<grpc::ClientWriter<v1::WriteArtifactRequest>> writer =
      client_->stub().WriteArtifact(context.get(), &response);
  ++stats->streams;
  auto abandon = [&](absl::Status local) {
    context->TryCancel();
    writer->Finish().IgnoreError();
    return local;
  };

  v1::WriteArtifactRequest request;
  // Only the first message names the session and its size (0: a pipe's is not known).
  request.set_upload_id(upload_id);
  request.set_size_bytes(std::max<int64_t>(file.size(), 0));
  int64_t offset = committed;
  bool capped = false;
  bool broken = false;
  for (;;) {
    if (offset == file.position() && file.at_end()) break;
    if (CapSpent(*stats)) {
      capped = true;
      break;
    }
    int64_t want = options_.chunk_size;
    if (options_.max_bytes_to_send >= 0) {
      want = std::min(want, options_.max_bytes_to_send - stats->bytes_sent);
    }
    // Bytes a broken stream lost come again from the file, not hashed again; new bytes are
    // hashed as they are read.
    absl::Status read =
        offset < file.position()
            ? file.Reread(offset, std::min(want, file.position() - offset), request.mutable_data())
            : file.ReadNext(want, request.mutable_data());
    if (!read.ok()) return abandon(read);
    if (request.data().empty()) break;  // A pipe ended.
    request.set_write_offset(offset);
    if (!writer->Write(request)) {
      broken = true;  // Finish says why.
      break;
    }
    request.clear_upload_id();
    request.clear_size_bytes();
    const int64_t n = static_cast<int64_t>(request.data().size());
    stats->bytes_sent += n;
    offset += n;
    if (options_.on_progress) options_.on_progress(offset);
  }
  std::string digest;
  if (!capped && !broken) {
    // The digest vouches for the file as it was opened; a file that changed meanwhile gets no
    // finish_write (its bytes stay in the session, which a rerun of the changed file, with
    // its new modification time, does not use).
    if (absl::Status unchanged = file.CheckUnchanged(); !unchanged.ok()) return abandon(unchanged);
    if (options_.check_digest) {
      // Before finish_write: bytes the caller refuses are never stored as a blob.
      absl::Status wanted = options_.check_digest(FileDigest{file.DigestHex(), offset});
      if (!wanted.ok()) return abandon(wanted);
    }
    digest = FormatDigest(file.DigestHex());
    request.clear_data();
    request.set_write_offset(offset);
    request.set_digest(digest);
    request.set_finish_write(true);
    broken = !writer->Write(request);
  }
  if (!broken) writer->WritesDone();
  absl::Status status = FromGrpcStatus(writer->Finish());
  if (!status.ok()) return status;
  if (capped) return CapError(*stats, response.committed_size());
  if (broken) {
    // The server ended the stream early yet said OK; re-ask where it stands.
    return absl::UnavailableError("the upload stream ended before the last message");
  }
  if (response.committed_size() != offset ||
      (!response.digest().empty() && response.digest() != digest)) {
    return absl::InternalError(absl::StrCat("the server stored ", response.committed_size(),
                                            " bytes as ", response.digest(), " after finish_write",
                                            " of ", offset, " bytes hashing to ", digest));
  }
  result->hex = file.DigestHex();
  result->size = offset;
  return absl::OkStatus();
}

}  // namespace modeldist::ctl
