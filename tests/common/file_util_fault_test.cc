// WriteFileAtomically on a failing disk (FaultInjectingFs): the key files, trust roots and
// records the server and the agent write with it keep their old contents whatever step fails
// (the temp file's creation, its bytes, its fsync, the rename or link into place), no temp file
// is left behind, and the error says what failed (DISK_FULL for ENOSPC, IO_ERROR for EIO).
#include <sys/stat.h>

#include <filesystem>
#include <string>

#include "common/file_util.h"
#include "common/status.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/fault_fs.h"
#include "tests/testing/test_util.h"

namespace modeldist {
namespace {

using ::modeldist::testing::Fault;
using ::modeldist::testing::FaultInjectingFs;
using ::modeldist::testing::FaultRule;
using ::modeldist::testing::FsOp;
using ::modeldist::testing::ScratchDir;
using ::testing::HasSubstr;

struct AtomicWriteFault {
  const char* label;
  FsOp op;
  Fault fault;
  bool overwrite;  // rename into place; false: link (refuses to replace)
  absl::StatusCode code;
  const char* reason;
};

const AtomicWriteFault kFaults[] = {
    {"CreateNoSpace", FsOp::kOpen, Fault::kNoSpace, true, absl::StatusCode::kResourceExhausted,
     "DISK_FULL"},
    {"WriteNoSpace", FsOp::kWrite, Fault::kNoSpace, true, absl::StatusCode::kResourceExhausted,
     "DISK_FULL"},
    {"WriteIoError", FsOp::kWrite, Fault::kIoError, true, absl::StatusCode::kUnavailable,
     "IO_ERROR"},
    {"ShortWrite", FsOp::kWrite, Fault::kShortWrite, true, absl::StatusCode::kResourceExhausted,
     "DISK_FULL"},
    {"FsyncFails", FsOp::kFsync, Fault::kIoError, true, absl::StatusCode::kUnavailable, "IO_ERROR"},
    {"RenameIoError", FsOp::kRename, Fault::kIoError, true, absl::StatusCode::kUnavailable,
     "IO_ERROR"},
    {"LinkNoSpace", FsOp::kLink, Fault::kNoSpace, false, absl::StatusCode::kResourceExhausted,
     "DISK_FULL"},
};

class WriteFileAtomicallyFaultTest : public ::testing::TestWithParam<AtomicWriteFault> {};

TEST_P(WriteFileAtomicallyFaultTest, TheOldFileStaysWholeAndNoTempFileIsLeft) {
  ScratchDir dir;
  FaultInjectingFs fs;
  const AtomicWriteFault& c = GetParam();
  // Link refuses an existing name, so that case writes a new file and checks none appears.
  const std::string path = dir.Join(c.overwrite ? "root.json" : "new.key");
  const std::string old_contents = "the old, signed contents\n";
  if (c.overwrite) {
    MD_ASSERT_OK(WriteFileAtomically(path, old_contents, 0600));
  }

  fs.Inject(FaultRule{.op = c.op, .fault = c.fault, .path_prefix = dir.path()});
  const std::string new_contents(64 * 1024, 'n');
  absl::Status status = WriteFileAtomically(path, new_contents, 0600, c.overwrite, fs);
  EXPECT_GT(fs.injected(), 0) << "the fault was never reached";
  EXPECT_EQ(status.code(), c.code) << status;
  EXPECT_EQ(ErrorReason(status), c.reason) << status;
  EXPECT_THAT(std::string(status.message()), HasSubstr(dir.path()));

  if (c.overwrite) {
    EXPECT_THAT(ReadFileToString(path), ::modeldist::testing::IsOkAndHolds(old_contents));
  } else {
    EXPECT_FALSE(std::filesystem::exists(path));
  }
  int files = 0;
  for (const auto& entry : std::filesystem::directory_iterator(dir.path())) {
    EXPECT_EQ(entry.path().string(), path) << "left behind";
    ++files;
  }
  EXPECT_EQ(files, c.overwrite ? 1 : 0);

  // A healthy disk again: the same write goes through.
  fs.Clear();
  MD_ASSERT_OK(WriteFileAtomically(path, new_contents, 0600, c.overwrite, fs));
  EXPECT_THAT(ReadFileToString(path), ::modeldist::testing::IsOkAndHolds(new_contents));
}

INSTANTIATE_TEST_SUITE_P(EveryStep, WriteFileAtomicallyFaultTest, ::testing::ValuesIn(kFaults),
                         [](const ::testing::TestParamInfo<AtomicWriteFault>& param_info) {
                           return std::string(param_info.param.label);
                         });

}  // namespace
}  // namespace modeldist
