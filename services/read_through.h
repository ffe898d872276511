// File: read_through.h
//
// Read-through: ArtifactService.Read of a blob that is not stored here fetches it from the
// origins, in the origins file's order, and streams it to the caller while it is stored.
//
// Only verified bytes leave. The bytes go into the blob store's upload of the digest through
// BlobStore::AppendVerified, which hashes them once, for the store and to compare each chunk
// with the chain recorded for the blob (ChainLookup: the catalog's blob_chains); a reader is
// handed bytes only up to the last chunk that matched, read back from the upload's file. The
// blob is stored (BlobStore::Finish: whole SHA-256 and size) only when every byte is there. A
// chunk that does not match ends the fetch with DATA_LOSS and drops the upload: nothing is
// cached, and the origin that sent it goes last for that blob next time.
//
// One fetch per digest however many Reads want it (single flight): a Read that arrives while
// the digest is being fetched joins that fetch and is served from the bytes verified so far.
// An origin that fails (5xx after its own retries, NOT_FOUND, a reset) or stalls (no byte for
// `stall_timeout`) hands over to the next origin at the start of the chunk it was in, so that
// every chunk is checked against the bytes of one origin and a mismatch blames the right one. When
// no origin can give the rest, the fetch fails: UNAVAILABLE (ORIGINS_UNAVAILABLE, with a RetryInfo
// delay) when any failure may pass, NOT_FOUND (BLOB_NOT_ON_ORIGINS) when every origin said it
// has no such object. What was verified stays in the upload for the next fetch to resume.
//
// Thread-safe. Each fetch runs on a thread of its own; Stop cancels them and waits.
#ifndef MODELDIST_SERVICES_READ_THROUGH_H_
#define MODELDIST_SERVICES_READ_THROUGH_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/file_util.h"
#include "services/metrics/metrics.h"
#include "services/wakeable_loop.h"
#include "storage/blob_store.h"
#include "storage/catalog.h"
#include "storage/origin/origin_set.h"

namespace modeldist::services {

// What read-through must know of a blob it does not hold: its size and chunk chain
// (kChunkDigestBytes chunks, entries concatenated).
struct RemoteBlob {
  int64_t size = 0;
  std::string chain;
};
// NOT_FOUND when the blob is not one to read through (nothing is asked of any origin then).
using ChainLookup = std::function<absl::StatusOr<RemoteBlob>(const std::string& hex)>;

// The server's lookup: the chains the catalog recorded (migrations/0005_blob_chains.sql), of
// kChunkDigestBytes chunks (a chain of another size cannot check the store's chunks).
ChainLookup RecordedChainLookup(storage::Catalog* catalog);
// Records the chain of blob `digest` (`sha256:<hex>`) from its stored copy, verified when it
// was stored. OK, recording nothing, when it is not stored here.
absl::Status RecordChain(storage::Catalog* catalog, const storage::BlobStore* blobs,
                         const std::string& digest);
// RecordChain for every blob with a confirmed replica (those recorded already are skipped by
// the catalog).
absl::Status RecordChainsOfConfirmedReplicas(storage::Catalog* catalog,
                                             const storage::BlobStore* blobs);

struct ReadThroughOptions {
  // An origin that sends no byte for this long is given up for the next one.
  absl::Duration stall_timeout = absl::Seconds(30);
  // The RetryInfo delay of ORIGINS_UNAVAILABLE.
  absl::Duration retry_delay = absl::Seconds(5);
  // Called with the blob's hex once a fetched blob is stored (the server clears a damage
  // record: BlobHealth::Restored).
  std::function<void(const std::string& hex)> on_stored;
  // Counts the fetches started (not the Reads that join one); may be null.
  metrics::Counter* fetches_started = nullptr;
};

// One fetch of one blob, shared by every Read that wants it.
class BlobFetch {
 public:
  BlobFetch(std::string hex, int64_t size) : hex_(std::move(hex)), size_(size) {}

  const std::string& hex() const { return hex_; }
  int64_t size() const { return size_; }

  // Where the fetch is: bytes [0, verified) may be read; `error` is set once it failed (the
  // verified bytes stay readable); `ended` once it stored the blob (verified == size, which
  // readers may see a little earlier: the last chunk is released once it hashes to the
  // digest) or failed.
  struct Progress {
    int64_t verified = 0;
    absl::Status error;
    bool ended = false;
  };
  Progress progress() const ABSL_LOCKS_EXCLUDED(mu_);
  // Blocks until the fetch ended; its final progress.
  Progress Wait() ABSL_LOCKS_EXCLUDED(mu_);

