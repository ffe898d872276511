// File: replica_eviction.h
//
// modeldist-server --evict-replicated: the local copy of a blob is removed once every origin
// its versions ask for (Version.replicate_to, else the model's, else every origin with
// `replicate: true`) holds a confirmed copy of it and its chunk chain is recorded. The server then
// reads the blob through from those origins when it is asked for (services/read_through.h),
// verifying every chunk against the recorded chain, so the disk holds what is not replicated yet
// and what was read since.
//
// When it happens: after each confirmed copy (the Replicator's on_confirmed), and at start
// for blobs whose copies were all confirmed earlier (turning the flag on evicts what is
// already replicated; a blob read through since the last start goes again then). A blob with
// one copy still pending, failing or missing stays: eviction never leaves a blob with fewer
// places than the operator asked for.
//
// Stateless beyond its arguments; thread-safe.
#ifndef MODELDIST_SERVICES_REPLICA_EVICTION_H_
#define MODELDIST_SERVICES_REPLICA_EVICTION_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "storage/blob_store.h"
#include "storage/catalog.h"

namespace modeldist::services {

class ReplicaEviction {
 public:
  // `origins`: the names of the origins that replicate (Replicator::origin_names). Everything
  // must outlive this.
  ReplicaEviction(storage::Catalog* catalog, storage::BlobStore* blobs,
                  std::vector<std::string> origins);

  // Evicts blob `digest` (`sha256:<hex>`) when it is stored, it has a copy queued on one of
  // `origins` at least and every such copy is CONFIRMED, and its chain is recorded; whether
  // it did.
  absl::StatusOr<bool> MaybeEvict(const std::string& digest);
  // MaybeEvict for every blob with a confirmed copy; how many it evicted.
  absl::StatusOr<int> Sweep();

 private:
  storage::Catalog* const catalog_;
  storage::BlobStore* const blobs_;
  const std::vector<std::string> origins_;
};

}  // namespace modeldist::services

#endif  // MODELDIST_SERVICES_REPLICA_EVICTION_H_
