// File: release_admin.h
//
// The server's side of release statements (common/release.h): what PublishVersion and
// AttachRelease (registry.proto) check before a statement is stored. A statement is stored
// only when the newest trust root's release keys signed it (VerifyRelease) and it lists
// exactly the version's artifacts as this server has them: each one's digest, size, format,
// platform, arch, and the chunk chain the server serves devices (the blob store's, or for a
// blob no longer stored here, the chain recorded for read-through). So every manifest of the
// version carries a statement that releases its artifact, and devices whose root has release
// keys accept it.
#ifndef MODELDIST_SERVICES_RELEASE_ADMIN_H_
#define MODELDIST_SERVICES_RELEASE_ADMIN_H_

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "modeldist/v1/manifest.pb.h"
#include "modeldist/v1/registry.pb.h"
#include "modeldist/v1/resources.pb.h"
#include "storage/blob_store.h"
#include "storage/catalog.h"

namespace modeldist::services {

// What a release statement must list for `version`, in its artifacts' order, computed from
// what the server stores. FAILED_PRECONDITION (ARTIFACT_NOT_UPLOADED) when the server has
// neither an artifact's bytes nor its recorded chain; DATA_LOSS when the bytes are damaged.
absl::StatusOr<std::vector<v1::ReleasedArtifact>> StoredReleasedArtifacts(
    const v1::Version& version, const storage::BlobStore& blobs, storage::Catalog& catalog);

// OK when `root`'s release keys signed `signed_release` for `version` and it lists exactly
// `version`'s artifacts as stored. Errors: those of VerifyRelease (RELEASE_KEYS_NOT_SET,
// RELEASE_SIGNATURE_THRESHOLD_NOT_MET, MALFORMED_RELEASE), PERMISSION_DENIED
// (RELEASE_MISMATCH) naming the first artifact missing, altered or extra, and those of
// StoredReleasedArtifacts.
absl::Status CheckVersionRelease(const v1::TrustRoot& root, const v1::SignedRelease& signed_release,
                                 const v1::Version& version, const storage::BlobStore& blobs,
                                 storage::Catalog& catalog);

// PublishVersion's release check: the serialized statement to store with the version (empty
// when the request has none and `root` needs none). FAILED_PRECONDITION (RELEASE_REQUIRED)
// when `root` has release keys and the request no release; FAILED_PRECONDITION
// (RELEASE_KEYS_NOT_SET) for a release when it has none; CheckVersionRelease's errors. Checks
// nothing for a version that is not a DRAFT (the catalog refuses to publish it).
absl::StatusOr<std::string> ReleaseToPublish(const v1::TrustRoot& root,
                                             const v1::PublishVersionRequest& request,
                                             const storage::BlobStore& blobs,
                                             storage::Catalog& catalog);

// AttachRelease (registry.proto), without the re-signing: validates the request, checks the
// statement against `root` and the PUBLISHED version, and stores it (audited as `actor`).
absl::StatusOr<v1::Version> AttachRelease(const v1::TrustRoot& root,
                                          const v1::AttachReleaseRequest& request,
                                          absl::string_view actor, const storage::BlobStore& blobs,
                                          storage::Catalog& catalog);

}  // namespace modeldist::services

#endif  // MODELDIST_SERVICES_RELEASE_ADMIN_H_
