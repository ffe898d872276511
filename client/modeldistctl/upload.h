// File: upload.h
//
// Resumable artifact upload over RegistryService.WriteArtifact (google.bytestream style): ask
// QueryUpload how much the server has committed, stream the rest of the file from there in
// fixed-size messages, finish_write on the last. A failure whose code the RetryPolicy names
// (by default UNAVAILABLE and DEADLINE_EXCEEDED: a dropped connection, a restarting server)
// is retried after an exponential backoff with jitter, each attempt starting again from
// QueryUpload, so that no byte the server already holds is sent twice.
#ifndef MODELDIST_CLIENT_MODELDISTCTL_UPLOAD_H_
#define MODELDIST_CLIENT_MODELDISTCTL_UPLOAD_H_

#include <cstdint>
#include <functional>
#include <set>
#include <string>

#include "absl/status/status.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "client/modeldistctl/registry_client.h"

namespace modeldist::ctl {

// When to try again, and how long to wait first.
struct RetryPolicy {
  // Attempts in a row that made no progress before giving up; the first try counts.
  int max_attempts = 5;
  absl::Duration initial_backoff = absl::Milliseconds(500);
  absl::Duration max_backoff = absl::Seconds(30);
  double multiplier = 2.0;
  // The wait is scaled by a random factor in (1 - jitter, 1], so that many clients cut off
  // by the same outage do not come back in lockstep.
  double jitter = 0.5;
  std::set<absl::StatusCode> retryable_codes = {absl::StatusCode::kUnavailable,
                                                absl::StatusCode::kDeadlineExceeded};

  bool IsRetryable(const absl::Status& status) const;
  // The wait before retry number `retry` (1 for the first retry); `random` in [0, 1) picks
  // the jitter. min(max_backoff, initial_backoff * multiplier^(retry-1)) * (1 - jitter*random).
  absl::Duration Backoff(int retry, double random) const;
};

struct UploadOptions {
  // Bytes of file data per WriteArtifact message (the server accepts up to 4 MiB).
  int64_t chunk_size = 1 << 20;
  // Stop after sending this many data bytes, closing the stream without finish_write as an
  // interrupted client would; Upload then returns ABORTED. -1 means no cap. For tests and
  // demonstrations of resumption.
  int64_t max_bytes_to_send = -1;
  RetryPolicy retry;
  // Injectable for tests.
  std::function<void(absl::Duration)> sleep = absl::SleepFor;
  std::function<double()> random;  // [0, 1); a seeded engine when empty.
  // Called with the file position after every message sent.
  std::function<void(int64_t position)> on_progress;
  // Called before each backoff wait with the failure that caused it.
  std::function<void(const absl::Status& failure, int retry, absl::Duration wait)> on_retry;
};

// What an upload did; filled in as it goes, so it is meaningful after a failure too.
struct UploadStats {
  // The committed size the first QueryUpload reported (-1 if it never answered).
  int64_t resumed_from = -1;
  // File data bytes handed to WriteArtifact streams, over all attempts.
  int64_t bytes_sent = 0;
  // WriteArtifact streams opened.
  int streams = 0;
  // QueryUpload said the blob was already stored: nothing was sent.
  bool already_complete = false;
};

class ArtifactUploader {
 public:
  // `client` must outlive the uploader.
  ArtifactUploader(RegistryClient* client, UploadOptions options);

  // Uploads the file at `path`, which must be `size` bytes hashing to `digest`. OK once the
  // server has verified and stored the blob. Errors: a local error (errors.h) if the file
  // cannot be read or has changed size; ABORTED at the byte cap; otherwise the server's
  // status (after retries are exhausted, for retryable codes).
  absl::Status Upload(const std::string& path, const std::string& digest, int64_t size,
                      UploadStats* stats);

 private:
  // One QueryUpload + WriteArtifact stream. `committed_at_start` gets QueryUpload's answer.
  absl::Status Attempt(int fd, const std::string& path, const std::string& digest, int64_t size,
                       UploadStats* stats, int64_t* committed_at_start);

  RegistryClient* client_;
  UploadOptions options_;
};

}  // namespace modeldist::ctl

#endif  // MODELDIST_CLIENT_MODELDISTCTL_UPLOAD_H_
