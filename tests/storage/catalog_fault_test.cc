// The catalog on a failing disk: its writes and syncs fail through the SQLite VFS shim
// (tests/testing/fault_vfs.h) with ENOSPC, EIO, a torn (short) write or a failed fsync. Each
// gives a clear error (UNAVAILABLE, CATALOG_UNAVAILABLE, with SQLite's words for it), leaves
// no trace of the failed change, lets the next change succeed once the disk is healthy, and
// the file reopens (with the default VFS, as a restarted server would) with all its earlier
// data and passes SQLite's integrity check.
#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "common/status.h"
#include "storage/catalog.h"
#include "tests/storage/catalog_fixture.h"
#include "tests/testing/fault_fs.h"
#include "tests/testing/fault_vfs.h"

namespace modeldist::storage {
namespace {

using ::modeldist::testing::Fault;
using ::modeldist::testing::FaultInjectingFs;
using ::modeldist::testing::FaultRule;
using ::modeldist::testing::FsOp;
using ::modeldist::testing::UseFaultVfs;

struct CatalogFault {
  const char* label;
  FsOp op;
  Fault fault;
  // What SQLite's message says.
  const char* words;
};

const CatalogFault kFaults[] = {
    {"WriteNoSpace", FsOp::kWrite, Fault::kNoSpace, "full"},
    {"WriteIoError", FsOp::kWrite, Fault::kIoError, "I/O error"},
    {"ShortWrite", FsOp::kWrite, Fault::kShortWrite, "full"},
    {"FsyncFails", FsOp::kFsync, Fault::kIoError, "I/O error"},
};

class CatalogFaultTest : public ::testing::TestWithParam<CatalogFault> {
 protected:
  void TearDown() override { UseFaultVfs(nullptr); }

  std::unique_ptr<Catalog> Open(bool with_faults) {
    CatalogOptions options;
    if (with_faults) options.sqlite_vfs = UseFaultVfs(&fs_);
    absl::StatusOr<std::unique_ptr<Catalog>> catalog = Catalog::Open(file_, options);
    EXPECT_THAT(catalog, IsOk());
    return catalog.ok() ? *std::move(catalog) : nullptr;
  }

  ScratchDir dir_;
  const std::string file_ = dir_.Join("catalog.db");
  FaultInjectingFs fs_;
};

TEST_P(CatalogFaultTest, AFailedWriteIsClearLeavesNothingAndTheCatalogReopensWhole) {
  std::unique_ptr<Catalog> catalog = Open(/*with_faults=*/true);
  ASSERT_NE(catalog, nullptr);
  MD_ASSERT_OK(catalog->CreateModel("before", "written before the fault"));

  // Every write (or sync) of the database, its WAL and journal fails from here on.
  fs_.Inject(FaultRule{.op = GetParam().op, .fault = GetParam().fault, .path_prefix = file_});
  absl::StatusOr<v1::Model> failed = catalog->CreateModel("during", "never stored");
  EXPECT_GT(fs_.injected(), 0) << "the fault was never reached";
  EXPECT_EQ(failed.status().code(), absl::StatusCode::kUnavailable) << failed.status();
  EXPECT_EQ(ErrorReason(failed.status()), "CATALOG_UNAVAILABLE") << failed.status();
  EXPECT_THAT(std::string(failed.status().message()),
              AllOf(HasSubstr("catalog:"), HasSubstr(GetParam().words)));

  // No half state: the failed model is not there, the earlier one is, and once the disk is
  // healthy again the same connection writes.
  fs_.Clear();
  EXPECT_THAT(catalog->GetModel("during"), StatusIs(absl::StatusCode::kNotFound, ::testing::_));
  EXPECT_THAT(catalog->GetModel("before"), IsOk());
  MD_ASSERT_OK(catalog->CreateModel("after", "written after the fault"));

  // A restart: the file opens with SQLite's own VFS, whole.
  catalog.reset();
  catalog = Open(/*with_faults=*/false);
  ASSERT_NE(catalog, nullptr);
  EXPECT_THAT(catalog->GetModel("before"), IsOk());
  EXPECT_THAT(catalog->GetModel("after"), IsOk());
  EXPECT_THAT(catalog->GetModel("during"), StatusIs(absl::StatusCode::kNotFound, ::testing::_));
  catalog.reset();
  EXPECT_EQ(QueryRaw(file_, "PRAGMA integrity_check"), "ok");
}

INSTANTIATE_TEST_SUITE_P(EveryFault, CatalogFaultTest, ::testing::ValuesIn(kFaults),
                         [](const ::testing::TestParamInfo<CatalogFault>& param_info) {
                           return std::string(param_info.param.label);
                         });

}  // namespace
}  // namespace modeldist::storage
