#include "storage/migrations.h"

#include <sqlite3.h>

#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "common/status.h"
#include "gtest/gtest.h"
#include "storage/catalog.h"
#include "tests/storage/catalog_fixture.h"

namespace modeldist::storage {
namespace {

// A raw connection, so tests see the file exactly as the runner left it.
class Db {
 public:
  explicit Db(const std::string& path) { EXPECT_EQ(sqlite3_open(path.c_str(), &db_), SQLITE_OK); }
  ~Db() { sqlite3_close(db_); }
  Db(const Db&) = delete;
  Db& operator=(const Db&) = delete;

  sqlite3* get() { return db_; }
  void Exec(const std::string& sql) {
    char* error = nullptr;
    ASSERT_EQ(sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, &error), SQLITE_OK)
        << sql << ": " << (error ? error : "");
  }
  std::string QueryText(const std::string& sql) { return storage::QueryText(db_, sql); }
  bool HasTable(const std::string& name) {
    return QueryText(absl::StrCat(
               "SELECT name FROM sqlite_master WHERE type = 'table' AND name = '", name, "'")) ==
           name;
  }

 private:
  sqlite3* db_ = nullptr;
};

// The recorded schema version, or -1 (with a test failure) when it cannot be read.
int VersionOf(sqlite3* db) {
  absl::StatusOr<int> version = ReadSchemaVersion(db);
  EXPECT_THAT(version, IsOk());
  return version.ok() ? *version : -1;
}

class MigrationsTest : public ::testing::Test {
 protected:
  std::string path() const { return dir_.Join("catalog.db"); }
  ScratchDir dir_;
};

TEST(EmbeddedMigrationsTest, AreNumberedFromOneWithoutGaps) {
  const std::vector<Migration>& migrations = EmbeddedMigrations();
  ASSERT_FALSE(migrations.empty());
  for (size_t i = 0; i < migrations.size(); ++i) {
    EXPECT_EQ(migrations[i].number, static_cast<int>(i) + 1);
    EXPECT_NE(std::string(migrations[i].sql), "");
  }
  EXPECT_STREQ(migrations[0].name, "init");
  EXPECT_THAT(migrations[0].sql, HasSubstr("CREATE TABLE models"));
  EXPECT_EQ(LatestEmbeddedMigration(), migrations.back().number);
  EXPECT_EQ(Catalog::LatestSchemaVersion(), migrations.back().number);
}

TEST_F(MigrationsTest, FreshDatabaseGetsTheLatestVersion) {
  Db db(path());
  EXPECT_EQ(VersionOf(db.get()), 0);
  ASSERT_THAT(ApplyMigrations(db.get()), IsOk());

  EXPECT_EQ(VersionOf(db.get()), LatestEmbeddedMigration());
  EXPECT_EQ(db.QueryText("SELECT COUNT(*) FROM schema_migrations"),
            absl::StrCat(EmbeddedMigrations().size()));
  EXPECT_EQ(db.QueryText("SELECT name FROM schema_migrations WHERE version = 1"), "init");
  // ISO 8601 UTC, e.g. 2024-05-01T12:00:00.000Z.
  EXPECT_THAT(db.QueryText("SELECT applied_at FROM schema_migrations WHERE version = 1"),
              ::testing::MatchesRegex("[0-9]{4}-[0-9]{2}-[0-9]{2}T.*Z"));
  for (const char* table : {"models", "versions", "artifacts", "tiers", "tier_history", "rollouts",
                            "device_pins", "audit_log", "trust_roots"}) {
    EXPECT_TRUE(db.HasTable(table)) << table;
  }
}

TEST_F(MigrationsTest, ReapplyingChangesNothing) {
  Db db(path());
  ASSERT_THAT(ApplyMigrations(db.get()), IsOk());
  std::string applied_at =
      db.QueryText("SELECT applied_at FROM schema_migrations WHERE version = 1");

  // Would fail with "table models already exists" if migration 1 ran again.
  ASSERT_THAT(ApplyMigrations(db.get()), IsOk());
  EXPECT_EQ(db.QueryText("SELECT COUNT(*) FROM schema_migrations"),
            absl::StrCat(EmbeddedMigrations().size()));
  EXPECT_EQ(db.QueryText("SELECT applied_at FROM schema_migrations WHERE version = 1"), applied_at);
}

TEST_F(MigrationsTest, AppliesOnlyTheNewMigrations) {
  Db db(path());
  std::vector<Migration> v1 = {{1, "create", "CREATE TABLE t (x INTEGER)"}};
  ASSERT_THAT(ApplyMigrations(db.get(), v1), IsOk());
  db.Exec("INSERT INTO t VALUES (7)");

  std::vector<Migration> v2 = {v1[0], {2, "add_y", "ALTER TABLE t ADD COLUMN y TEXT DEFAULT 'z'"}};
  ASSERT_THAT(ApplyMigrations(db.get(), v2), IsOk());
  EXPECT_EQ(VersionOf(db.get()), 2);
  EXPECT_EQ(db.QueryText("SELECT x || y FROM t"), "7z");  // data kept, table not recreated
}

TEST_F(MigrationsTest, NewerDatabaseIsRefusedAndLeftAlone) {
  Db db(path());
  ASSERT_THAT(ApplyMigrations(db.get()), IsOk());
  const int newer = LatestEmbeddedMigration() + 1;
  db.Exec(absl::StrCat("INSERT INTO schema_migrations VALUES (", newer,
                       ", 'from_the_future', '2030-01-01T00:00:00Z')"));

  absl::Status status = ApplyMigrations(db.get());
  EXPECT_THAT(status, StatusIs(absl::StatusCode::kFailedPrecondition,
                               AllOf(HasSubstr(absl::StrCat("schema version ", newer)),
                                     HasSubstr(absl::StrCat("up to ", LatestEmbeddedMigration())),
                                     HasSubstr("Upgrade this binary"))));
  EXPECT_EQ(ErrorReason(status), "SCHEMA_TOO_NEW");
  EXPECT_EQ(ErrorMetadataValue(status, "database_version"), absl::StrCat(newer));
  EXPECT_EQ(VersionOf(db.get()), newer);

  // The catalog refuses it the same way.
  EXPECT_THAT(Catalog::Open(path()), StatusIs(absl::StatusCode::kFailedPrecondition,
                                              HasSubstr(absl::StrCat("schema version ", newer))));
}

TEST_F(MigrationsTest, FailingMigrationLeavesThePreviousVersion) {
  Db db(path());
  std::vector<Migration> migrations = {
      {1, "create_a", "CREATE TABLE a (x INTEGER)"},
      // The first statement succeeds and must be rolled back with the failing second one.
      {2, "broken", "CREATE TABLE b (x INTEGER); INSERT INTO no_such_table VALUES (1);"},
      {3, "create_c", "CREATE TABLE c (x INTEGER)"},
  };
  absl::Status status = ApplyMigrations(db.get(), migrations);
  EXPECT_THAT(status,
              StatusIs(absl::StatusCode::kInternal, AllOf(HasSubstr("migration 2 (broken)"),
                                                          HasSubstr("no such table: no_such_table"),
                                                          HasSubstr("stays at schema version 1"))));
  EXPECT_EQ(ErrorReason(status), "MIGRATION_FAILED");
  EXPECT_EQ(VersionOf(db.get()), 1);
  EXPECT_TRUE(db.HasTable("a"));
  EXPECT_FALSE(db.HasTable("b"));
  EXPECT_FALSE(db.HasTable("c"));
  EXPECT_TRUE(sqlite3_get_autocommit(db.get())) << "transaction left open";

  // A fixed binary picks up where the broken one stopped.
  migrations[1].sql = "CREATE TABLE b (x INTEGER)";
  ASSERT_THAT(ApplyMigrations(db.get(), migrations), IsOk());
  EXPECT_EQ(VersionOf(db.get()), 3);
  EXPECT_TRUE(db.HasTable("b"));
  EXPECT_TRUE(db.HasTable("c"));
}

TEST_F(MigrationsTest, MigrationMayNotManageItsOwnTransaction) {
  Db db(path());
  std::vector<Migration> migrations = {
      {1, "own_txn", "BEGIN; CREATE TABLE a (x INTEGER); COMMIT;"}};
  EXPECT_THAT(ApplyMigrations(db.get(), migrations),
              StatusIs(absl::StatusCode::kInternal, HasSubstr("within a transaction")));
  EXPECT_EQ(VersionOf(db.get()), 0);
  EXPECT_FALSE(db.HasTable("a"));
}

TEST_F(MigrationsTest, OutOfOrderListIsRejected) {
  Db db(path());
  std::vector<Migration> migrations = {{2, "b", "SELECT 1"}, {1, "a", "SELECT 1"}};
  EXPECT_THAT(ApplyMigrations(db.get(), migrations),
              StatusIs(absl::StatusCode::kInternal, HasSubstr("strictly increasing")));
  EXPECT_FALSE(db.HasTable("schema_migrations"));
}

TEST_F(MigrationsTest, NotADatabaseIsAnError) {
  {
    Db db(path());  // creates the file empty; then overwrite it with garbage
  }
  FILE* f = fopen(path().c_str(), "wb");
  ASSERT_NE(f, nullptr);
  std::string garbage(4096, 'x');
  fwrite(garbage.data(), 1, garbage.size(), f);
  fclose(f);

  absl::StatusOr<std::unique_ptr<Catalog>> catalog = Catalog::Open(path());
  EXPECT_THAT(catalog, StatusIs(absl::StatusCode::kInternal, HasSubstr("not a database")));
  EXPECT_EQ(ErrorReason(catalog.status()), "CATALOG_CORRUPT");
}

TEST_F(MigrationsTest, MissingFolderIsUnavailable) {
  EXPECT_THAT(Catalog::Open(dir_.Join("no/such/dir/catalog.db")),
              StatusIs(absl::StatusCode::kUnavailable, HasSubstr("unable to open")));
}

// --- Migration 0001 -> 0002 -----------------------------------------------------------------

TEST(Migration0002Test, UpgradesAVersionOneDatabaseKeepingItsData) {
  ScratchDir dir;
  const std::string path = dir.Join("catalog.db");
  {
    sqlite3* db = nullptr;
    ASSERT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
    ASSERT_GE(EmbeddedMigrations().size(), 2u);
    ASSERT_THAT(ApplyMigrations(db, {EmbeddedMigrations()[0]}), IsOk());
    ASSERT_THAT(ReadSchemaVersion(db), IsOk());
    EXPECT_EQ(*ReadSchemaVersion(db), 1);
    const std::string digest = Digest('a');
    const std::string rows = absl::StrCat(
        "INSERT INTO models VALUES ('llama', 'old', 1000000);"
        "INSERT INTO versions VALUES ('llama', 'v1', 2, 2000000, 3000000, NULL, '');"
        "INSERT INTO artifacts VALUES ('llama', 'v1', 1, 1, 1, '",
        digest,
        "', 42);"
        "INSERT INTO tiers VALUES ('llama8b', 'stable', 7, 4000000);"
        "INSERT INTO tier_history VALUES ('llama8b', 'stable', 7, 'llama', 'v1', 4000000);");
    ASSERT_EQ(sqlite3_exec(db, rows.c_str(), nullptr, nullptr, nullptr), SQLITE_OK)
        << sqlite3_errmsg(db);
    sqlite3_close(db);
  }

  Catalog::Options options;
  options.now = [] { return absl::FromUnixMicros(kT0); };
  absl::StatusOr<std::unique_ptr<Catalog>> opened = Catalog::Open(path, options);
  ASSERT_THAT(opened, IsOk());
  Catalog& catalog = **opened;
  // Upgraded to the newest schema (later migrations, e.g. 0003, run after 0002 too).
  EXPECT_EQ(catalog.SchemaVersion(), Catalog::LatestSchemaVersion());
  EXPECT_EQ(QueryRaw(path, "SELECT name FROM schema_migrations WHERE version = 2"),
            "rollouts_pins_audit");

  // Old rows survived; the new columns read as "nothing declared".
  EXPECT_EQ(catalog.GetModel("llama")->description(), "old");
  absl::StatusOr<v1::Version> version = catalog.GetVersion({"llama", "v1"});
  ASSERT_THAT(version, IsOk());
  EXPECT_EQ(version->state(), v1::Version::PUBLISHED);
  ASSERT_EQ(version->artifacts_size(), 1);
  EXPECT_EQ(version->artifacts(0).size_bytes(), 42);
  EXPECT_FALSE(version->artifacts(0).has_constraints());
  EXPECT_EQ(version->artifacts(0).unpacked_size_bytes(), 0);
  EXPECT_EQ(QueryRaw(path, "SELECT constraints IS NULL FROM artifacts"), "1");
  EXPECT_EQ(QueryRaw(path, "SELECT unpacked_size_bytes FROM artifacts"), "0");

  absl::StatusOr<std::vector<ResolvedTier>> resolved = catalog.ResolveAllTiers();
  ASSERT_THAT(resolved, IsOk());
  ASSERT_EQ(resolved->size(), 1u);
  EXPECT_EQ((*resolved)[0].binding.sequence(), 7);
  EXPECT_EQ((*resolved)[0].binding.version(), "models/llama/versions/v1");
  EXPECT_FALSE((*resolved)[0].rollout.has_value());
  EXPECT_THAT((*resolved)[0].pins, IsEmpty());
  EXPECT_THAT(catalog.ListAuditLog(0, "")->items, IsEmpty());
  EXPECT_THAT(catalog.GetTrustRoot(0), StatusIs(absl::StatusCode::kNotFound, HasSubstr("no")));

  // The new tables work on the upgraded file; the old sequence, far below the clock, jumps to
  // it on the next change (higher, so devices accept it).
  ASSERT_THAT(catalog.CreateVersion({"llama", "v2"}, {MacArtifact(Digest('b'), 5)}), IsOk());
  ASSERT_THAT(catalog.PublishVersion({"llama", "v2"}, Uploaded), IsOk());
  absl::StatusOr<v1::Rollout> rollout =
      catalog.StartRollout("llama8b", "stable", {"llama", "v2"}, 100);
  ASSERT_THAT(rollout, IsOk());
  EXPECT_EQ(rollout->id(), "r-1");
  EXPECT_EQ(rollout->from_version(), "models/llama/versions/v1");
  EXPECT_EQ(catalog.GetTier("llama8b", "stable")->sequence(), kT0);
  EXPECT_EQ(catalog.ListAuditLog(0, "")->items.size(), 3u);
  EXPECT_EQ(*catalog.IntegrityCheck(), "ok");
}

}  // namespace
}  // namespace modeldist::storage
