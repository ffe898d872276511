// File: chunk_downloader.h
//
// Verified, resumable, chunk-by-chunk download of one manifest artifact.
//
// The manifest carries the artifact's chunk chain (common/chunk_chain.h): one signed 32-byte
// entry per `chunk_size` chunk, with which each chunk is verified on its own and the last one
// yields the whole file's SHA-256, so every byte is hashed exactly once. Bytes go straight
// into a partial file at their offset while being hashed, and a chunk counts only once its
// last byte matched the chain; a journal next to the partial then records how many leading
// chunks are verified (and for which digest/chunk size). On resume every journaled chunk is
// re-verified from disk (a local read, never the network): the first that fails ends the
// verified prefix and is refetched. A complete partial without a journal (a finished download
// not yet moved into place) is re-verified the same way. A chunk that arrives corrupted is
// refetched alone (Read with offset/limit of that chunk), from the next source when there is
// one (see DownloadChunks).
//
// Durability: the bytes are written by client/download/block_writer.h (O_DIRECT blocks where
// the file system allows it, else buffered with writeback started per block), and with `fsync`
// the partial is fdatasync'ed before DownloadChunks returns; the journal
// (client/agent/chunk_journal.h) is never fsynced, because a resume trusts it only after
// re-verifying.
//
// A partial that is a hard link of an installed model file (what a crash right after
// activation leaves: model_store.h lists the crash cases) is read but never written: before
// any repair, its verified prefix moves into a file of its own.
//
// Memory: the block writer's 8 MiB of blocks plus the bytes in flight in the source (the gRPC
// source fixes its HTTP/2 window and receives at most 4 MiB ahead; see grpc_source.cc),
// whatever the artifact size.
#ifndef MODELDIST_CLIENT_AGENT_CHUNK_DOWNLOADER_H_
#define MODELDIST_CLIENT_AGENT_CHUNK_DOWNLOADER_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "common/fs.h"
#include "common/retry_policy.h"
#include "modeldist/v1/manifest.pb.h"

