// File: artifact_download.h
//
// Verified, resumable download of one artifact over ArtifactService.Read.
//
// Bytes go to `<out_path>.partial` (same directory, so the final rename is atomic) while being
// hashed with SHA-256 in the same pass, one chunk at a time: memory stays at about one chunk
// whatever the artifact size. Only when the size and the digest both match is the partial
// renamed to `out_path`; a reader of `out_path` therefore never sees unverified bytes.
//
// Interrupted downloads keep their partial so that the next call resumes from it. Bytes the
// partial already holds are re-read and hashed before the stream resumes (the hash state is
// not persisted), which costs a local read but never trusts them blindly: a bad partial shows
// up as a digest mismatch at the end.
//
// Bytes travel from gRPC's receive buffers to the hash and the file without a copy
// (client/download/raw_read.h).
//
// Example:
//   MD_ASSIGN_OR_RETURN(DownloadResult r,
//                       DownloadArtifact(channel, manifest.artifact().digest(),
//                                        manifest.artifact().size_bytes(), "/models/m.gguf",
//                                        {.fsync = true}));
#ifndef MODELDIST_CLIENT_DOWNLOAD_ARTIFACT_DOWNLOAD_H_
#define MODELDIST_CLIENT_DOWNLOAD_ARTIFACT_DOWNLOAD_H_

#include <grpcpp/grpcpp.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace modeldist::client {

struct DownloadOptions {
  // fsync the data before the rename and the directory after it, so that a verified file
  // survives a power loss. Off by default: it bounds throughput by the disk.
  bool fsync = false;
  // Resume from `<out_path>.partial` when it exists. false: always start at byte 0.
  bool resume = true;
  // When >= 0, keep at most this many bytes of the partial (e.g. the length the caller knows
  // was synced) and resume from there; bytes past it are discarded. -1: trust the partial's
  // length. Ignored when `resume` is false.
  int64_t resume_offset = -1;
  // Deadline for the Read stream; infinite by default (large files on slow links).
  absl::Duration timeout = absl::InfiniteDuration();
  // Called after each chunk is received with the bytes received so far and the total.
  std::function<void(int64_t done, int64_t total)> on_progress;
};

struct DownloadResult {
  // `out_path`, now holding exactly the verified bytes.
  std::string path;
  // `sha256:<hex>` and size of the file, as requested.
  std::string digest;
  int64_t size_bytes = 0;
  // Bytes taken from an existing partial (0 on a fresh download).
  int64_t resumed_from = 0;
  // Bytes received over the network.
  int64_t bytes_received = 0;
};

// Where DownloadArtifact keeps the bytes of `out_path` until they are verified.
std::string PartialPath(const std::string& out_path);

// Downloads blob `digest` (`sha256:<64 lowercase hex>`, `expected_size` bytes) to `out_path`
// with ArtifactService.Read on `channel`.
//
// On success `out_path` holds exactly the verified bytes (an existing file there is replaced)
// and no partial is left.
// Errors:
// * INVALID_ARGUMENT: malformed `digest`, negative `expected_size`, or empty `out_path`.
// * DATA_LOSS: the bytes do not hash to `digest`, the server sent more or fewer bytes than
//   `expected_size`, chunks out of order, or a message that is not a valid ReadResponse. The
//   partial is deleted (a retry starts at 0) and `out_path` is left untouched.
// * Any code of ArtifactService.Read (NOT_FOUND, UNAVAILABLE, DEADLINE_EXCEEDED, ...), or of a
//   local file operation (common/file_util.h ErrnoStatus: RESOURCE_EXHAUSTED for a full disk,
//   PERMISSION_DENIED, UNAVAILABLE): the partial is kept with every byte received, for a
//   later resume (unless it is empty).
absl::StatusOr<DownloadResult> DownloadArtifact(std::shared_ptr<grpc::ChannelInterface> channel,
                                                const std::string& digest, int64_t expected_size,
                                                const std::string& out_path,
                                                const DownloadOptions& options = {});

}  // namespace modeldist::client

#endif  // MODELDIST_CLIENT_DOWNLOAD_ARTIFACT_DOWNLOAD_H_
