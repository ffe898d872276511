// Release statements of versions (migrations/0008_releases.sql): stored as the serialized
// SignedRelease the registry verified, so that every manifest of the version carries exactly
// the bytes the release keys signed.
#include <string>

#include "absl/strings/str_cat.h"
#include "common/status.h"
#include "storage/catalog.h"
#include "storage/catalog_internal.h"

namespace modeldist::storage {
namespace {

constexpr char kSetRelease[] =
    "UPDATE versions SET release = ? WHERE model_id = ? AND version_id = ?";
constexpr char kSelectRelease[] =
    "SELECT release FROM versions WHERE model_id = ? AND version_id = ?";

}  // namespace

absl::StatusOr<v1::Version> Catalog::AttachRelease(const VersionName& name,
                                                   absl::string_view release,
                                                   absl::string_view actor) {
  absl::MutexLock lock(&impl_->mu);
  Transaction txn(&impl_->statements);
  MD_RETURN_IF_ERROR(txn.BeginWrite());
  MD_ASSIGN_OR_RETURN(v1::Version version, impl_->LoadVersion(name));
  if (version.state() != v1::Version::PUBLISHED) {
    return VersionNotPublished(version, "attach a release statement to");
  }
  const bool replaced = version.released();
  {
    MD_ASSIGN_OR_RETURN(Statement s, impl_->Prepare(kSetRelease));
    s.BindBlob(0, release);
    s.BindText(1, name.model);
    s.BindText(2, name.version);
    MD_RETURN_IF_ERROR(s.Run());
  }
  MD_ASSIGN_OR_RETURN(version, impl_->LoadVersion(name));
  MD_RETURN_IF_ERROR(
      impl_->Audit(impl_->NowMicros(), actor, "AttachRelease", name.ToString(),
                   replaced ? "replaced its release statement" : "attached a release statement"));
  MD_RETURN_IF_ERROR(txn.Commit());
  return version;
}

absl::StatusOr<std::string> Catalog::GetRelease(const VersionName& name) {
  absl::MutexLock lock(&impl_->mu);
  MD_ASSIGN_OR_RETURN(Statement s, impl_->Prepare(kSelectRelease));
  s.BindText(0, name.model);
  s.BindText(1, name.version);
  MD_ASSIGN_OR_RETURN(bool row, s.Step());
  if (!row) {
    // LoadVersion makes the NOT_FOUND that names what is absent (the model or the version).
    absl::Status absent = impl_->LoadVersion(name).status();
    if (!absent.ok()) return absent;
    return MakeError(absl::StatusCode::kInternal, "CATALOG_ERROR",
                     absl::StrCat(name.ToString(), " vanished while being read"));
  }
  return s.ColumnIsNull(0) ? std::string() : s.ColumnBlob(0);
}

}  // namespace modeldist::storage
