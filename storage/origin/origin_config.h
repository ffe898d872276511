// Loading and checking the server's origins file (proto/modeldist/v1/origins.proto), and the
// few facts about an origin that every part of the server asks alike.
//
// Every mistake is reported at start-up with the field's path ("origins[1].s3.endpoint") and
// what to write instead, so that a server never runs with an origin it cannot use. Secrets
// are read only when an origin is built (ReadSecret), and never appear in an error message.
#ifndef MODELDIST_STORAGE_ORIGIN_ORIGIN_CONFIG_H_
#define MODELDIST_STORAGE_ORIGIN_ORIGIN_CONFIG_H_

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "modeldist/v1/origins.pb.h"

namespace modeldist::origin {

// Reads `path` as JSON when it ends in ".json", else as protobuf text format, and validates
// it. INVALID_ARGUMENT (reason INVALID_ORIGINS_CONFIG, metadata "field") for a file that does
// not parse or holds a bad value; NOT_FOUND when there is no such file.
absl::StatusOr<v1::OriginsConfig> LoadOriginsConfig(const std::string& path);

// The checks LoadOriginsConfig runs: unique names of the right shape, one kind per origin,
// http(s) URLs, a bucket and credentials where the kind needs them, part sizes S3 accepts,
// replication only to stores that can be written, at most one origin forwarding manifests.
absl::Status ValidateOriginsConfig(const v1::OriginsConfig& config);

// The secret's value (a file's trailing newline removed). FAILED_PRECONDITION (reason
// SECRET_UNAVAILABLE) when the file cannot be read, is readable by group or others, or the
// variable is unset or empty; the message names `field` and the file or variable, never the
// value.
absl::StatusOr<std::string> ReadSecret(const v1::Secret& secret, const std::string& field);

// FAILED_PRECONDITION (reason ORIGIN_READ_ONLY) for a write to a read-only origin: "<name> is
// <kind>, which is read-only: cannot <what>; <instead>".
absl::Status ReadOnlyOriginError(const std::string& name, const std::string& kind,
                                 const std::string& what, const std::string& instead);

// Whether blobs can be written to the origin (S3 and Supabase; HTTP and modeldist origins are
// read-only).
bool IsWritable(const v1::Origin& origin);

// The object key of blob sha256:`digest_hex` on `origin`: "<key_prefix>sha256/<hex>".
std::string BlobKey(const v1::Origin& origin, const std::string& digest_hex);

// "s3", "supabase", "http" or "modeldist" ("" when no kind is set).
std::string OriginKind(const v1::Origin& origin);

// Where the origin's objects are, for people: "<endpoint>/<bucket>" (S3),
// "<url>/storage/v1/object/<bucket>" (Supabase), the base URL (HTTP) or the upstream's target
// (modeldist). Never a credential:
// every URL in a valid config has no user, password or query.
std::string OriginLocation(const v1::Origin& origin);

// INVALID_ARGUMENT (reason INVALID_ORIGIN_NAME, metadata "field") unless `name` could name an
// origin: 1-63 characters from [a-z0-9-], starting with a letter.
absl::Status ValidateOriginName(const std::string& field, const std::string& name);

}  // namespace modeldist::origin

#endif  // MODELDIST_STORAGE_ORIGIN_ORIGIN_CONFIG_H_
