// File: replicator.h
//
// Copies published blobs to the origins that replicate them (`replicate: true` in the
// server's origins file), working from the catalog's durable queue (migrations/0004_replicas.sql):
//
//   1. sweep: every digest of a PUBLISHED version gets a row per replicating origin
//      (Catalog::QueueReplicas), at start and after each publish (Wake). A crash between a
//      publish and its sweep is made good by the next start's sweep.
//   2. copy: each due row's blob is uploaded through CheckedBlobReads, so its bytes are matched
//      against the chunk chain as they leave. A damaged blob stops the upload before its last
//      chunk is out (no complete copy of it reaches the origin) and goes to BlobHealth, which
//      quarantines it. An interrupted upload resumes on the next attempt (S3 multipart: parts
//      listed and kept).
//   3. check: the stored object is headed; its size, and its SHA-256 where the store reports
//      one, must match before the row counts as CONFIRMED.
//   4. a failed attempt leaves the row FAILING with its error, and the next one waits the
//      retry policy's backoff for the row's count of failures in a row (growing to
//      max_backoff, never giving up: an origin that is down for a day gets its copies once
//      it is back).
//
// Progress (bytes_done) is written to the row as the copy runs, so `modeldistctl show` and
// GetVersion see how far it got. Stop cancels the running upload through its source
// (CANCELLED keeps what the origin has for the next start) and leaves the row due.
//
// Thread-safe. RunOnce is the whole of one round, for the thread and for tests.
#ifndef MODELDIST_SERVICES_REPLICATOR_H_
#define MODELDIST_SERVICES_REPLICATOR_H_

#include <functional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/retry_policy.h"
#include "services/blob_health.h"
#include "services/wakeable_loop.h"
#include "storage/blob_store.h"
#include "storage/catalog.h"
#include "storage/origin/origin_set.h"

namespace modeldist::services {

struct ReplicatorOptions {
  // The wait before the attempt after n failures in a row is backoff.Backoff(n, random).
  // max_attempts is not used: replication never gives up on a row.
  RetryPolicy backoff = {.initial_backoff = absl::Seconds(5), .max_backoff = absl::Minutes(30)};
  // How often a running copy writes its bytes_done to the catalog.
  absl::Duration progress_interval = absl::Seconds(2);
  // The longest the thread sleeps with nothing due (a row whose time came while it slept).
  absl::Duration idle_poll = absl::Minutes(1);
  // Rows taken per round.
  int batch = 16;
  std::function<absl::Time()> now = absl::Now;
  // [0, 1), for the backoff's jitter; a seeded engine when empty.
  std::function<double()> random;
  // Called after the copy of blob `digest` on `origin` is confirmed (the server adds it to
  // its devices' mirror URLs, and may evict the local copy: services/replica_eviction.h).
  std::function<void(const std::string& digest, const std::string& origin)> on_confirmed;
  // Brings back blob `hex` when it is not stored here (the server reads it through from the
  // origins that have it: an evicted blob still gets copied to an origin added later).
  // Unset: such a copy fails until the blob is stored again.
  std::function<absl::Status(const std::string& hex)> restore;
};

class Replicator {
 public:
  using Options = ReplicatorOptions;

  // Everything must outlive this.
  Replicator(storage::Catalog* catalog, storage::BlobStore* blobs, BlobHealth* health,
             const origin::OriginSet* origins, Options options = {});
  ~Replicator();
  Replicator(const Replicator&) = delete;
  Replicator& operator=(const Replicator&) = delete;

  // The names of the origins that replicate; nothing to do when empty.
  const std::vector<std::string>& origin_names() const { return names_; }

  // Runs rounds on a thread of its own until Stop.
  void Start();
  // A version was published (or something else changed what to copy): sweep again soon.
  void Wake();
  // Cancels the running copy and ends the thread; idempotent.
  void Stop();

  // One round on the caller's thread: the sweep, then every row due now (taken `batch` at a
  // time until none is due). Returns how many copies were attempted. Fails only when the
  // catalog does.
  absl::StatusOr<int> RunOnce();

 private:
  // The thread's round: RunOnce, then the wait until the next row is due.
  absl::Duration Round();
  // One attempt for `row`; stores its outcome in the row.
  absl::Status Attempt(storage::ReplicaRow row, const origin::ConfiguredOrigin& target);
  // Uploads and checks the copy; the attempt's result.
  absl::Status Copy(storage::ReplicaRow* row, const origin::ConfiguredOrigin& target);

  storage::Catalog* catalog_;
  storage::BlobStore* blobs_;
  BlobHealth* health_;
  const origin::OriginSet* origins_;
  Options options_;
  std::vector<std::string> names_;

  absl::Mutex random_mu_;
  std::function<double()> random_ ABSL_GUARDED_BY(random_mu_);
  // Last: stopped (joined) first, before the members its rounds use.
  WakeableLoop loop_{[this] { return Round(); }};
};

}  // namespace modeldist::services

#endif  // MODELDIST_SERVICES_REPLICATOR_H_