namespace modeldist::agent {

// Where bytes come from. Implementations: gRPC ArtifactService.Read and HTTP(S) Range GETs
// through libcurl. Sources are untrusted: every byte is checked by the downloader.
class ByteSource {
 public:
  virtual ~ByteSource() = default;
  // Streams bytes [offset, offset + limit) of blob `digest` to `sink` in order, in pieces of
  // any size. Stops early (returning the sink's error) when `sink` fails. A source that sends
  // more than `limit` bytes is cut off by the downloader through the sink.
  virtual absl::Status Read(const std::string& digest, int64_t offset, int64_t limit,
                            const std::function<absl::Status(absl::string_view)>& sink) = 0;
  // Makes a Read in progress on another thread return soon with an error (any code; the
  // downloader reports the stall). Thread-safe. The downloader's stall watchdog calls it only
  // while a Read is running, and again every stall period while that Read stays silent, so a
  // call that lands just before the Read registers itself may be dropped; it MUST NOT make a
  // later Read fail.
  virtual void Cancel() = 0;
  // For logs and errors, e.g. "grpc://host:port" or the URL without its query.
  virtual std::string Describe() const = 0;
};

// ArtifactService.Read at `target` (host:port, plaintext unless `tls_ca_file` is set); an error
// when the CA file cannot be read (client/rpc/channel.h).
absl::StatusOr<std::unique_ptr<ByteSource>> NewGrpcSource(const std::string& target,
                                                          const std::string& tls_ca_file);
// HTTP(S) GET with `Range: bytes=offset-(offset+limit-1)` of `url` through libcurl.
std::unique_ptr<ByteSource> NewHttpSource(const std::string& url, const std::string& ca_file);

// The downloader's retries per source (common/retry_policy.h): 8 attempts in a row without a
// verified chunk, full jitter from 200 ms up to 10 s, after the codes that say this source
// may still serve the artifact (UNAVAILABLE, DEADLINE_EXCEEDED, DATA_LOSS, ABORTED, INTERNAL,
// UNKNOWN, CANCELLED — a stall —, RESOURCE_EXHAUSTED). Any other code (NOT_FOUND,
// PERMISSION_DENIED, FAILED_PRECONDITION such as an ignored Range, ...) says this source will
// not serve it, so the next source is tried at once.
RetryPolicy DownloadRetryPolicy();

struct ChunkDownloadOptions {
  // Per source; attempts count transport errors, stalls and corrupt chunks.
  RetryPolicy retry = DownloadRetryPolicy();
  // A read that delivers no byte for this long is abandoned and retried.
  absl::Duration stall_timeout = absl::Seconds(30);
  // Bytes per second, 0 = unlimited.
  int64_t max_bytes_per_second = 0;
  // Make the partial durable before returning (see "Durability" above). Off only in tests
  // and benchmarks.
  bool fsync = true;
  // Called on the calling thread after each verified chunk, and once after the partial's
  // journaled prefix was re-verified on resume.
  std::function<void(int64_t verified_bytes, int64_t total_bytes)> on_progress;
  // Injected for tests; defaults to absl::SleepFor.
  std::function<void(absl::Duration)> sleep;
  // Where the partial's writes go (common/fs.h); null: the real file system. Tests pass a
  // FaultInjectingFs (tests/testing/fault_fs.h).
  Fs* fs = nullptr;
};

struct ChunkDownloadStats {
  int64_t chunks_total = 0;
  // Chunks taken from the partial after re-verifying them from disk.
  int64_t chunks_reused = 0;
  // Chunks fetched over the network, including refetches.
  int64_t chunks_fetched = 0;
  // Chunks that arrived corrupted and were fetched again.
  int64_t chunks_refetched = 0;
  int64_t bytes_received = 0;
  // Failed attempts that were followed by another one (on the same or the next source).
  int retries = 0;
};

// Downloads `artifact` into `partial_path` (journal: `partial_path + ".journal"`) from the
// sources in order: the first is read until it fails `retry.max_attempts` times in a row, then
// the next; and each time it fails (an error, a stall, a corrupt chunk), the chunk it stopped
// in is fetched at once from the next source before it goes on, so a mirror that fails one
// chunk costs that chunk and no backoff. On success
// the partial holds exactly the verified bytes (every chunk and so the whole-file SHA-256
// checked, and the size) and is fsynced; the caller moves it into place. The journal is
// removed.
// Errors:
// * INVALID_ARGUMENT: the manifest artifact is malformed (chain length does not match size and
//   chunk_size, an entry not 32 bytes, a last entry that is not `digest`, bad digest,
//   chunk_size not a multiple of 64 or over 64 MiB), no source, empty path, retry.max_attempts < 1.
// * DATA_LOSS: every source kept sending bytes that do not match, or fewer bytes than the
//   manifest's size (the partial is kept up to the last verified chunk).
// * UNAVAILABLE / DEADLINE_EXCEEDED: sources failed or stalled on every attempt.
// * Any other code a source gave up with, when it is the last source: NOT_FOUND,
//   PERMISSION_DENIED, UNAUTHENTICATED (an HTTPS server the CA file does not trust),
//   FAILED_PRECONDITION (a mirror that ignores Range). The message names each source's last
//   error; the ErrorInfo reason is that of the last one.
// * RESOURCE_EXHAUSTED: the disk is full (a source's RESOURCE_EXHAUSTED counts as UNAVAILABLE);
//   other local file errors as common/file_util.h ErrnoStatus maps them.
absl::StatusOr<ChunkDownloadStats> DownloadChunks(const v1::ManifestArtifact& artifact,
                                                  const std::vector<ByteSource*>& sources,
                                                  const std::string& partial_path,
                                                  const ChunkDownloadOptions& options);

}  // namespace modeldist::agent

#endif  // MODELDIST_CLIENT_AGENT_CHUNK_DOWNLOADER_H_
