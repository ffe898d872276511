// The audit log, the trust root chain and the damaged-blob records: what the catalog keeps on
// record rather than serves.
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/status.h"
#include "storage/catalog.h"
#include "storage/catalog_internal.h"
#include "storage/page_token.h"

namespace modeldist::storage {
namespace {

#define MD_AUDIT_COLUMNS "id, time, actor, action, resource, details"
constexpr char kInsertAudit[] =
    "INSERT INTO audit_log (time, actor, action, resource, details) VALUES (?, ?, ?, ?, ?)";
// The first page passes the largest id as the cursor.
constexpr char kListAudit[] =
    "SELECT " MD_AUDIT_COLUMNS " FROM audit_log WHERE id < ? ORDER BY id DESC LIMIT ?";

#undef MD_AUDIT_COLUMNS

constexpr char kSelectNewestTrustRootVersion[] =
    "SELECT COALESCE(MAX(version), 0) FROM trust_roots";
constexpr char kSelectTrustRoot[] = "SELECT signed_root FROM trust_roots WHERE version = ?";
constexpr char kInsertTrustRoot[] =
    "INSERT INTO trust_roots (version, signed_root, create_time) VALUES (?, ?, ?)";

constexpr char kInsertDamagedBlob[] =
    "INSERT INTO damaged_blobs (digest, details, detect_time) VALUES (?, ?, ?)"
    " ON CONFLICT (digest) DO NOTHING";
constexpr char kDeleteDamagedBlob[] = "DELETE FROM damaged_blobs WHERE digest = ?";
constexpr char kListDamagedBlobs[] =
    "SELECT digest, details, detect_time FROM damaged_blobs ORDER BY digest";

// Columns of MD_AUDIT_COLUMNS.
v1::AuditEntry ReadAuditEntry(const Statement& s) {
  v1::AuditEntry entry;
  entry.set_id(s.ColumnInt64(0));
  *entry.mutable_time() = ToTimestamp(s.ColumnInt64(1));
  entry.set_actor(s.ColumnText(2));
  entry.set_action(s.ColumnText(3));
  entry.set_resource(s.ColumnText(4));
  entry.set_details(s.ColumnText(5));
  return entry;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Impl.

absl::Status Catalog::Impl::Audit(int64_t now, absl::string_view actor, absl::string_view action,
                                  absl::string_view resource, absl::string_view details) {
  MD_ASSIGN_OR_RETURN(Statement s, Prepare(kInsertAudit));
  s.BindInt64(0, now);
  s.BindText(1, actor.empty() ? kDefaultActor : actor);
  s.BindText(2, action);
  s.BindText(3, resource);
  s.BindText(4, details);
  return s.Run();
}

// ---------------------------------------------------------------------------------------------
// Audit log.

absl::StatusOr<ListPage<v1::AuditEntry>> Catalog::ListAuditLog(int page_size,
                                                               absl::string_view page_token) {
  MD_ASSIGN_OR_RETURN(const int limit, EffectivePageSize(page_size));
  int64_t before = std::numeric_limits<int64_t>::max();
  if (!page_token.empty()) {
    MD_ASSIGN_OR_RETURN(std::vector<std::string> after, DecodePageToken(page_token, "audit", 1));
    if (!absl::SimpleAtoi(after[0], &before)) return InvalidPageToken();
  }
  absl::MutexLock lock(&impl_->mu);
  MD_ASSIGN_OR_RETURN(Statement s, impl_->Prepare(kListAudit));
  s.BindInt64(0, before);
  s.BindInt64(1, limit + 1);
  ListPage<v1::AuditEntry> page;
  while (true) {
    MD_ASSIGN_OR_RETURN(bool row, s.Step());
    if (!row) break;
    if (static_cast<int>(page.items.size()) == limit) {
      page.next_page_token = EncodePageToken({"audit", absl::StrCat(page.items.back().id())});
      break;
    }
    page.items.push_back(ReadAuditEntry(s));
  }
  return page;
}

absl::Status Catalog::AppendAudit(absl::string_view actor, absl::string_view action,
                                  absl::string_view resource, absl::string_view details) {
  absl::MutexLock lock(&impl_->mu);
  Transaction txn(&impl_->statements);
  MD_RETURN_IF_ERROR(txn.BeginWrite());
  MD_RETURN_IF_ERROR(impl_->Audit(impl_->NowMicros(), actor, action, resource, details));
  return txn.Commit();
}

// ---------------------------------------------------------------------------------------------
// Trust roots.

absl::Status Catalog::AppendTrustRoot(int64_t version, absl::string_view signed_root,
                                      absl::string_view actor) {
  absl::MutexLock lock(&impl_->mu);
  Transaction txn(&impl_->statements);
  MD_RETURN_IF_ERROR(txn.BeginWrite());
  int64_t newest = 0;
  {
    MD_ASSIGN_OR_RETURN(Statement s, impl_->Prepare(kSelectNewestTrustRootVersion));
    MD_ASSIGN_OR_RETURN(bool row, s.Step());
    if (row) newest = s.ColumnInt64(0);
  }
  // Devices walk the chain one version at a time, each root signed by its predecessor; a gap
  // or a second root with one number would strand them.
  if (version != newest + 1) {
    return MakeError(absl::StatusCode::kFailedPrecondition, "ROOT_VERSION_GAP",
                     absl::StrCat("trust root version ", version, " cannot follow version ", newest,
                                  "; the next root must be version ", newest + 1),
                     {{"version", absl::StrCat(version)}, {"expected", absl::StrCat(newest + 1)}});
  }
  const int64_t now = impl_->NowMicros();
  {
    MD_ASSIGN_OR_RETURN(Statement s, impl_->Prepare(kInsertTrustRoot));
    s.BindInt64(0, version);
    s.BindBlob(1, signed_root);
    s.BindInt64(2, now);
    MD_RETURN_IF_ERROR(s.Run());
  }
  MD_RETURN_IF_ERROR(impl_->Audit(
      now, actor, "AppendTrustRoot", absl::StrCat("trustRoots/", version),
      absl::StrCat("trust root version ", version, " (", signed_root.size(), " bytes)")));
  return txn.Commit();
}

absl::StatusOr<std::string> Catalog::GetTrustRoot(int64_t version) {
  absl::MutexLock lock(&impl_->mu);
  Transaction txn(&impl_->statements);
  MD_RETURN_IF_ERROR(txn.BeginRead());
  int64_t wanted = version;
  if (wanted == 0) {
    MD_ASSIGN_OR_RETURN(Statement s, impl_->Prepare(kSelectNewestTrustRootVersion));
    MD_ASSIGN_OR_RETURN(bool row, s.Step());
    if (row) wanted = s.ColumnInt64(0);
  }
  std::string root;
  bool found = false;
  if (wanted > 0) {
    MD_ASSIGN_OR_RETURN(Statement s, impl_->Prepare(kSelectTrustRoot));
    s.BindInt64(0, wanted);
    MD_ASSIGN_OR_RETURN(found, s.Step());
    if (found) root = s.ColumnBlob(0);
  }
  MD_RETURN_IF_ERROR(txn.Commit());
  if (!found) {
    return MakeError(absl::StatusCode::kNotFound, "TRUST_ROOT_NOT_FOUND",
                     version == 0 ? std::string("no trust root is stored yet")
                                  : absl::StrCat("trust root version ", version, " does not exist"),
                     {{"version", absl::StrCat(version)}});
  }
  return root;
}

// ---------------------------------------------------------------------------------------------
// Damaged blobs.

absl::StatusOr<bool> Catalog::MarkBlobDamaged(absl::string_view digest, absl::string_view details,
                                              absl::string_view actor) {
  absl::MutexLock lock(&impl_->mu);
  Transaction txn(&impl_->statements);
  MD_RETURN_IF_ERROR(txn.BeginWrite());
  const int64_t now = impl_->NowMicros();
  {
    MD_ASSIGN_OR_RETURN(Statement s, impl_->Prepare(kInsertDamagedBlob));
    s.BindText(0, digest);
    s.BindText(1, details);
    s.BindInt64(2, now);
    MD_RETURN_IF_ERROR(s.Run());
  }
  if (impl_->Changes() == 0) return false;  // already recorded: one audit entry per incident
  MD_RETURN_IF_ERROR(impl_->Audit(now, actor, "BlobDamaged", digest, details));
  MD_RETURN_IF_ERROR(txn.Commit());
  return true;
}

absl::StatusOr<bool> Catalog::ClearBlobDamaged(absl::string_view digest, absl::string_view details,
                                               absl::string_view actor) {
  absl::MutexLock lock(&impl_->mu);
  Transaction txn(&impl_->statements);
  MD_RETURN_IF_ERROR(txn.BeginWrite());
  {
    MD_ASSIGN_OR_RETURN(Statement s, impl_->Prepare(kDeleteDamagedBlob));
    s.BindText(0, digest);
    MD_RETURN_IF_ERROR(s.Run());
  }
  if (impl_->Changes() == 0) return false;
  MD_RETURN_IF_ERROR(impl_->Audit(impl_->NowMicros(), actor, "BlobRestored", digest, details));
  MD_RETURN_IF_ERROR(txn.Commit());
  return true;
}

absl::StatusOr<std::vector<DamagedBlob>> Catalog::ListDamagedBlobs() {
  absl::MutexLock lock(&impl_->mu);
  MD_ASSIGN_OR_RETURN(Statement s, impl_->Prepare(kListDamagedBlobs));
  std::vector<DamagedBlob> out;
  for (;;) {
    MD_ASSIGN_OR_RETURN(bool row, s.Step());
    if (!row) break;
    out.push_back({s.ColumnText(0), s.ColumnText(1), absl::FromUnixMicros(s.ColumnInt64(2))});
  }
  return out;
}

}  // namespace modeldist::storage
