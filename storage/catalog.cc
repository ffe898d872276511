// Opening the catalog: the connection, its settings and migrations, the clock, the sequence
// rule and the integrity check. The resources live in catalog_*.cc (see catalog_internal.h).
#include "storage/catalog.h"

#include <algorithm>
#include <cstdint>
#include <limits>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/synchronization/mutex.h"
#include "common/status.h"
#include "storage/catalog_internal.h"
#include "storage/migrations.h"
#include "storage/sqlite.h"

namespace modeldist::storage {
namespace {

// How long a statement waits for a lock held by another connection (a backup, the sqlite3
// shell, a second server process) before failing with UNAVAILABLE.
constexpr int kBusyTimeoutMs = 5000;

constexpr char kJournalModeWal[] = "PRAGMA journal_mode = WAL";
constexpr char kSynchronousFull[] = "PRAGMA synchronous = FULL";
constexpr char kForeignKeysOn[] = "PRAGMA foreign_keys = ON";
constexpr char kForeignKeysQuery[] = "PRAGMA foreign_keys";
constexpr char kIntegrityCheck[] = "PRAGMA integrity_check";

}  // namespace

google::protobuf::Timestamp ToTimestamp(int64_t micros) {
  int64_t seconds = micros / 1000000;
  int64_t rest = micros % 1000000;
  if (rest < 0) {  // floor, so nanos stays in [0, 1e9) before 1970
    rest += 1000000;
    --seconds;
  }
  google::protobuf::Timestamp timestamp;
  timestamp.set_seconds(seconds);
  timestamp.set_nanos(static_cast<int32_t>(rest * 1000));
  return timestamp;
}

// The one rule for a tier/channel's next sequence (catalog.h, "Sequences"): one more than
// `previous` (0 before the first bind), and never below the catalog clock in microseconds since
// the Unix epoch. The +1 keeps sequences strictly increasing whatever the clock does; the clock
// is what keeps a catalog restored from an older copy from issuing again, for other content, a
// sequence the lost catalog already issued: those were at most that catalog's clock when it
// issued them (plus one per extra change within one microsecond), and the restored catalog's
// clock is later.
absl::StatusOr<int64_t> NextSequence(int64_t previous, int64_t now_micros) {
  if (previous == std::numeric_limits<int64_t>::max()) {
    // Unreachable through the catalog (the clock reaches it in the year 294247), but a file
    // edited by hand could hold it, and previous + 1 would overflow.
    return MakeError(absl::StatusCode::kFailedPrecondition, "SEQUENCE_EXHAUSTED",
                     absl::StrCat("catalog: the sequence is already ", previous,
                                  ", the largest there is; it cannot grow"));
  }
  return std::max(previous + 1, now_micros);
}

std::string TierResource(absl::string_view tier, absl::string_view channel) {
  return absl::StrCat("tiers/", tier, "/channels/", channel);
}

// ---------------------------------------------------------------------------------------------
// Impl.

Catalog::Impl::Impl(SqliteHandle handle, Options opts)
    : connection(std::move(handle)), options(std::move(opts)), statements(connection.get()) {
  if (!options.now) options.now = [] { return absl::Now(); };
}

int64_t Catalog::Impl::NowMicros() { return absl::ToUnixMicros(options.now()); }

absl::StatusOr<Statement> Catalog::Impl::Prepare(const char* sql) {
  return statements.Prepare(sql);
}

int64_t Catalog::Impl::Changes() { return statements.Changes(); }

absl::Status Catalog::Impl::Configure() {
  // Wait for another connection's lock rather than failing at once.
  sqlite3_busy_timeout(connection.get(), kBusyTimeoutMs);
  {
    // WAL: readers never block the writer and a commit is one append to the log. SQLite
    // answers with the mode it ended up in, which is not WAL on some file systems.
    MD_ASSIGN_OR_RETURN(Statement s, Prepare(kJournalModeWal));
    MD_ASSIGN_OR_RETURN(bool row, s.Step());
    std::string mode = row ? s.ColumnText(0) : "";
    if (mode != "wal") {
      return MakeError(
          absl::StatusCode::kUnavailable, "CATALOG_UNAVAILABLE",
          absl::StrCat("catalog: cannot enable WAL journaling (journal_mode is \"", mode, "\")"));
    }
  }
  // FULL fsyncs the WAL at every commit: an acknowledged write survives power loss (NORMAL
  // in WAL mode keeps the file consistent but may lose the last commits).
  MD_RETURN_IF_ERROR(statements.Exec(kSynchronousFull));
  // SQLite leaves REFERENCES unenforced unless asked, per connection; verify it listened
  // (a build without foreign key support would ignore the pragma silently).
  MD_RETURN_IF_ERROR(statements.Exec(kForeignKeysOn));
  MD_ASSIGN_OR_RETURN(Statement s, Prepare(kForeignKeysQuery));
  MD_ASSIGN_OR_RETURN(bool row, s.Step());
  if (!row || s.ColumnInt(0) != 1) {
    return MakeError(absl::StatusCode::kInternal, "CATALOG_ERROR",
                     "catalog: SQLite did not enable foreign keys");
  }
  return absl::OkStatus();
}

// ---------------------------------------------------------------------------------------------
// Catalog.

Catalog::Catalog(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Catalog::~Catalog() = default;

absl::StatusOr<std::unique_ptr<Catalog>> Catalog::Open(const std::string& path, Options options) {
  MD_ASSIGN_OR_RETURN(SqliteHandle db, OpenDatabase(path, options.sqlite_vfs));
  auto impl = std::make_unique<Impl>(std::move(db), std::move(options));
  {
    absl::MutexLock lock(&impl->mu);
    MD_RETURN_IF_ERROR(impl->Configure());
  }
  MD_RETURN_IF_ERROR(ApplyMigrations(impl->connection.get()));
  MD_ASSIGN_OR_RETURN(impl->schema_version, ReadSchemaVersion(impl->connection.get()));
  return std::unique_ptr<Catalog>(new Catalog(std::move(impl)));
}

int Catalog::SchemaVersion() const { return impl_->schema_version; }

int Catalog::LatestSchemaVersion() { return LatestEmbeddedMigration(); }

absl::StatusOr<std::string> Catalog::IntegrityCheck() {
  absl::MutexLock lock(&impl_->mu);
  MD_ASSIGN_OR_RETURN(Statement s, impl_->Prepare(kIntegrityCheck));
  std::vector<std::string> lines;
  while (true) {
    MD_ASSIGN_OR_RETURN(bool row, s.Step());
    if (!row) break;
    lines.push_back(s.ColumnText(0));
  }
  return absl::StrJoin(lines, "\n");
}

}  // namespace modeldist::storage