  // Runs `ready` once bytes [0, end) are verified or the fetch failed: at once on this thread
  // when that is so already, else on the fetch's thread, so it must only hand work on (e.g.
  // to a pool).
  void WhenReady(int64_t end, std::function<void()> ready) ABSL_LOCKS_EXCLUDED(mu_);

  // Reads up to `size` bytes at `offset`, all below progress().verified.
  absl::StatusOr<size_t> ReadAt(int64_t offset, char* buf, size_t size) const;

 private:
  friend class ReadThrough;

  // The fetch's side: more bytes verified, or the end (the blob stored, or `error`).
  void Advance(int64_t verified) ABSL_LOCKS_EXCLUDED(mu_);
  void End(const absl::Status& error) ABSL_LOCKS_EXCLUDED(mu_);
  void Notify() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const std::string hex_;
  const int64_t size_;
  // Set by the fetch before the first byte is verified, then only read.
  ScopedFd file_;                            // the upload's partial, which becomes the blob
  std::optional<storage::BlobReader> blob_;  // when the blob was stored before the fetch began
  // The watchdog's view: the last time a byte arrived, and the cancel flag of the origin GET.
  std::atomic<int64_t> last_byte_micros_{0};
  std::atomic<bool> cancel_{false};
  std::atomic<bool> stalled_{false};

  mutable absl::Mutex mu_;
  Progress progress_ ABSL_GUARDED_BY(mu_);
  std::multimap<int64_t, std::function<void()>> waiters_ ABSL_GUARDED_BY(mu_);
};

class ReadThrough {
 public:
  // Everything must outlive this.
  ReadThrough(storage::BlobStore* blobs, const origin::OriginSet* origins, ChainLookup lookup,
              ReadThroughOptions options = {});
  ~ReadThrough();
  ReadThrough(const ReadThrough&) = delete;
  ReadThrough& operator=(const ReadThrough&) = delete;

  // The fetch of blob `hex` in progress, else a new one. nullptr when the blob is stored (read
  // it from the store). NOT_FOUND (BLOB_NOT_FOUND) when `lookup` does not know it.
  absl::StatusOr<std::shared_ptr<BlobFetch>> Fetch(const std::string& hex) ABSL_LOCKS_EXCLUDED(mu_);

  // Fetches blob `hex` into the store unless it is there, and waits until it is: for work
  // that needs the whole blob locally (replicating it to an origin that lacks it). The
  // fetch's error when it fails; NOT_FOUND as Fetch.
  absl::Status Restore(const std::string& hex) ABSL_LOCKS_EXCLUDED(mu_);

  // What `lookup` says of `hex` (for Stat); NOT_FOUND as Fetch.
  absl::StatusOr<RemoteBlob> Lookup(const std::string& hex) const;

  // Cancels the fetches and waits for their threads; later Fetch calls fail UNAVAILABLE.
  // Idempotent.
  void Stop() ABSL_LOCKS_EXCLUDED(mu_);

  // Origin GETs started since the start (tests count them: one per fetch and origin tried).
  int64_t origin_gets() const { return origin_gets_.load(); }

 private:
  // The fetch thread.
  void Run(const std::shared_ptr<BlobFetch>& fetch, const RemoteBlob& remote);
  absl::Status FetchAll(BlobFetch& fetch, const RemoteBlob& remote);
  // The origins in the order to try for `hex`: the file's, with those that sent bad bytes of
  // it last.
  std::vector<const origin::ConfiguredOrigin*> OriginsFor(const std::string& hex)
      ABSL_LOCKS_EXCLUDED(mu_);
  // The watchdog's round: marks fetches with no byte for stall_timeout as stalled.
  absl::Duration Watch() ABSL_LOCKS_EXCLUDED(mu_);

  storage::BlobStore* const blobs_;
  const origin::OriginSet* const origins_;
  const ChainLookup lookup_;
  const ReadThroughOptions options_;
  std::atomic<int64_t> origin_gets_{0};

  absl::Mutex mu_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  // The thread of each running fetch, and threads of ended fetches not yet joined.
  std::map<const BlobFetch*, std::thread> threads_ ABSL_GUARDED_BY(mu_);
  std::vector<std::thread> ended_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, std::shared_ptr<BlobFetch>> fetches_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, std::set<std::string>> bad_origins_ ABSL_GUARDED_BY(mu_);
  // Last: stopped first.
  WakeableLoop watchdog_{[this] { return Watch(); }};
};

}  // namespace modeldist::services

#endif  // MODELDIST_SERVICES_READ_THROUGH_H_
