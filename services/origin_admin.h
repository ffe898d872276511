// File: origin_admin.h
//
// RegistryService.ListOrigins and CheckOrigin (registry.proto) over the server's origins
// (storage/origin/origin_set.h): what `modeldistctl origins list|check` shows. Nothing here
// ever puts a credential in a response: summaries are built from the config's public fields,
// and a failed step's message comes from the origin, whose errors name redacted URLs only.
#ifndef MODELDIST_SERVICES_ORIGIN_ADMIN_H_
#define MODELDIST_SERVICES_ORIGIN_ADMIN_H_

#include "absl/status/status.h"
#include "modeldist/v1/origins.pb.h"
#include "storage/blob_store.h"
#include "storage/catalog.h"
#include "storage/origin/origin_set.h"

namespace modeldist::services {

// `origins` may be nullptr: the server runs without an origins file, and has none.
absl::Status ListOrigins(const origin::OriginSet* origins, v1::ListOriginsResponse* response);

// ListOriginsResponse.blob_store: the blobs `blobs` holds now (a blob removed while they are
// counted is skipped) and the damaged blobs `catalog` records.
absl::Status FillBlobStoreUsage(const storage::BlobStore& blobs, storage::Catalog& catalog,
                                v1::BlobStoreUsage* usage);

// INVALID_ARGUMENT (INVALID_ORIGIN_NAME) or NOT_FOUND (ORIGIN_NOT_FOUND) for the name; else
// runs origin::CheckOrigin and reports every step, `ok` when all passed.
absl::Status CheckOrigin(const origin::OriginSet* origins, const v1::CheckOriginRequest& request,
                         v1::CheckOriginResponse* response);

}  // namespace modeldist::services

#endif  // MODELDIST_SERVICES_ORIGIN_ADMIN_H_
