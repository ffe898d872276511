// File: origin_repair.h
//
// Repairs a damaged blob from its replicas: when BlobHealth records damage (a chunk that no
// longer matches, a file gone), the blob is fetched back from the origins that hold a
// CONFIRMED copy (services/replicator.h), in the origins file's order, into the blob store's
// upload path (FetchIntoStore, blob_import.h): BlobStore::Append hashes as it writes, and
// Finish stores the blob only when its SHA-256 and size are the digest's, computing its chunk
// chain in the same pass. Then
// BlobHealth::Restored clears the record and the manifests come back. A copy that does not
// match is dropped (nothing is stored) and the next origin is tried; bytes an origin sent
// before failing stay in the upload and the next origin resumes after them (the final
// SHA-256 check covers every byte, whoever sent it).
//
// One repair of a digest at a time; reports of it while queued or running are dropped. Blobs
// still recorded as damaged are tried again every `retry_interval` (the origin may have been
// down), and at start.
//
// Thread-safe. RunOnce is one pass on the caller's thread, for the thread and for tests.
#ifndef MODELDIST_SERVICES_ORIGIN_REPAIR_H_
#define MODELDIST_SERVICES_ORIGIN_REPAIR_H_

#include <set>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "services/blob_health.h"
#include "services/wakeable_loop.h"
#include "storage/blob_store.h"
#include "storage/catalog.h"
#include "storage/origin/origin_set.h"

namespace modeldist::services {

class OriginRepair {
 public:
  // Everything must outlive this.
  OriginRepair(storage::Catalog* catalog, storage::BlobStore* blobs, BlobHealth* health,
               const origin::OriginSet* origins, absl::Duration retry_interval = absl::Minutes(10))
      : catalog_(catalog),
        blobs_(blobs),
        health_(health),
        origins_(origins),
        retry_interval_(retry_interval) {}
  ~OriginRepair();
  OriginRepair(const OriginRepair&) = delete;
  OriginRepair& operator=(const OriginRepair&) = delete;

  // Blob `hex` was found damaged: repair it soon (BlobHealth's on_damage).
  void Damaged(const std::string& hex) ABSL_LOCKS_EXCLUDED(mu_);

  // Runs passes on a thread of its own until Stop; the first at once.
  void Start();
  // Ends the thread after the repair in progress; idempotent.
  void Stop();

  // One pass: every blob the catalog records as damaged, and every one reported since the
  // last pass. Returns how many were repaired. Fails only when the catalog does.
  absl::StatusOr<int> RunOnce();

  // Fetches blob `hex` back from its confirmed replicas. NOT_FOUND when no origin holds a
  // confirmed copy; else the last origin's error when none gave the right bytes.
  absl::Status Repair(const std::string& hex);

 private:
  // The thread's round: RunOnce, then retry_interval_ until the next.
  absl::Duration Pass();
  // Reads blob `hex` of `size` bytes from `target` into the store's upload and finishes it.
  absl::Status FetchFrom(const origin::ConfiguredOrigin& target, const std::string& hex,
                         int64_t size);

  storage::Catalog* catalog_;
  storage::BlobStore* blobs_;
  BlobHealth* health_;
  const origin::OriginSet* origins_;
  const absl::Duration retry_interval_;

  absl::Mutex mu_;
  std::set<std::string> reported_ ABSL_GUARDED_BY(mu_);  // hex, since the last pass
  // Last: stopped (joined) first, before the members its passes use.
  WakeableLoop loop_{[this] { return Pass(); }};
};

}  // namespace modeldist::services

#endif  // MODELDIST_SERVICES_ORIGIN_REPAIR_H_
