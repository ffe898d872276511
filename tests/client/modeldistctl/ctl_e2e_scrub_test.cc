// End-to-end test of `modeldistctl scrub` against the real modeldist-server
// (ctl_e2e_fixture.h): exit 0 on a clean store, 4 with the digest of a damaged blob.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <string>

#include "absl/strings/str_cat.h"
#include "common/digest.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/client/modeldistctl/ctl_e2e_fixture.h"
#include "tests/testing/test_util.h"

namespace modeldist::ctl {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

TEST_F(CtlE2eTest, ScrubExitsZeroWhenCleanAndFourWithTheDigestOfADamagedBlob) {
  ASSERT_EQ(Ctl(PublishArgs("1.0")).code, 0);
  CtlRun clean = Ctl({"scrub"});
  ASSERT_EQ(clean.code, 0) << clean.err;
  EXPECT_THAT(clean.out, HasSubstr("checked 1 blobs (3.15 MB) in "));
  EXPECT_THAT(clean.out, HasSubstr(": 0 damaged, 0 missing, 0 restored\n"));
  EXPECT_THAT(clean.out, Not(HasSubstr(digest_))) << "an intact blob is not listed";

  CtlRun json = Ctl({"--json", "scrub", "--rate", "64MiB"});
  ASSERT_EQ(json.code, 0) << json.err;
  EXPECT_THAT(json.out, HasSubstr(absl::StrCat("\"blobsChecked\":1,\"bytesChecked\":", kFileSize)));

  // A byte flipped on disk, written with pwrite so that the scrub's direct reads see it.
  const std::string hex = digest_.substr(kSha256Prefix.size());
  const std::string path =
      dir_.Join(absl::StrCat("data/blobs/sha256/", hex.substr(0, 2), "/", hex));
  ASSERT_EQ(::chmod(path.c_str(), 0644), 0);
  int fd = ::open(path.c_str(), O_RDWR);
  ASSERT_GE(fd, 0);
  const char flipped = static_cast<char>(contents_[1000] ^ 0x20);
  ASSERT_EQ(::pwrite(fd, &flipped, 1, 1000), 1);
  ::close(fd);

  CtlRun damaged = Ctl({"scrub"});
  EXPECT_EQ(damaged.code, 4) << damaged.err;
  EXPECT_THAT(damaged.out, HasSubstr(absl::StrCat("damaged ", digest_, " (3.15 MB): ")));
  EXPECT_THAT(damaged.out, HasSubstr(": 1 damaged, 0 missing, 0 restored\n"));
  EXPECT_THAT(damaged.err, HasSubstr("the scrub found 1 damaged and 0 missing blobs"));

  // Quarantined now: the next scrub still exits 4, naming it as missing from the store.
  CtlRun again = Ctl({"--json", "scrub"});
  EXPECT_EQ(again.code, 4) << again.err;
  EXPECT_THAT(again.out, HasSubstr(absl::StrCat("\"outcome\":\"MISSING\",\"digest\":\"", digest_)));

  CtlRun bad_rate = Ctl({"scrub", "--rate", "-5"});
  EXPECT_EQ(bad_rate.code, 1);
  EXPECT_THAT(bad_rate.err, HasSubstr("--rate"));
}

}  // namespace
}  // namespace modeldist::ctl
