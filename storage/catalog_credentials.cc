// Named admin credentials (migrations/0009_credentials.sql): a name, scopes and the SHA-256 of
// a token that only its creator ever saw.
#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/status.h"
#include "storage/catalog.h"
#include "storage/catalog_internal.h"
#include "storage/page_token.h"

namespace modeldist::storage {
namespace {

#define MD_CREDENTIAL_COLUMNS "name, scopes, created_by, create_time, revoke_time"
constexpr char kInsertCredential[] =
    "INSERT INTO credentials (name, scopes, token_sha256, created_by, create_time)"
    " VALUES (?, ?, ?, ?, ?)";
constexpr char kSelectCredentialByName[] =
    "SELECT " MD_CREDENTIAL_COLUMNS " FROM credentials WHERE name = ?";
constexpr char kSelectCredentialByHash[] =
    "SELECT " MD_CREDENTIAL_COLUMNS " FROM credentials WHERE token_sha256 = ?";
constexpr char kListCredentialsFirst[] =
    "SELECT " MD_CREDENTIAL_COLUMNS " FROM credentials ORDER BY name LIMIT ?";
constexpr char kListCredentialsAfter[] =
    "SELECT " MD_CREDENTIAL_COLUMNS " FROM credentials WHERE name > ? ORDER BY name LIMIT ?";
constexpr char kRevokeCredential[] = "UPDATE credentials SET revoke_time = ? WHERE name = ?";
#undef MD_CREDENTIAL_COLUMNS

// Columns of MD_CREDENTIAL_COLUMNS. Scope numbers newer than this binary are kept as they are.
v1::Credential ReadCredential(const Statement& s) {
  v1::Credential c;
  c.set_name(s.ColumnText(0));
  for (absl::string_view part : absl::StrSplit(s.ColumnText(1), ',', absl::SkipEmpty())) {
    int number = 0;
    if (absl::SimpleAtoi(part, &number)) c.add_scopes(static_cast<v1::Scope>(number));
  }
  c.set_created_by(s.ColumnText(2));
  *c.mutable_create_time() = ToTimestamp(s.ColumnInt64(3));
  if (!s.ColumnIsNull(4)) *c.mutable_revoke_time() = ToTimestamp(s.ColumnInt64(4));
  return c;
}

absl::Status CredentialNotFound(absl::string_view name) {
  return MakeError(absl::StatusCode::kNotFound, "CREDENTIAL_NOT_FOUND",
                   absl::StrCat("no credential is named \"", name, "\" (see ListCredentials)"),
                   {{"resource", absl::StrCat("credentials/", name)}});
}

// The scope numbers as stored: ascending, each once.
std::vector<int> SortedScopes(const std::vector<v1::Scope>& scopes) {
  std::vector<int> numbers(scopes.begin(), scopes.end());
  std::sort(numbers.begin(), numbers.end());
  numbers.erase(std::unique(numbers.begin(), numbers.end()), numbers.end());
  return numbers;
}

// The scopes for the audit log, by name.
std::string ScopeNames(const std::vector<v1::Scope>& scopes) {
  return absl::StrJoin(scopes, ", ", [](std::string* out, v1::Scope scope) {
    absl::StrAppend(out, v1::Scope_Name(scope));
  });
}

}  // namespace

absl::StatusOr<v1::Credential> Catalog::CreateCredential(absl::string_view name,
                                                         const std::vector<v1::Scope>& scopes,
                                                         absl::string_view token_sha256,
                                                         absl::string_view actor) {
  absl::MutexLock lock(&impl_->mu);
  Transaction txn(&impl_->statements);
  MD_RETURN_IF_ERROR(txn.BeginWrite());
  {
    MD_ASSIGN_OR_RETURN(Statement s, impl_->Prepare(kSelectCredentialByName));
    s.BindText(0, name);
    MD_ASSIGN_OR_RETURN(bool found, s.Step());
    if (found) {
      return MakeError(absl::StatusCode::kAlreadyExists, "CREDENTIAL_EXISTS",
                       absl::StrCat("a credential named \"", name,
                                    "\" exists (revoked names are never reused); pick another"),
                       {{"resource", absl::StrCat("credentials/", name)}});
    }
  }
  const int64_t now = impl_->NowMicros();
  {
    MD_ASSIGN_OR_RETURN(Statement s, impl_->Prepare(kInsertCredential));
    s.BindText(0, name);
    s.BindText(1, absl::StrJoin(SortedScopes(scopes), ","));
    s.BindText(2, token_sha256);
    s.BindText(3, actor);
    s.BindInt64(4, now);
    MD_RETURN_IF_ERROR(s.Run());
  }
  MD_RETURN_IF_ERROR(impl_->Audit(now, actor, "CreateCredential",
                                  absl::StrCat("credentials/", name),
                                  absl::StrCat("scopes: ", ScopeNames(scopes))));
  MD_RETURN_IF_ERROR(txn.Commit());
  v1::Credential c;
  c.set_name(std::string(name));
  for (int number : SortedScopes(scopes)) c.add_scopes(static_cast<v1::Scope>(number));
  c.set_created_by(std::string(actor));
  *c.mutable_create_time() = ToTimestamp(now);
  return c;
}

absl::StatusOr<ListPage<v1::Credential>> Catalog::ListCredentials(int page_size,
                                                                  absl::string_view page_token) {
  MD_ASSIGN_OR_RETURN(const int limit, EffectivePageSize(page_size));
  std::vector<std::string> after;
  if (!page_token.empty()) {
    MD_ASSIGN_OR_RETURN(after, DecodePageToken(page_token, "credentials", 1));
  }
  absl::MutexLock lock(&impl_->mu);
  MD_ASSIGN_OR_RETURN(
      Statement s, impl_->Prepare(after.empty() ? kListCredentialsFirst : kListCredentialsAfter));
  int bind = 0;
  if (!after.empty()) s.BindText(bind++, after[0]);
  s.BindInt64(bind, limit + 1);  // one extra row tells whether another page exists
  ListPage<v1::Credential> page;
  std::string last;
  while (true) {
    MD_ASSIGN_OR_RETURN(bool row, s.Step());
    if (!row) break;
    if (static_cast<int>(page.items.size()) == limit) {
      page.next_page_token = EncodePageToken({"credentials", last});
      break;
    }
    last = s.ColumnText(0);
    page.items.push_back(ReadCredential(s));
  }
  return page;
}

absl::StatusOr<v1::Credential> Catalog::RevokeCredential(absl::string_view name,
                                                         absl::string_view actor) {
  absl::MutexLock lock(&impl_->mu);
  Transaction txn(&impl_->statements);
  MD_RETURN_IF_ERROR(txn.BeginWrite());
  v1::Credential c;
  {
    MD_ASSIGN_OR_RETURN(Statement s, impl_->Prepare(kSelectCredentialByName));
    s.BindText(0, name);
    MD_ASSIGN_OR_RETURN(bool found, s.Step());
    if (!found) return CredentialNotFound(name);
    c = ReadCredential(s);
  }
  if (c.has_revoke_time()) {
    return MakeError(absl::StatusCode::kFailedPrecondition, "CREDENTIAL_REVOKED",
                     absl::StrCat("credential \"", name, "\" is already revoked"),
                     {{"resource", absl::StrCat("credentials/", name)}});
  }
  const int64_t now = impl_->NowMicros();
  {
    MD_ASSIGN_OR_RETURN(Statement s, impl_->Prepare(kRevokeCredential));
    s.BindInt64(0, now);
    s.BindText(1, name);
    MD_RETURN_IF_ERROR(s.Run());
  }
  MD_RETURN_IF_ERROR(
      impl_->Audit(now, actor, "RevokeCredential", absl::StrCat("credentials/", name), "revoked"));
  MD_RETURN_IF_ERROR(txn.Commit());
  *c.mutable_revoke_time() = ToTimestamp(now);
  return c;
}

absl::StatusOr<v1::Credential> Catalog::FindCredentialByTokenHash(absl::string_view token_sha256) {
  absl::MutexLock lock(&impl_->mu);
  MD_ASSIGN_OR_RETURN(Statement s, impl_->Prepare(kSelectCredentialByHash));
  s.BindText(0, token_sha256);
  MD_ASSIGN_OR_RETURN(bool found, s.Step());
  // The hash is not a name to show anyone.
  if (!found) return CredentialNotFound("(by token)");
  return ReadCredential(s);
}

absl::StatusOr<v1::Credential> Catalog::FindCredentialByName(absl::string_view name) {
  absl::MutexLock lock(&impl_->mu);
  MD_ASSIGN_OR_RETURN(Statement s, impl_->Prepare(kSelectCredentialByName));
  s.BindText(0, name);
  MD_ASSIGN_OR_RETURN(bool found, s.Step());
  if (!found) return CredentialNotFound(name);
  return ReadCredential(s);
}

}  // namespace modeldist::storage
