// File: origin_factory.h
//
// The server's OriginFactory (origin_set.h): builds the Origin of one entry of the origins
// file, reading its credentials (ReadSecret) now, so that a missing one stops the start.
#ifndef MODELDIST_STORAGE_ORIGIN_ORIGIN_FACTORY_H_
#define MODELDIST_STORAGE_ORIGIN_ORIGIN_FACTORY_H_

#include <memory>

#include "absl/status/statusor.h"
#include "modeldist/v1/origins.pb.h"
#include "storage/origin/origin.h"

namespace modeldist::origin {

// The origin of the entry's kind (S3Origin for `s3` and SupabaseOrigin for `supabase`, their
// secrets read now; HttpOrigin for `http`, ModeldistOrigin for `modeldist`), wrapped in a CdnOrigin
// when the entry has a `cdn` (with a CloudFrontSigner for `cdn.cloudfront`, whose key is read and
// checked now). An entry with no kind is UNIMPLEMENTED (reason ORIGIN_KIND_UNSUPPORTED), so a file
// naming a kind this version does not know stops the server rather than being half used.
absl::StatusOr<std::unique_ptr<Origin>> MakeOrigin(const v1::Origin& config);

}  // namespace modeldist::origin

#endif  // MODELDIST_STORAGE_ORIGIN_ORIGIN_FACTORY_H_
