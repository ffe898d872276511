// A download into the device's store on a failing disk (FaultInjectingFs through
// ChunkDownloadOptions::fs): the partial's writes fail with ENOSPC, EIO or a short write, or
// its final fsync fails. The download stops with a clear error (DISK_FULL or IO_ERROR, naming
// the partial), the partial keeps only bytes that verified, and the next download, on a
// healthy disk, resumes and ends with exactly the artifact's bytes.
#include <sys/stat.h>

#include <string>

#include "common/status.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/client/agent/chunk_downloader_fixture.h"
#include "tests/testing/fault_fs.h"

namespace modeldist::agent {
namespace {

using ::modeldist::testing::Fault;
using ::modeldist::testing::FaultInjectingFs;
using ::modeldist::testing::FaultRule;
using ::modeldist::testing::FsOp;
using ::testing::HasSubstr;

struct DownloadFault {
  const char* label;
  FsOp op;
  Fault fault;
  int skip;  // calls let through first: the fault strikes mid-download
  absl::StatusCode code;
  const char* reason;
};

const DownloadFault kFaults[] = {
    {"WriteNoSpace", FsOp::kWrite, Fault::kNoSpace, 5, absl::StatusCode::kResourceExhausted,
     "DISK_FULL"},
    {"WriteIoError", FsOp::kWrite, Fault::kIoError, 5, absl::StatusCode::kUnavailable, "IO_ERROR"},
    {"ShortWrite", FsOp::kWrite, Fault::kShortWrite, 5, absl::StatusCode::kResourceExhausted,
     "DISK_FULL"},
    {"FsyncFails", FsOp::kFsync, Fault::kIoError, 0, absl::StatusCode::kUnavailable, "IO_ERROR"},
};

class DownloadFaultTest : public ChunkDownloaderTest,
                          public ::testing::WithParamInterface<DownloadFault> {
 protected:
  FaultInjectingFs fs_;
};

TEST_P(DownloadFaultTest, FailsClearlyKeepsOnlyVerifiedBytesAndResumes) {
  options_.fs = &fs_;
  fs_.Inject(FaultRule{.op = GetParam().op,
                       .fault = GetParam().fault,
                       .path_prefix = partial_,
                       .skip = GetParam().skip});
  absl::StatusOr<ChunkDownloadStats> failed = Download({grpc_.get()});
  EXPECT_GT(fs_.injected(), 0) << "the fault was never reached";
  EXPECT_EQ(failed.status().code(), GetParam().code) << failed.status();
  EXPECT_EQ(ErrorReason(failed.status()), GetParam().reason) << failed.status();
  EXPECT_THAT(std::string(failed.status().message()), HasSubstr(partial_));

  // Whatever the partial holds is a prefix of the artifact: nothing unverified or torn.
  const std::string kept = Slurp(partial_);
  ASSERT_LE(kept.size(), bytes_.size());
  EXPECT_TRUE(bytes_.compare(0, kept.size(), kept) == 0) << "the partial holds wrong bytes";

  fs_.Clear();
  absl::StatusOr<ChunkDownloadStats> resumed = Download({grpc_.get()});
  ASSERT_TRUE(resumed.ok()) << resumed.status();
  ExpectPartialIsTheArtifact();
}

INSTANTIATE_TEST_SUITE_P(EveryFault, DownloadFaultTest, ::testing::ValuesIn(kFaults),
                         [](const ::testing::TestParamInfo<DownloadFault>& param_info) {
                           return std::string(param_info.param.label);
                         });

}  // namespace
}  // namespace modeldist::agent
