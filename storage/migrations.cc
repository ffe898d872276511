#include "storage/migrations.h"

#include <string>

#include "absl/strings/str_cat.h"
#include "common/status.h"

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

// Runs `sql` (no results wanted).
absl::Status Exec(sqlite3* db, const char* sql, absl::string_view what) {
  int rc = sqlite3_exec(db, sql, nullptr, nullptr, nullptr);
  return rc == SQLITE_OK ? absl::OkStatus() : SqliteError(db, rc, what);
}

// Rolls back the open transaction, if any. Some errors (SQLITE_FULL, SQLITE_IOERR, ...) make
// SQLite roll back by itself, and a second ROLLBACK would then fail and mask the first error.
void RollbackIfOpen(sqlite3* db) {
  if (!sqlite3_get_autocommit(db)) sqlite3_exec(db, "ROLLBACK", nullptr, nullptr, nullptr);
}

// Runs a query whose first row's first column is an integer; `*found` says if there was a row.
absl::StatusOr<int64_t> QueryInt(sqlite3* db, const char* sql, bool* found,
                                 absl::string_view what) {
  sqlite3_stmt* stmt = nullptr;
  int rc = sqlite3_prepare_v2(db, sql, -1, &stmt, nullptr);
  if (rc != SQLITE_OK) return SqliteError(db, rc, what);
  rc = sqlite3_step(stmt);
  int64_t value = rc == SQLITE_ROW ? sqlite3_column_int64(stmt, 0) : 0;
  *found = rc == SQLITE_ROW;
  if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
    absl::Status status = SqliteError(db, rc, what);
    sqlite3_finalize(stmt);
    return status;
  }
  sqlite3_finalize(stmt);
  return value;
}

absl::Status RecordMigration(sqlite3* db, const Migration& migration) {
  sqlite3_stmt* stmt = nullptr;
  int rc = sqlite3_prepare_v2(db, kInsertSchemaMigration, -1, &stmt, nullptr);
  if (rc != SQLITE_OK) return SqliteError(db, rc, "recording a migration");
  sqlite3_bind_int(stmt, 1, migration.number);
  sqlite3_bind_text(stmt, 2, migration.name, -1, SQLITE_STATIC);
  rc = sqlite3_step(stmt);
  absl::Status status =
      rc == SQLITE_DONE ? absl::OkStatus() : SqliteError(db, rc, "recording a migration");
  sqlite3_finalize(stmt);
  return status;
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
absl::StatusOr<int> ApplyOne(sqlite3* db, const Migration& migration, int latest) {
  // IMMEDIATE takes the write lock now, so the version read below cannot be overtaken by
  // another process migrating the same file.
  MD_RETURN_IF_ERROR(Exec(db, "BEGIN IMMEDIATE", "starting a migration"));
  absl::Status status = Exec(db, kCreateSchemaMigrations, "creating schema_migrations");
  bool found = false;
  absl::StatusOr<int64_t> version =
      status.ok() ? QueryInt(db, kSelectSchemaVersion, &found, "reading the schema version")
                  : absl::StatusOr<int64_t>(status);
  if (!version.ok()) {
    RollbackIfOpen(db);
    return version.status();
  }
  if (*version > latest) {
    RollbackIfOpen(db);
    return SchemaTooNew(static_cast<int>(*version), latest);
  }
  if (*version >= migration.number) {  // another process got here first
    RollbackIfOpen(db);
    return static_cast<int>(*version);
  }

  if (int rc = sqlite3_exec(db, migration.sql, nullptr, nullptr, nullptr); rc != SQLITE_OK) {
    // Read the message before ROLLBACK replaces it.
    std::string error = sqlite3_errmsg(db);
    RollbackIfOpen(db);
    return MakeError(
        absl::StatusCode::kInternal, "MIGRATION_FAILED",
        absl::StrCat("catalog migration ", migration.number, " (", migration.name,
                     ") failed: ", error, "; the database stays at schema version ", *version),
        {{"migration", absl::StrCat(migration.number)}});
  }
  status = RecordMigration(db, migration);
  if (status.ok()) status = Exec(db, "COMMIT", "committing a migration");
  if (!status.ok()) {
    RollbackIfOpen(db);
    return status;
  }
  return migration.number;
}

}  // namespace

absl::Status SqliteError(sqlite3* db, int rc, absl::string_view what) {
  std::string message = absl::StrCat("catalog: ", what, ": ",
                                     db != nullptr ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
  ErrorMetadata metadata = {{"sqlite_code", absl::StrCat(rc)}};
  switch (rc & 0xff) {
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
    case SQLITE_IOERR:
    case SQLITE_FULL:
    case SQLITE_CANTOPEN:
    case SQLITE_READONLY:
    case SQLITE_PROTOCOL:
    case SQLITE_NOLFS:
      return MakeError(absl::StatusCode::kUnavailable, "CATALOG_UNAVAILABLE", message, metadata);
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB:
      return MakeError(absl::StatusCode::kInternal, "CATALOG_CORRUPT", message, metadata);
    default:
      return MakeError(absl::StatusCode::kInternal, "CATALOG_ERROR", message, metadata);
  }
}

int LatestEmbeddedMigration() {
  const std::vector<Migration>& migrations = EmbeddedMigrations();
  return migrations.empty() ? 0 : migrations.back().number;
}

absl::StatusOr<int> ReadSchemaVersion(sqlite3* db) {
  bool found = false;
  MD_RETURN_IF_ERROR(
      QueryInt(db, kSchemaMigrationsExists, &found, "reading the schema version").status());
  if (!found) return 0;
  MD_ASSIGN_OR_RETURN(int64_t version,
                      QueryInt(db, kSelectSchemaVersion, &found, "reading the schema version"));
  return static_cast<int>(version);
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

  // Refuse a newer database before touching it, even before creating schema_migrations.
  MD_ASSIGN_OR_RETURN(int version, ReadSchemaVersion(db));
  if (version > latest) return SchemaTooNew(version, latest);
  for (const Migration& m : migrations) {
    if (m.number <= version) continue;
    MD_ASSIGN_OR_RETURN(version, ApplyOne(db, m, latest));
  }
  return absl::OkStatus();
}

}  // namespace modeldist::storage
