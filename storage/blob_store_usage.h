// File: blob_store_usage.h
//
// What a blob store holds now, counted from its listing: for `modeldistctl status`
// (ListOriginsResponse.blob_store) and the /metrics gauges, which must agree.
#ifndef MODELDIST_STORAGE_BLOB_STORE_USAGE_H_
#define MODELDIST_STORAGE_BLOB_STORE_USAGE_H_

#include <cstdint>

#include "absl/status/statusor.h"
#include "storage/blob_store.h"

namespace modeldist::storage {

struct BlobStoreUsage {
  int64_t blobs = 0;
  int64_t bytes = 0;
};

// The blobs `blobs` lists and their recorded sizes; a blob removed (evicted, quarantined) while
// they are counted is skipped. Errors: the listing's.
absl::StatusOr<BlobStoreUsage> MeasureUsage(const BlobStore& blobs);

}  // namespace modeldist::storage

#endif  // MODELDIST_STORAGE_BLOB_STORE_USAGE_H_
