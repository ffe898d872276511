#include "storage/sqlite.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "common/status.h"

namespace modeldist::storage {
namespace {

constexpr char kBeginWrite[] = "BEGIN IMMEDIATE";
constexpr char kBeginRead[] = "BEGIN DEFERRED";
constexpr char kCommit[] = "COMMIT";

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

absl::StatusOr<SqliteHandle> OpenDatabase(const std::string& path, const std::string& vfs) {
  sqlite3* db = nullptr;
  int rc = sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE,
                           vfs.empty() ? nullptr : vfs.c_str());
  SqliteHandle handle(db);  // a handle is returned even on failure, and must be closed
  if (rc != SQLITE_OK) return SqliteError(db, rc, absl::StrCat("opening ", path));
  sqlite3_extended_result_codes(db, 1);
  return handle;
}

// ---------------------------------------------------------------------------------------------
// Statement.

Statement::Statement(sqlite3* db, sqlite3_stmt* stmt, bool* in_use)
    : db_(db), stmt_(stmt), in_use_(in_use) {
  *in_use_ = true;
}

Statement::Statement(Statement&& other) noexcept
    : db_(other.db_),
      stmt_(other.stmt_),
      in_use_(std::exchange(other.in_use_, nullptr)),
      bind_status_(std::move(other.bind_status_)) {}

Statement::~Statement() {
  if (in_use_ == nullptr) return;
  sqlite3_reset(stmt_);
  sqlite3_clear_bindings(stmt_);
  *in_use_ = false;
}

void Statement::BindInt64(int index, int64_t value) {
  int rc = sqlite3_bind_int64(stmt_, index + 1, value);
  if (rc != SQLITE_OK && bind_status_.ok()) bind_status_ = Error(rc);
}

void Statement::BindText(int index, absl::string_view value) {
  // A null data pointer would bind SQL NULL; an empty id or description is the empty string.
  int rc = sqlite3_bind_text64(stmt_, index + 1, value.data() != nullptr ? value.data() : "",
                               value.size(), SQLITE_TRANSIENT, SQLITE_UTF8);
  if (rc != SQLITE_OK && bind_status_.ok()) bind_status_ = Error(rc);
}

void Statement::BindBlob(int index, absl::string_view value) {
  // As for text: a null data pointer would bind SQL NULL instead of an empty blob.
  int rc = sqlite3_bind_blob64(stmt_, index + 1, value.data() != nullptr ? value.data() : "",
                               value.size(), SQLITE_TRANSIENT);
  if (rc != SQLITE_OK && bind_status_.ok()) bind_status_ = Error(rc);
}

void Statement::BindNull(int index) {
  int rc = sqlite3_bind_null(stmt_, index + 1);
  if (rc != SQLITE_OK && bind_status_.ok()) bind_status_ = Error(rc);
}

absl::StatusOr<bool> Statement::Step() {
  MD_RETURN_IF_ERROR(bind_status_);
  int rc = sqlite3_step(stmt_);
  if (rc == SQLITE_ROW) return true;
  if (rc == SQLITE_DONE) return false;
  return Error(rc);
}

absl::Status Statement::Run() {
  MD_ASSIGN_OR_RETURN(bool row, Step());
  if (row) {
    return MakeError(absl::StatusCode::kInternal, "CATALOG_ERROR",
                     absl::StrCat("catalog: unexpected row from \"", sqlite3_sql(stmt_), "\""));
  }
  return absl::OkStatus();
}

bool Statement::ColumnIsNull(int index) const {
  return sqlite3_column_type(stmt_, index) == SQLITE_NULL;
}

int64_t Statement::ColumnInt64(int index) const { return sqlite3_column_int64(stmt_, index); }

int Statement::ColumnInt(int index) const { return sqlite3_column_int(stmt_, index); }

std::string Statement::ColumnText(int index) const {
  const unsigned char* text = sqlite3_column_text(stmt_, index);
  if (text == nullptr) return "";
  return std::string(reinterpret_cast<const char*>(text), sqlite3_column_bytes(stmt_, index));
}

std::string Statement::ColumnBlob(int index) const {
  const void* data = sqlite3_column_blob(stmt_, index);
  if (data == nullptr) return "";
  return std::string(static_cast<const char*>(data), sqlite3_column_bytes(stmt_, index));
}

absl::Status Statement::Error(int rc) const {
  return SqliteError(db_, rc, absl::StrCat("running \"", sqlite3_sql(stmt_), "\""));
}

// ---------------------------------------------------------------------------------------------
// StatementCache.

StatementCache::~StatementCache() {
  for (auto& [sql, entry] : entries_) sqlite3_finalize(entry.stmt);
}

absl::StatusOr<Statement> StatementCache::Prepare(const char* sql) {
  Entry& entry = entries_[sql];  // elements keep their address when the map grows
  if (entry.in_use) {
    return MakeError(absl::StatusCode::kInternal, "CATALOG_ERROR",
                     absl::StrCat("catalog: statement used twice at once: ", sql));
  }
  if (entry.stmt == nullptr) {
    int rc = sqlite3_prepare_v3(db_, sql, -1, SQLITE_PREPARE_PERSISTENT, &entry.stmt, nullptr);
    if (rc != SQLITE_OK) {
      entries_.erase(sql);
      return SqliteError(db_, rc, absl::StrCat("preparing \"", sql, "\""));
    }
  }
  return Statement(db_, entry.stmt, &entry.in_use);
}

absl::Status StatementCache::Exec(const char* sql) {
  MD_ASSIGN_OR_RETURN(Statement s, Prepare(sql));
  while (true) {
    MD_ASSIGN_OR_RETURN(bool row, s.Step());
    if (!row) return absl::OkStatus();
  }
}

int64_t StatementCache::Changes() const { return sqlite3_changes64(db_); }

// ---------------------------------------------------------------------------------------------
// Transaction.

Transaction::~Transaction() {
  // Some errors (SQLITE_FULL, SQLITE_IOERR, ...) end the transaction by themselves, and a
  // second ROLLBACK would then fail.
  if (open_ && !sqlite3_get_autocommit(statements_->db())) {
    sqlite3_exec(statements_->db(), "ROLLBACK", nullptr, nullptr, nullptr);
  }
}

absl::Status Transaction::BeginWrite() { return Begin(kBeginWrite); }

absl::Status Transaction::BeginRead() { return Begin(kBeginRead); }

absl::Status Transaction::Begin(const char* sql) {
  MD_RETURN_IF_ERROR(statements_->Exec(sql));
  open_ = true;
  return absl::OkStatus();
}

absl::Status Transaction::Commit() {
  MD_RETURN_IF_ERROR(statements_->Exec(kCommit));
  open_ = false;
  return absl::OkStatus();
}

// ---------------------------------------------------------------------------------------------
// Scripts.

std::optional<std::string> ExecScript(sqlite3* db, const char* script) {
  if (sqlite3_exec(db, script, nullptr, nullptr, nullptr) == SQLITE_OK) return std::nullopt;
  return std::string(sqlite3_errmsg(db));
}

}  // namespace modeldist::storage
