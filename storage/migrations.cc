#include "storage/migrations.h"

#include <cstdint>
#include <optional>
#include <string>

#include "absl/strings/str_cat.h"
#include "common/status.h"
#include "storage/sqlite.h"

namespace modeldist::storage {
namespace {

constexpr char kSchemaMigrationsExists[] =
    "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'";
constexpr char kCreateSchemaMigrations[] =
    "CREATE TABLE IF NOT EXISTS schema_migrations ("
    "version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)";
constexpr char kSelectSchemaVersion[] = "SELECT COALESCE(MAX(version), 0) FROM schema_migrations";
constexpr char kInsertSchemaMigration[] =
    "INSERT INTO schema_migrations (version, name, applied_at) "
    "VALUES (?, ?, strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))";

// The integer in the first column of `sql`'s first row; nullopt when there is no row.
absl::StatusOr<std::optional<int64_t>> QueryInt(StatementCache* statements, const char* sql) {
  MD_ASSIGN_OR_RETURN(Statement s, statements->Prepare(sql));
  MD_ASSIGN_OR_RETURN(bool row, s.Step());
  if (!row) return std::nullopt;
  return s.ColumnInt64(0);
}

absl::StatusOr<int> ReadSchemaVersion(StatementCache* statements) {
  MD_ASSIGN_OR_RETURN(std::optional<int64_t> exists, QueryInt(statements, kSchemaMigrationsExists));
  if (!exists) return 0;
  MD_ASSIGN_OR_RETURN(std::optional<int64_t> version, QueryInt(statements, kSelectSchemaVersion));
  return static_cast<int>(version.value_or(0));
}

absl::Status RecordMigration(StatementCache* statements, const Migration& migration) {
  MD_ASSIGN_OR_RETURN(Statement s, statements->Prepare(kInsertSchemaMigration));
  s.BindInt64(0, migration.number);
  s.BindText(1, migration.name);
  return s.Run();
}

absl::Status SchemaTooNew(int db_version, int known_version) {
  return MakeError(
      absl::StatusCode::kFailedPrecondition, "SCHEMA_TOO_NEW",
      absl::StrCat("the catalog database has schema version ", db_version,
                   " but this binary knows schema versions up to ", known_version,
                   ": the database was migrated by a newer modeldist. Upgrade this binary to a "
                   "release that carries migration ",
                   db_version, " (schema downgrades are not supported)"),
      {{"database_version", absl::StrCat(db_version)},
       {"binary_version", absl::StrCat(known_version)}});
}

// Applies `migration` unless the database already has it, in one transaction. Returns the
// schema version afterwards.
absl::StatusOr<int> ApplyOne(StatementCache* statements, const Migration& migration, int latest) {
  // A write transaction takes the write lock now, so the version read below cannot be
  // overtaken by another process migrating the same file. Every return before Commit rolls
  // back.
  Transaction txn(statements);
  MD_RETURN_IF_ERROR(txn.BeginWrite());
  MD_RETURN_IF_ERROR(statements->Exec(kCreateSchemaMigrations));
  MD_ASSIGN_OR_RETURN(std::optional<int64_t> recorded, QueryInt(statements, kSelectSchemaVersion));
  const int version = static_cast<int>(recorded.value_or(0));
  if (version > latest) return SchemaTooNew(version, latest);
  if (version >= migration.number) return version;  // another process got here first

  if (std::optional<std::string> error = ExecScript(statements->db(), migration.sql)) {
    return MakeError(
        absl::StatusCode::kInternal, "MIGRATION_FAILED",
        absl::StrCat("catalog migration ", migration.number, " (", migration.name,
                     ") failed: ", *error, "; the database stays at schema version ", version),
        {{"migration", absl::StrCat(migration.number)}});
  }
  MD_RETURN_IF_ERROR(RecordMigration(statements, migration));
  MD_RETURN_IF_ERROR(txn.Commit());
  return migration.number;
}

}  // namespace

int LatestEmbeddedMigration() {
  const std::vector<Migration>& migrations = EmbeddedMigrations();
  return migrations.empty() ? 0 : migrations.back().number;
}

absl::StatusOr<int> ReadSchemaVersion(sqlite3* db) {
  StatementCache statements(db);
  return ReadSchemaVersion(&statements);
}

absl::Status ApplyMigrations(sqlite3* db) { return ApplyMigrations(db, EmbeddedMigrations()); }

absl::Status ApplyMigrations(sqlite3* db, const std::vector<Migration>& migrations) {
  int previous = 0;
  for (const Migration& m : migrations) {
    if (m.number <= previous || m.name == nullptr || m.sql == nullptr) {
      return MakeError(absl::StatusCode::kInternal, "INVALID_MIGRATIONS",
                       absl::StrCat("catalog migration ", m.number,
                                    " is out of order or incomplete; numbers must be positive "
                                    "and strictly increasing"));
    }
    previous = m.number;
  }
  const int latest = previous;

  StatementCache statements(db);
  // Refuse a newer database before touching it, even before creating schema_migrations.
  MD_ASSIGN_OR_RETURN(int version, ReadSchemaVersion(&statements));
  if (version > latest) return SchemaTooNew(version, latest);
  for (const Migration& m : migrations) {
    if (m.number <= version) continue;
    MD_ASSIGN_OR_RETURN(version, ApplyOne(&statements, m, latest));
  }
  return absl::OkStatus();
}

}  // namespace modeldist::storage
