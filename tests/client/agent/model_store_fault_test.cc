// The device's model store on a failing disk (FaultInjectingFs): activation of a verified
// download fails at each of its writes (the second name of the partial, the file's fsync, the
// rename into versions/, INSTALLED, the switch of `current`) with ENOSPC, EIO, a short write or
// a failed fsync. Each gives a clear error (DISK_FULL or IO_ERROR, naming the file), leaves the
// active model exactly as it was (same version, same verified bytes), keeps the partial, and
// the same activation succeeds once the disk is healthy again.
#include <string>

#include "absl/strings/str_cat.h"
#include "client/agent/model_store.h"
#include "common/digest.h"
#include "common/file_util.h"
#include "common/status.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/fault_fs.h"
#include "tests/testing/test_util.h"

namespace modeldist::agent {
namespace {

using ::modeldist::testing::Fault;
using ::modeldist::testing::FaultInjectingFs;
using ::modeldist::testing::FaultRule;
using ::modeldist::testing::FsOp;
using ::modeldist::testing::IsOkAndHolds;
using ::modeldist::testing::RandomBytes;
using ::modeldist::testing::ScratchDir;
using ::testing::HasSubstr;

constexpr char kV1[] = "models/llama/versions/2026.11.0";
constexpr char kV2[] = "models/llama/versions/2026.12.0";

struct StoreFault {
  const char* label;
  FsOp op;
  Fault fault;
  // Under the store's directory.
  const char* path_under;
  absl::StatusCode code;
  const char* reason;
};

const StoreFault kFaults[] = {
    {"SecondNameNoSpace", FsOp::kLink, Fault::kNoSpace, "staging/",
     absl::StatusCode::kResourceExhausted, "DISK_FULL"},
    {"ContentFsyncFails", FsOp::kFsync, Fault::kIoError, "staging/activate-",
     absl::StatusCode::kUnavailable, "IO_ERROR"},
    {"RenameIntoVersionsIoError", FsOp::kRename, Fault::kIoError, "versions/",
     absl::StatusCode::kUnavailable, "IO_ERROR"},
    {"InstalledWriteNoSpace", FsOp::kWrite, Fault::kNoSpace, "versions/",
     absl::StatusCode::kResourceExhausted, "DISK_FULL"},
    {"InstalledShortWrite", FsOp::kWrite, Fault::kShortWrite, "versions/",
     absl::StatusCode::kResourceExhausted, "DISK_FULL"},
    {"InstalledWriteIoError", FsOp::kWrite, Fault::kIoError, "versions/",
     absl::StatusCode::kUnavailable, "IO_ERROR"},
    {"InstalledFsyncFails", FsOp::kFsync, Fault::kIoError, "versions/",
     absl::StatusCode::kUnavailable, "IO_ERROR"},
    {"SwitchCurrentIoError", FsOp::kRename, Fault::kIoError, "current",
     absl::StatusCode::kUnavailable, "IO_ERROR"},
};

class ModelStoreFaultTest : public ::testing::TestWithParam<StoreFault> {
 protected:
  // Writes `bytes` as the verified partial download of their digest; returns the digest.
  std::string Download(const ModelStore& store, const std::string& bytes) {
    const std::string digest = FormatDigest(Sha256::HexOf(bytes));
    absl::StatusOr<std::string> partial = store.PartialPath(digest);
    EXPECT_TRUE(partial.ok());
    EXPECT_TRUE(WriteFileAtomically(*partial, bytes, 0644).ok());
    return digest;
  }

  ScratchDir dir_;
  FaultInjectingFs fs_;
};

TEST_P(ModelStoreFaultTest, AFailedActivationKeepsTheActiveModelAndSucceedsOnRetry) {
  absl::StatusOr<ModelStore> opened = ModelStore::Open(dir_.path(), &fs_);
  ASSERT_TRUE(opened.ok()) << opened.status();
  ModelStore& store = *opened;
  const std::string v1_bytes = RandomBytes(300 * 1024, 1);
  const std::string v1 = Download(store, v1_bytes);
  ASSERT_TRUE(store.ActivatePartial(kV1, v1, v1::FORMAT_GGUF).ok());

  const std::string v2_bytes = RandomBytes(200 * 1024, 2);
  const std::string v2 = Download(store, v2_bytes);
  fs_.Inject(FaultRule{.op = GetParam().op,
                       .fault = GetParam().fault,
                       .path_prefix = dir_.Join(GetParam().path_under)});
  absl::StatusOr<InstalledVersion> failed = store.ActivatePartial(kV2, v2, v1::FORMAT_GGUF);
  EXPECT_GT(fs_.injected(), 0) << "the fault was never reached";
  EXPECT_EQ(failed.status().code(), GetParam().code) << failed.status();
  EXPECT_EQ(ErrorReason(failed.status()), GetParam().reason) << failed.status();
  EXPECT_THAT(std::string(failed.status().message()), HasSubstr(dir_.path()));

  // The active model is untouched and still verifies; the download is kept for the retry.
  std::optional<InstalledVersion> current = store.Current();
  ASSERT_TRUE(current.has_value());
  EXPECT_EQ(current->version, kV1);
  EXPECT_EQ(current->digest, v1);
  EXPECT_THAT(ReadFileToString(current->path), IsOkAndHolds(v1_bytes));
  EXPECT_THAT(ReadFileToString(*store.PartialPath(v2)), IsOkAndHolds(v2_bytes));
  EXPECT_EQ(store.List().size(), 1u) << "no half-installed version is listed";

  fs_.Clear();
  absl::StatusOr<InstalledVersion> retried = store.ActivatePartial(kV2, v2, v1::FORMAT_GGUF);
  ASSERT_TRUE(retried.ok()) << retried.status();
  EXPECT_EQ(store.Current()->version, kV2);
  EXPECT_THAT(ReadFileToString(store.Current()->path), IsOkAndHolds(v2_bytes));
  ASSERT_TRUE(store.Previous().has_value());
  EXPECT_EQ(store.Previous()->version, kV1);

  // A restart finds the same: the store opens and names the same versions.
  absl::StatusOr<ModelStore> reopened = ModelStore::Open(dir_.path());
  ASSERT_TRUE(reopened.ok()) << reopened.status();
  EXPECT_EQ(reopened->Current()->version, kV2);
  EXPECT_THAT(ReadFileToString(reopened->Previous()->path), IsOkAndHolds(v1_bytes));
}

INSTANTIATE_TEST_SUITE_P(EveryWrite, ModelStoreFaultTest, ::testing::ValuesIn(kFaults),
                         [](const ::testing::TestParamInfo<StoreFault>& param_info) {
                           return std::string(param_info.param.label);
                         });

}  // namespace
}  // namespace modeldist::agent
