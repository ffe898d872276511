// File: migrations.h
//
// The schema migrations of the catalog database and the runner that applies them.
//
// Migrations are the files migrations/NNNN_name.sql, embedded into the binary at build time by
// cmake/EmbedMigrations.cmake (which refuses gaps and duplicate numbers). A migration is never
// edited once released: a schema change is a new file with the next number.
//
// The applied migrations are recorded in
//   schema_migrations(version INTEGER PRIMARY KEY, name TEXT, applied_at TEXT)
// and the schema version of a database is its highest recorded `version` (0 when none).
#ifndef MODELDIST_STORAGE_MIGRATIONS_H_
#define MODELDIST_STORAGE_MIGRATIONS_H_

#include <sqlite3.h>

#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace modeldist::storage {

struct Migration {
  int number;        // from the NNNN_ prefix; strictly increasing in a list
  const char* name;  // the rest of the file name, without ".sql"
  const char* sql;   // one or more statements; no BEGIN/COMMIT (the runner owns the transaction)
};

// The migrations embedded from migrations/*.sql, ordered by number (defined in generated code).
const std::vector<Migration>& EmbeddedMigrations();

// The highest number in EmbeddedMigrations(), or 0 when there are none.
int LatestEmbeddedMigration();

// The schema version recorded in `db`: its highest schema_migrations.version, or 0 when the
// table does not exist. UNAVAILABLE/INTERNAL on SQLite errors.
absl::StatusOr<int> ReadSchemaVersion(sqlite3* db);

// Brings `db` up to the latest embedded migration. Same as the overload below with
// EmbeddedMigrations().
absl::Status ApplyMigrations(sqlite3* db);

// Applies, in order, every migration of `migrations` whose number is above the recorded schema
// version. Each runs in its own BEGIN IMMEDIATE transaction together with its
// schema_migrations row, so a crash or a failing statement leaves the database at the previous
// version, never in between. The version is re-read inside each transaction, so two processes
// opening one database at once apply each migration only once.
//
// Errors:
//   FAILED_PRECONDITION (reason SCHEMA_TOO_NEW): the database records a version above the
//     highest in `migrations`: it was written by a newer binary; nothing is changed.
//   INTERNAL (reason MIGRATION_FAILED): a migration's SQL failed; the database stays at the
//     version before it. INTERNAL (reason INVALID_MIGRATIONS): `migrations` is not ordered.
//   UNAVAILABLE: the database is busy or unreadable; other SQLite failures as SqliteError
//     (storage/sqlite.h) maps them.
absl::Status ApplyMigrations(sqlite3* db, const std::vector<Migration>& migrations);

}  // namespace modeldist::storage

#endif  // MODELDIST_STORAGE_MIGRATIONS_H_
