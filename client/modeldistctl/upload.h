// File: upload.h
//
// Resumable, single-pass artifact upload over RegistryService.WriteArtifact upload sessions
// (google.bytestream style): ask QueryUpload how much of the session the server has
// committed, stream the rest of the file from there in fixed-size messages, hashing each byte
// as it is read (hashing_file_reader.h), and send the digest with finish_write; the server
// stores the bytes only if its own hash agrees. The file is read once; see
// HashingFileReader for the two reads a failure may add.
//
// A failure whose code the RetryPolicy (common/retry_policy.h) names (by default UNAVAILABLE and
// DEADLINE_EXCEEDED: a dropped connection, a restarting server) is retried after an exponential
// backoff with jitter, each attempt starting again from QueryUpload, so that no byte the server
// already holds is sent twice.
#ifndef MODELDIST_CLIENT_MODELDISTCTL_UPLOAD_H_
#define MODELDIST_CLIENT_MODELDISTCTL_UPLOAD_H_

#include <cstdint>
#include <functional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "client/modeldistctl/hashing_file_reader.h"
#include "client/modeldistctl/registry_client.h"
#include "common/digest.h"
#include "common/retry_policy.h"

namespace modeldist::ctl {

// True when Upload tries again after `status`: an error of the server or the network (not
// one the CLI made itself, such as a file it cannot read) whose code `policy` retries.
bool IsRetryableUploadError(const RetryPolicy& policy, const absl::Status& status);

struct UploadOptions {
  // Bytes of file data per WriteArtifact message (the server accepts up to 4 MiB).
  int64_t chunk_size = 1 << 20;
  // Stop after sending this many data bytes, closing the stream without finish_write as an
  // interrupted client would; Upload then returns ABORTED. -1 means no cap. For tests and
  // demonstrations of resumption. (Reaching the end of the file with the cap spent still
  // finishes: finish_write carries no data.)
  int64_t max_bytes_to_send = -1;
  RetryPolicy retry;
  // Injectable for tests.
  std::function<void(absl::Duration)> sleep = absl::SleepFor;
  std::function<double()> random;  // [0, 1); a seeded engine when empty (RetryClock).
  // Called with the file position after every message sent, and while a committed prefix is
  // read again to rebuild the hash.
  std::function<void(int64_t position)> on_progress;
  // Called before each backoff wait with the failure that caused it.
  std::function<void(const absl::Status& failure, int retry, absl::Duration wait)> on_retry;
  // When set, called with the file's digest and size once every byte is read and hashed,
  // before finish_write (and after a finished session's file is hashed to compare). An error
  // withholds finish_write, so the server stores nothing, and Upload returns it as is (so it
  // should have a code the RetryPolicy does not retry). For a caller that needs particular bytes,
  // e.g. publish restoring an artifact a version already declares: the file must be what the
  // version declares.
  std::function<absl::Status(const FileDigest& file)> check_digest;
};

// What an upload did; filled in as it goes, so it is meaningful after a failure too.
struct UploadStats {
  // The committed size the first QueryUpload reported (-1 if it never answered).
  int64_t resumed_from = -1;
  // File data bytes handed to WriteArtifact streams, over all attempts.
  int64_t bytes_sent = 0;
  // WriteArtifact streams opened.
  int streams = 0;
  // QueryUpload said the session was already finished: nothing was sent.
  bool already_complete = false;
  // Bytes read from the file over all attempts: its size when every byte was read once, more
  // only when a committed prefix had to be hashed again or lost bytes resent.
  int64_t bytes_read = 0;
};

class ArtifactUploader {
 public:
  // `client` must outlive the uploader.
  ArtifactUploader(RegistryClient* client, UploadOptions options);

  // Uploads `file` in upload session `upload_id` (16-64 chars of [A-Za-z0-9_-]), hashing it
  // in the same pass, and returns its digest and size once the server has verified and stored
  // the blob under that digest. Resumes a session the server already holds bytes of: the
  // committed prefix is read again only to rebuild the hash. When the session is already
  // finished (an earlier run stored the file but stopped before using it), the file is hashed
  // to check that it is still what was stored, and nothing is sent.
  // Errors: a local error (errors.h) if the file cannot be read, changed while it was read
  // (size or modification time) or no longer matches a finished session; ABORTED at the byte
  // cap; otherwise the server's status (after retries are exhausted, for retryable codes),
  // e.g. DATA_LOSS when the server's hash disagrees.
  absl::StatusOr<FileDigest> Upload(HashingFileReader& file, const std::string& upload_id,
                                    UploadStats* stats);

 private:
  absl::StatusOr<FileDigest> UploadWithRetries(HashingFileReader& file,
                                               const std::string& upload_id, UploadStats* stats);
  // One QueryUpload + WriteArtifact stream. `committed_at_start` gets QueryUpload's answer;
  // `result` is set on success.
  absl::Status Attempt(HashingFileReader& file, const std::string& upload_id, UploadStats* stats,
                       int64_t* committed_at_start, FileDigest* result);
  // The WriteArtifact stream of an attempt, from `committed` to finish_write (or the cap).
  absl::Status Stream(HashingFileReader& file, const std::string& upload_id, int64_t committed,
                      UploadStats* stats, FileDigest* result);
  bool CapSpent(const UploadStats& stats) const;
  absl::Status CapError(const UploadStats& stats, int64_t committed) const;
  // The session is finished: hash the rest of `file` and compare with `stored_digest`.
  absl::Status CheckFinished(HashingFileReader& file, const std::string& upload_id,
                             const std::string& stored_digest, FileDigest* result);

  RegistryClient* client_;
  UploadOptions options_;
};

}  // namespace modeldist::ctl

#endif  // MODELDIST_CLIENT_MODELDISTCTL_UPLOAD_H_
