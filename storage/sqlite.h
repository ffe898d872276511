// File: sqlite.h
//
// The storage layer's one door to SQLite's statement API: opening a connection, prepared
// statements with bind/step/column helpers, a connection's statement cache, transactions, and
// the mapping of SQLite result codes to absl::Status. The catalog and the migration runner both
// go through here, so they report SQLite failures alike and nothing else prepares statements by
// hand.
//
// Not thread-safe: a connection and its cache are used by one thread at a time (the catalog
// holds its mutex around every use).
#ifndef MODELDIST_STORAGE_SQLITE_H_
#define MODELDIST_STORAGE_SQLITE_H_

#include <sqlite3.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace modeldist::storage {

// The status for SQLite result `rc` (not OK/ROW/DONE) while doing `what`, with
// sqlite3_errmsg(db) in the message. Busy/locked/I-O/full/can't-open errors are UNAVAILABLE
// (reason CATALOG_UNAVAILABLE: retrying or fixing the disk may help); the rest are INTERNAL
// (reason CATALOG_CORRUPT for a damaged or foreign file, CATALOG_ERROR otherwise). Metadata
// `sqlite_code` holds the (extended) result code.
absl::Status SqliteError(sqlite3* db, int rc, absl::string_view what);

// An open connection, closed when the handle goes.
struct SqliteCloser {
  void operator()(sqlite3* db) const { sqlite3_close(db); }
};
using SqliteHandle = std::unique_ptr<sqlite3, SqliteCloser>;

// Opens (creating if absent) the database file at `path` for reading and writing, with
// extended result codes on, so errors tell which constraint or I/O step failed. Its folder
// must exist. Errors as SqliteError gives them (a missing folder is UNAVAILABLE). `vfs` names
// a registered SQLite VFS (tests); empty: the default.
absl::StatusOr<SqliteHandle> OpenDatabase(const std::string& path, const std::string& vfs = "");

class StatementCache;

// A prepared statement borrowed from a StatementCache for one use. Bind and column indexes are
// 0-based: bind index i is the (i+1)-th `?`, column i the (i+1)-th result column. A bind
// failure is remembered and reported by the next Step/Run, so call sites stay flat.
// Destruction resets the statement and clears its bindings, so an abandoned loop never keeps a
// read snapshot open and the next borrower starts clean.
class Statement {
 public:
  Statement(Statement&& other) noexcept;
  Statement(const Statement&) = delete;
  Statement& operator=(const Statement&) = delete;
  Statement& operator=(Statement&&) = delete;
  ~Statement();

  void BindInt64(int index, int64_t value);
  // An empty value binds the empty string, never SQL NULL.
  void BindText(int index, absl::string_view value);
  // STRICT BLOB columns refuse TEXT, so binary values need their own bind. An empty value
  // binds an empty blob, never SQL NULL.
  void BindBlob(int index, absl::string_view value);
  void BindNull(int index);

  // Advances to the next row: true when a row is available, false when done.
  absl::StatusOr<bool> Step();
  // Runs a statement that returns no rows; a row is INTERNAL (CATALOG_ERROR).
  absl::Status Run();

  bool ColumnIsNull(int index) const;
  int64_t ColumnInt64(int index) const;
  int ColumnInt(int index) const;
  // NULL reads as "".
  std::string ColumnText(int index) const;
  // An empty blob and NULL both read as ""; ask ColumnIsNull to tell them apart.
  std::string ColumnBlob(int index) const;

 private:
  friend class StatementCache;
  Statement(sqlite3* db, sqlite3_stmt* stmt, bool* in_use);

  absl::Status Error(int rc) const;

  sqlite3* db_;
  sqlite3_stmt* stmt_;
  bool* in_use_;  // the cache's flag for `stmt_`; null once moved from
  absl::Status bind_status_;
};

// The prepared statements of one connection, each prepared on first use and kept until the
// cache goes (SQLITE_PREPARE_PERSISTENT), keyed by the address of its SQL text: pass string
// constants (`constexpr char kSelectX[] = ...`), never a temporary. Does not own the
// connection; destroy it before closing the connection.
class StatementCache {
 public:
  explicit StatementCache(sqlite3* db) : db_(db) {}
  StatementCache(const StatementCache&) = delete;
  StatementCache& operator=(const StatementCache&) = delete;
  ~StatementCache();

  sqlite3* db() const { return db_; }

  // The statement for `sql`, which must be one statement. The errors of preparing it as
  // SqliteError gives them; INTERNAL (CATALOG_ERROR) while another Statement borrows it, since
  // two live uses of one sqlite3_stmt would silently reset each other's iteration.
  absl::StatusOr<Statement> Prepare(const char* sql);
  // Runs `sql` (one statement), discarding any rows it returns (a PRAGMA answers with its new
  // value).
  absl::Status Exec(const char* sql);
  // The rows changed by the last INSERT, UPDATE or DELETE that completed on the connection.
  int64_t Changes() const;

 private:
  struct Entry {
    sqlite3_stmt* stmt = nullptr;
    bool in_use = false;
  };
  sqlite3* const db_;
  std::unordered_map<const char*, Entry> entries_;
};

// One transaction on a connection. Writes use BEGIN IMMEDIATE, which takes the write lock up
// front, so the reads that decide a write cannot be invalidated by another process before it
// commits. Reads spanning several statements use a deferred transaction for one consistent
// snapshot. Destruction without Commit rolls back: a failed write leaves nothing. Declare it
// before the Statements used inside it, so they are reset before the rollback.
class Transaction {
 public:
  explicit Transaction(StatementCache* statements) : statements_(statements) {}
  Transaction(const Transaction&) = delete;
  Transaction& operator=(const Transaction&) = delete;
  ~Transaction();

  absl::Status BeginWrite();
  absl::Status BeginRead();
  absl::Status Commit();

 private:
  absl::Status Begin(const char* sql);

  StatementCache* statements_;
  bool open_ = false;
};

// Runs `script`, one or more statements (a migration file), discarding any rows. Returns
// nullopt on success, else SQLite's message for the statement that failed, read before
// anything else on the connection can replace it, for callers that word the failure
// themselves. The statements before the failing one stay applied: run it in a Transaction.
std::optional<std::string> ExecScript(sqlite3* db, const char* script);

}  // namespace modeldist::storage

#endif  // MODELDIST_STORAGE_SQLITE_H_
