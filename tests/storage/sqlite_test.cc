// Tests of the SQLite wrapper (storage/sqlite.h) on real database files.
#include "storage/sqlite.h"

#include <cstdint>
#include <optional>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/status.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/test_util.h"

namespace modeldist::storage {
namespace {

using ::modeldist::testing::IsOk;
using ::modeldist::testing::IsOkAndHolds;
using ::modeldist::testing::ScratchDir;
using ::modeldist::testing::StatusIs;
using ::testing::AllOf;
using ::testing::HasSubstr;

constexpr char kCreateTable[] = "CREATE TABLE t (x INTEGER NOT NULL UNIQUE, s TEXT, b BLOB)";
constexpr char kInsert[] = "INSERT INTO t (x, s, b) VALUES (?, ?, ?)";
constexpr char kCount[] = "SELECT COUNT(*) FROM t";
constexpr char kSelectRow[] = "SELECT s, b, s IS NULL, b IS NULL FROM t WHERE x = ?";
constexpr char kSelectAll[] = "SELECT x FROM t ORDER BY x";
constexpr char kMisspelt[] = "SELEC x FROM t";

class SqliteTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::StatusOr<SqliteHandle> db = OpenDatabase(path());
    ASSERT_THAT(db, IsOk());
    db_ = *std::move(db);
    statements_.emplace(db_.get());
    ASSERT_THAT(statements_->Exec(kCreateTable), IsOk());
  }

  std::string path() const { return dir_.Join("test.db"); }

  // Inserts (x, s, b) and returns Run()'s status.
  absl::Status Insert(int64_t x, const std::string& s = "", const std::string& b = "") {
    absl::StatusOr<Statement> insert = statements_->Prepare(kInsert);
    if (!insert.ok()) return insert.status();
    insert->BindInt64(0, x);
    insert->BindText(1, s);
    insert->BindBlob(2, b);
    return insert->Run();
  }

  int64_t Count() {
    absl::StatusOr<Statement> count = statements_->Prepare(kCount);
    EXPECT_THAT(count, IsOk());
    if (!count.ok()) return -1;
    absl::StatusOr<bool> row = count->Step();
    EXPECT_THAT(row, IsOk());
    return row.ok() && *row ? count->ColumnInt64(0) : -1;
  }

  ScratchDir dir_;
  SqliteHandle db_;
  // Declared after the connection, so its statements are finalized before the connection
  // closes.
  std::optional<StatementCache> statements_;
};

TEST_F(SqliteTest, ABadStatementIsAnErrorNamingTheSqlAndTheProblem) {
  absl::StatusOr<Statement> bad = statements_->Prepare(kMisspelt);
  EXPECT_THAT(
      bad, StatusIs(absl::StatusCode::kInternal,
                    AllOf(HasSubstr("preparing \"SELEC x FROM t\""), HasSubstr("syntax error"))));
  EXPECT_EQ(ErrorReason(bad.status()), "CATALOG_ERROR");
  EXPECT_EQ(ErrorMetadataValue(bad.status(), "sqlite_code"), std::to_string(SQLITE_ERROR));
  // Not cached: the next attempt prepares again and fails alike.
  EXPECT_THAT(statements_->Prepare(kMisspelt),
              StatusIs(absl::StatusCode::kInternal, HasSubstr("syntax error")));
}

TEST_F(SqliteTest, AFailingStepNamesTheStatementAndKeepsTheCode) {
  ASSERT_THAT(Insert(1), IsOk());
  absl::Status duplicate = Insert(1);
  EXPECT_THAT(duplicate, StatusIs(absl::StatusCode::kInternal,
                                  AllOf(HasSubstr(absl::StrCat("running \"", kInsert, "\"")),
                                        HasSubstr("UNIQUE constraint failed: t.x"))));
  EXPECT_EQ(ErrorReason(duplicate), "CATALOG_ERROR");
  EXPECT_EQ(ErrorMetadataValue(duplicate, "sqlite_code"), std::to_string(SQLITE_CONSTRAINT_UNIQUE));
}

