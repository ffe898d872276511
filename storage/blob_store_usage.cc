#include "storage/blob_store_usage.h"

#include <string>
#include <vector>

#include "common/status.h"

namespace modeldist::storage {

absl::StatusOr<BlobStoreUsage> MeasureUsage(const BlobStore& blobs) {
  MD_ASSIGN_OR_RETURN(std::vector<std::string> listed, blobs.ListBlobs());
  BlobStoreUsage usage;
  for (const std::string& hex : listed) {
    absl::StatusOr<int64_t> size = blobs.Size(hex);
    if (!size.ok()) continue;
    ++usage.blobs;
    usage.bytes += *size;
  }
  return usage;
}

}  // namespace modeldist::storage
