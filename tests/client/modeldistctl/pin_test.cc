// Tests of `modeldistctl pin`, `unpin` and `pins` against FakeRegistry.
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "client/modeldistctl/errors.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/client/modeldistctl/ctl_fixture.h"
#include "tests/testing/test_util.h"

namespace modeldist::ctl {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

TEST_F(FakeServerTest, PinSendsBatchesOfAtMostAThousandFromFileAndArguments) {
  PublishFakeVersion("1.0");
  std::string ids = "# QA fleet\n\n";
  for (int i = 0; i < 2499; ++i) absl::StrAppend(&ids, "device-", i, "\n");
  absl::StrAppend(&ids, "device-0\n");  // A repeat: sent once.
  WriteFile(dir_.Join("devices.txt"), ids);

  CtlRun pin =
      RunInProcess(Ctl({"pin", "--tier", "llama8b", "--version", "models/llama/versions/1.0",
                        "--devices-file", dir_.Join("devices.txt"), "extra-device"}));
  ASSERT_EQ(pin.code, kExitOk) << pin.err;
  EXPECT_EQ(fake_.pin_batches(), (std::vector<int>{1000, 1000, 500}));
  EXPECT_EQ(fake_.pins().size(), 2500u);
  EXPECT_EQ(fake_.pins().count("llama8b/stable/extra-device"), 1u);
  EXPECT_THAT(pin.out, HasSubstr("pinned 2500 devices of llama8b/stable to "
                                 "models/llama/versions/1.0 (2500 changed) sequence "));

  CtlRun unpin = RunInProcess(
      Ctl({"--json", "unpin", "--tier", "llama8b", "extra-device", "device-1", "no-such"}));
  ASSERT_EQ(unpin.code, kExitOk) << unpin.err;
  EXPECT_THAT(
      unpin.out,
      HasSubstr("{\"tier\":\"llama8b\",\"channel\":\"stable\",\"devices\":3,\"changed\":2,"));
  EXPECT_EQ(fake_.pins().size(), 2498u);

  CtlRun pins = RunInProcess(Ctl({"pins"}));
  ASSERT_EQ(pins.code, kExitOk) << pins.err;
  EXPECT_THAT(pins.out, HasSubstr("TIER     CHANNEL  DEVICE"));
  EXPECT_THAT(pins.out, HasSubstr("llama8b  stable   device-0 "));
  EXPECT_THAT(pins.out, HasSubstr("models/llama/versions/1.0"));
  EXPECT_THAT(pins.out, Not(HasSubstr("extra-device")));
}

TEST_F(FakeServerTest, PinFailureSaysHowManyBatchesWereApplied) {
  PublishFakeVersion("1.0");
  std::vector<std::string> args = {"pin", "--tier", "llama8b", "--version",
                                   "models/llama/versions/1.0"};
  for (int i = 0; i < 1500; ++i) args.push_back(absl::StrCat("d", i));
  fake_.FailPinCall(2);
  CtlRun run = RunInProcess(Ctl(args));
  EXPECT_EQ(run.code, kExitRpc);
  EXPECT_THAT(run.err, HasSubstr("pinned 1000 of 1500 devices before this error"));
  EXPECT_THAT(run.err, HasSubstr("UNAVAILABLE"));
  EXPECT_EQ(fake_.pins().size(), 1000u);

  CtlRun missing =
      RunInProcess(Ctl({"pin", "--tier", "llama8b", "--version", "models/llama/versions/1.0",
                        "--devices-file", dir_.Join("absent.txt")}));
  EXPECT_EQ(missing.code, kExitLocal);
  EXPECT_THAT(missing.err, HasSubstr("--devices-file"));
}

}  // namespace
}  // namespace modeldist::ctl