TEST_F(SqliteTest, EmptyTextAndBlobAreNotNull) {
  ASSERT_THAT(Insert(1, "", ""), IsOk());
  ASSERT_THAT(Insert(2, "text", std::string("\0\1", 2)), IsOk());
  absl::StatusOr<Statement> s = statements_->Prepare(kSelectRow);
  ASSERT_THAT(s, IsOk());
  s->BindInt64(0, 1);
  ASSERT_THAT(s->Step(), IsOkAndHolds(true));
  EXPECT_EQ(s->ColumnText(0), "");
  EXPECT_EQ(s->ColumnBlob(1), "");
  EXPECT_EQ(s->ColumnInt(2), 0);  // s IS NULL
  EXPECT_EQ(s->ColumnInt(3), 0);  // b IS NULL
  EXPECT_FALSE(s->ColumnIsNull(0));
}

TEST_F(SqliteTest, AStatementIsLentOnceAtATimeAndResetWhenReturned) {
  ASSERT_THAT(Insert(1), IsOk());
  ASSERT_THAT(Insert(2), IsOk());
  {
    absl::StatusOr<Statement> first = statements_->Prepare(kSelectAll);
    ASSERT_THAT(first, IsOk());
    ASSERT_THAT(first->Step(), IsOkAndHolds(true));
    EXPECT_EQ(first->ColumnInt64(0), 1);
    // A second borrower would reset the first one's iteration.
    EXPECT_THAT(statements_->Prepare(kSelectAll),
                StatusIs(absl::StatusCode::kInternal, HasSubstr("used twice at once")));
  }
  // Returned mid-iteration: the next borrower starts from the first row.
  absl::StatusOr<Statement> again = statements_->Prepare(kSelectAll);
  ASSERT_THAT(again, IsOk());
  ASSERT_THAT(again->Step(), IsOkAndHolds(true));
  EXPECT_EQ(again->ColumnInt64(0), 1);
}

TEST_F(SqliteTest, ATransactionRollsBackUnlessCommitted) {
  {
    Transaction txn(&*statements_);
    ASSERT_THAT(txn.BeginWrite(), IsOk());
    ASSERT_THAT(Insert(1), IsOk());
    ASSERT_THAT(txn.Commit(), IsOk());
  }
  EXPECT_EQ(Count(), 1);
  {
    // A write that fails half way: the first insert must not survive the second's failure.
    Transaction txn(&*statements_);
    ASSERT_THAT(txn.BeginWrite(), IsOk());
    ASSERT_THAT(Insert(2), IsOk());
    EXPECT_THAT(Insert(1), StatusIs(absl::StatusCode::kInternal, HasSubstr("UNIQUE")));
    EXPECT_EQ(Count(), 2);  // inside the transaction, the first insert is there
  }
  EXPECT_EQ(Count(), 1);
  EXPECT_TRUE(sqlite3_get_autocommit(db_.get())) << "transaction left open";
}

TEST_F(SqliteTest, ALockHeldElsewhereIsUnavailable) {
  absl::StatusOr<SqliteHandle> other = OpenDatabase(path());
  ASSERT_THAT(other, IsOk());
  StatementCache other_statements(other->get());
  Transaction holder(&other_statements);
  ASSERT_THAT(holder.BeginWrite(), IsOk());

  // No busy timeout on this connection: the lock is refused at once.
  Transaction txn(&*statements_);
  absl::Status status = txn.BeginWrite();
  EXPECT_THAT(status, StatusIs(absl::StatusCode::kUnavailable,
                               AllOf(HasSubstr("BEGIN IMMEDIATE"), HasSubstr("locked"))));
  EXPECT_EQ(ErrorReason(status), "CATALOG_UNAVAILABLE");
}

TEST_F(SqliteTest, AScriptRunsEveryStatementOrSaysWhichFailed) {
  EXPECT_EQ(ExecScript(db_.get(), "INSERT INTO t (x) VALUES (1); INSERT INTO t (x) VALUES (2);"),
            std::nullopt);
  EXPECT_EQ(Count(), 2);
  std::optional<std::string> error =
      ExecScript(db_.get(), "INSERT INTO t (x) VALUES (3); INSERT INTO no_such_table VALUES (1);");
  ASSERT_TRUE(error.has_value());
  EXPECT_THAT(*error, HasSubstr("no such table: no_such_table"));
}

TEST(SqliteOpenTest, AMissingFolderIsUnavailable) {
  ScratchDir dir;
  absl::StatusOr<SqliteHandle> db = OpenDatabase(dir.Join("no/such/dir/test.db"));
  EXPECT_THAT(db, StatusIs(absl::StatusCode::kUnavailable, HasSubstr("unable to open")));
  EXPECT_EQ(ErrorReason(db.status()), "CATALOG_UNAVAILABLE");
}

}  // namespace
}  // namespace modeldist::storage
