#include "services/replica_eviction.h"

#include <algorithm>
#include <iostream>
#include <set>
#include <utility>

#include "absl/strings/str_join.h"
#include "common/digest.h"
#include "common/status.h"
#include "services/read_through.h"

namespace modeldist::services {

ReplicaEviction::ReplicaEviction(storage::Catalog* catalog, storage::BlobStore* blobs,
                                 std::vector<std::string> origins)
    : catalog_(catalog), blobs_(blobs), origins_(std::move(origins)) {}

absl::StatusOr<bool> ReplicaEviction::MaybeEvict(const std::string& digest) {
  MD_ASSIGN_OR_RETURN(std::string hex, ParseDigest("digest", digest));
  if (origins_.empty()) return false;
  // The rows are the copies the blob's versions ask for (Version.replicate_to); those of
  // origins that no longer replicate do not count.
  MD_ASSIGN_OR_RETURN(const std::vector<v1::Replica> replicas, catalog_->ListReplicas(digest));
  std::vector<std::string> confirmed;
  for (const v1::Replica& replica : replicas) {
    if (std::find(origins_.begin(), origins_.end(), replica.origin()) == origins_.end()) continue;
    if (replica.state() != v1::Replica::CONFIRMED) return false;
    confirmed.push_back(replica.origin());
  }
  if (confirmed.empty()) return false;
  // Without a usable recorded chain the blob could not be read through: it stays.
  if (!RecordedChainLookup(catalog_)(hex).ok()) return false;
  absl::StatusOr<int64_t> size = blobs_->Size(hex);
  if (!size.ok()) return false;  // not stored (or damaged: BlobHealth deals with that)
  MD_RETURN_IF_ERROR(blobs_->Evict(hex));
  std::cerr << "modeldist-server: evicted the local copy of " << digest << " (" << *size
            << " bytes): " << absl::StrJoin(confirmed, ", ")
            << " confirmed copies; it is read through from them when asked for\n";
  return true;
}

absl::StatusOr<int> ReplicaEviction::Sweep() {
  if (origins_.empty()) return 0;
  MD_ASSIGN_OR_RETURN(auto confirmed, catalog_->ListConfirmedReplicas());
  std::set<std::string> digests;
  for (const auto& [digest, origin] : confirmed) digests.insert(digest);
  int evicted = 0;
  for (const std::string& digest : digests) {
    MD_ASSIGN_OR_RETURN(const bool gone, MaybeEvict(digest));
    evicted += gone ? 1 : 0;
  }
  return evicted;
}

}  // namespace modeldist::services
