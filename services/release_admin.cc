#include "services/release_admin.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "common/digest.h"
#include "common/release.h"
#include "common/status.h"
#include "services/request_validation.h"
#include "storage/blob_record.h"

namespace modeldist::services {
namespace {

// The chain devices are sent for `digest` (ManifestCache serves the same): the blob store's,
// or the one recorded for read-through when the bytes are no longer stored here.
absl::StatusOr<v1::ManifestArtifact> ServedChain(const v1::Artifact& artifact,
                                                 const storage::BlobStore& blobs,
                                                 storage::Catalog& catalog) {
  MD_ASSIGN_OR_RETURN(std::string hex, ParseDigest("digest", artifact.digest()));
  v1::ManifestArtifact out;
  absl::StatusOr<std::vector<std::string>> chain = blobs.ChunkChain(hex);
  if (chain.ok()) {
    out.set_chunk_size(storage::kChunkDigestBytes);
    for (std::string& entry : *chain) out.add_chunk_chain(std::move(entry));
    return out;
  }
  if (!storage::IsNotStored(chain.status())) return chain.status();
  absl::StatusOr<storage::RecordedChain> recorded = catalog.GetRecordedChain(artifact.digest());
  if (!recorded.ok()) {
    if (!absl::IsNotFound(recorded.status())) return recorded.status();
    return MakeError(
        absl::StatusCode::kFailedPrecondition, "ARTIFACT_NOT_UPLOADED",
        absl::StrCat("the artifact ", storage::ArtifactKey(artifact), " (", artifact.digest(),
                     ") is not uploaded, so its release cannot be checked; upload "
                     "it first"),
        {{"digest", artifact.digest()}, {"artifact", storage::ArtifactKey(artifact)}});
  }
  out.set_chunk_size(recorded->chunk_size);
  for (size_t at = 0; at < recorded->chain.size(); at += storage::kChainEntryBytes) {
    out.add_chunk_chain(recorded->chain.substr(at, storage::kChainEntryBytes));
  }
  return out;
}

absl::Status Mismatch(const v1::Version& version, absl::string_view what) {
  return MakeError(absl::StatusCode::kPermissionDenied, kReasonReleaseMismatch,
                   absl::StrCat("the release statement does not list exactly the artifacts of ",
                                version.name(), " as uploaded: ", what,
                                "; sign a statement of the uploaded files (modeldistctl release "
                                "sign) and send it again"),
                   {{"resource", version.name()}});
}

bool SameArtifact(const v1::ReleasedArtifact& a, const v1::ReleasedArtifact& b) {
  return a.digest() == b.digest() && a.platform() == b.platform() && a.arch() == b.arch() &&
         a.format() == b.format();
}

}  // namespace

absl::StatusOr<std::vector<v1::ReleasedArtifact>> StoredReleasedArtifacts(
    const v1::Version& version, const storage::BlobStore& blobs, storage::Catalog& catalog) {
  std::vector<v1::ReleasedArtifact> out;
  for (const v1::Artifact& artifact : version.artifacts()) {
    MD_ASSIGN_OR_RETURN(v1::ManifestArtifact served, ServedChain(artifact, blobs, catalog));
    served.set_digest(artifact.digest());
    served.set_size_bytes(artifact.size_bytes());
    served.set_format(artifact.format());
    served.set_platform(artifact.platform());
    served.set_arch(artifact.arch());
    out.push_back(ReleasedArtifactFor(served));
  }
  return out;
}

absl::Status CheckVersionRelease(const v1::TrustRoot& root, const v1::SignedRelease& signed_release,
                                 const v1::Version& version, const storage::BlobStore& blobs,
                                 storage::Catalog& catalog) {
  MD_ASSIGN_OR_RETURN(v1::Release release, VerifyRelease(root, signed_release, version.name()));
  MD_ASSIGN_OR_RETURN(std::vector<v1::ReleasedArtifact> stored,
                      StoredReleasedArtifacts(version, blobs, catalog));
  // Missing or altered artifacts first, in the version's order; then extra ones.
  for (const v1::ReleasedArtifact& artifact : stored) {
    if (absl::Status listed = CheckArtifactReleased(release, artifact); !listed.ok()) {
      return Mismatch(version, listed.message());
    }
  }
  for (int i = 0; i < release.artifacts_size(); ++i) {
    const v1::ReleasedArtifact& listed = release.artifacts(i);
    int in_version = 0;
    int listed_before = 0;
    for (const v1::ReleasedArtifact& artifact : stored)
      in_version += SameArtifact(listed, artifact);
    for (int j = 0; j < i; ++j) listed_before += SameArtifact(listed, release.artifacts(j));
    if (in_version == 0 || listed_before >= in_version) {
      return Mismatch(
          version,
          absl::StrCat("it lists ", listed.digest(), " (", v1::Platform_Name(listed.platform()),
                       "/", v1::Arch_Name(listed.arch()), " ", v1::Format_Name(listed.format()),
                       ")", in_version == 0 ? ", which the version does not have" : " twice"));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> ReleaseToPublish(const v1::TrustRoot& root,
                                             const v1::PublishVersionRequest& request,
                                             const storage::BlobStore& blobs,
                                             storage::Catalog& catalog) {
  if (!root.has_release_keys() && !request.has_release()) return std::string();
  MD_ASSIGN_OR_RETURN(VersionName name, ParseVersionName("name", request.name()));
  MD_ASSIGN_OR_RETURN(v1::Version draft, catalog.GetVersion(name));
  if (draft.state() != v1::Version::DRAFT) return std::string();  // the catalog says why
  if (!request.has_release()) {
    return MakeError(
        absl::StatusCode::kFailedPrecondition, kReasonReleaseRequired,
        absl::StrCat("trust root ", root.version(), " has release keys, so ", request.name(),
                     " needs a release statement signed by them: run `modeldistctl "
                     "release sign` where its files are, then publish with "
                     "--release"),
        {{"resource", request.name()}});
  }
  MD_RETURN_IF_ERROR(CheckVersionRelease(root, request.release(), draft, blobs, catalog));
  return request.release().SerializeAsString();
}

absl::StatusOr<v1::Version> AttachRelease(const v1::TrustRoot& root,
                                          const v1::AttachReleaseRequest& request,
                                          absl::string_view actor, const storage::BlobStore& blobs,
                                          storage::Catalog& catalog) {
  VersionName name;
  MD_RETURN_IF_ERROR(RequestCheck().VersionName("name", request.name(), &name).status());
  MD_ASSIGN_OR_RETURN(v1::Version version, catalog.GetVersion(name));
  if (version.state() != v1::Version::PUBLISHED) {
    // Refused here, not left to the catalog: a publish committed meanwhile would let an
    // unchecked statement through.
    return MakeError(
        absl::StatusCode::kFailedPrecondition, "VERSION_NOT_PUBLISHED",
        absl::StrCat(request.name(), " is not PUBLISHED: publish it with --release instead"),
        {{"resource", request.name()}});
  }
  MD_RETURN_IF_ERROR(CheckVersionRelease(root, request.release(), version, blobs, catalog));
  return catalog.AttachRelease(name, request.release().SerializeAsString(), actor);
}

}  // namespace modeldist::services
