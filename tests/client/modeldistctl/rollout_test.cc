// Tests of `modeldistctl rollout` against FakeRegistry.
#include <string>
#include <vector>

#include "absl/strings/str_split.h"
#include "client/modeldistctl/errors.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/client/modeldistctl/ctl_fixture.h"
#include "tests/testing/test_util.h"

namespace modeldist::ctl {
namespace {

using ::testing::HasSubstr;

TEST_F(FakeServerTest, RolloutStartAdvanceListAbortSendBasisPointsAndTheActor) {
  // Published in this order, the tier ends up bound to 1.0: the rollout's from_version.
  PublishFakeVersion("2.0");
  PublishFakeVersion("1.0");

  CtlRun start =
      RunInProcess(CtlAs("release-bot", {"rollout", "start", "--tier", "llama8b", "--model",
                                         "llama", "--version", "2.0", "--percent", "0.5"}));
  ASSERT_EQ(start.code, kExitOk) << start.err;
  EXPECT_EQ(start.out,
            "rollout r-1 llama8b/stable: models/llama/versions/1.0 -> models/llama/versions/2.0 "
            "at 0.5% (ACTIVE)\n");
  EXPECT_EQ(fake_.callers().back(), "release-bot");

  CtlRun advance =
      RunInProcess(Ctl({"--json", "rollout", "advance", "--tier", "llama8b", "--percent", "10"}));
  ASSERT_EQ(advance.code, kExitOk) << advance.err;
  EXPECT_THAT(advance.out, HasSubstr("\"basisPoints\":1000"));
  EXPECT_THAT(advance.out, HasSubstr("\"state\":\"ACTIVE\""));

  // The server refuses to move devices back; its error comes through as exit 2.
  CtlRun back = RunInProcess(Ctl({"rollout", "advance", "--tier", "llama8b", "--percent", "5"}));
  EXPECT_EQ(back.code, kExitRpc);
  EXPECT_THAT(back.err, HasSubstr("INVALID_ARGUMENT"));

  CtlRun pause = RunInProcess(Ctl({"rollout", "pause", "--tier", "llama8b"}));
  ASSERT_EQ(pause.code, kExitOk) << pause.err;
  EXPECT_THAT(pause.out, HasSubstr("at 10% (PAUSED)"));
  ASSERT_EQ(RunInProcess(Ctl({"rollout", "resume", "--tier", "llama8b"})).code, kExitOk);
  CtlRun abort = RunInProcess(Ctl({"rollout", "abort", "--tier", "llama8b"}));
  ASSERT_EQ(abort.code, kExitOk) << abort.err;
  EXPECT_THAT(abort.out, HasSubstr("(ABORTED)"));

  // Three more, on two channels, so that the list spans pages of the fake (two per page).
  ASSERT_EQ(RunInProcess(Ctl({"rollout", "start", "--tier", "llama8b", "--version",
                              "models/llama/versions/2.0", "--percent", "1"}))
                .code,
            kExitOk);
  ASSERT_EQ(RunInProcess(Ctl({"rollout", "complete", "--tier", "llama8b"})).code, kExitOk);
  ASSERT_EQ(RunInProcess(Ctl({"rollout", "start", "--tier", "llama8b", "--channel", "beta",
                              "--version", "models/llama/versions/1.0", "--percent", "100"}))
                .code,
            kExitOk);

  CtlRun list = RunInProcess(Ctl({"rollout", "list"}));
  ASSERT_EQ(list.code, kExitOk) << list.err;
  std::vector<std::string> lines = absl::StrSplit(list.out, '\n', absl::SkipEmpty());
  ASSERT_EQ(lines.size(), 4u) << list.out;
  EXPECT_THAT(lines[0], HasSubstr("ID   TIER     CHANNEL  FROM"));
  EXPECT_THAT(lines[0], HasSubstr("PERCENT  STATE      UPDATED"));
  EXPECT_THAT(lines[1], HasSubstr("r-3  llama8b  beta"));  // Newest first.
  EXPECT_THAT(lines[1], HasSubstr("100%     ACTIVE"));
  EXPECT_THAT(lines[1], HasSubstr("2026-01-01T00:00:03Z"));
  EXPECT_THAT(lines[2], HasSubstr("1%       COMPLETED"));
  EXPECT_THAT(lines[3], HasSubstr("10%      ABORTED"));

  CtlRun beta = RunInProcess(Ctl({"rollout", "list", "--tier", "llama8b", "--channel", "beta"}));
  ASSERT_EQ(beta.code, kExitOk) << beta.err;
  EXPECT_EQ(std::vector<std::string>(absl::StrSplit(beta.out, '\n', absl::SkipEmpty())).size(), 2u);
  CtlRun none = RunInProcess(Ctl({"--json", "rollout", "list", "--tier", "other"}));
  ASSERT_EQ(none.code, kExitOk) << none.err;
  EXPECT_THAT(none.out, HasSubstr("\"rollouts\":[]"));
}

}  // namespace
}  // namespace modeldist::ctl
