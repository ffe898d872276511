// `modeldist-agent current` and `confirm` as an app's launcher script runs them, after a real
// `sync --trial-launches 1`: `status` shows the trial, `current` counts the launch, the next
// `current` without a `confirm` rolls back, the next sync holds the rolled-back digest back
// (exit 0, "heldBack":true), and `confirm --failed` refuses a reason that is not UPPER_SNAKE.
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/client/agent/agent_cli.h"
#include "tests/client/agent/agent_fixture.h"
#include "tests/testing/test_util.h"

namespace modeldist::testing {
namespace {

using ::testing::HasSubstr;

class TrialCliTest : public AgentFixture {
 protected:
  void SetUp() override { ASSERT_NO_FATAL_FAILURE(WriteShippedTrustRoot()); }

  AgentRun Run(std::vector<std::string> args) {
    args.insert(args.end(), {"--dir", dir_.Join("models"), "--json"});
    return RunAgent(args, dir_.path());
  }
  AgentRun Sync() {
    return Run({"sync", "--server", ServerAddress(), "--tier", "llama8b", "--trust-root",
                root_file_, "--platform", "linux", "--arch", "x86_64", "--trial-launches", "1"});
  }
};

TEST_F(TrialCliTest, AnUnconfirmedVersionIsRolledBackAfterItsLaunchesAndHeldBack) {
  server_.SetTier("llama8b", "", Publish("1", RandomBytes(2000, 1)));
  ASSERT_EQ(Sync().exit_code, 0);
  AgentRun first = Run({"current"});
  ASSERT_EQ(first.exit_code, 0) << first.out << first.err;
  AgentRun confirm = Run({"confirm", "--path", *JsonField(first.out, "path")});
  ASSERT_EQ(confirm.exit_code, 0) << confirm.out << confirm.err;
  EXPECT_EQ(JsonField(confirm.out, "confirmed"), "true") << confirm.out;

  server_.SetTier("llama8b", "", Publish("2", RandomBytes(2000, 2)));
  AgentRun second = Sync();
  ASSERT_EQ(JsonField(second.out, "action"), "activated") << second.out << second.err;
  AgentRun status = Run({"status"});
  EXPECT_EQ(JsonField(status.out, "onTrial"), "true") << status.out;
  EXPECT_EQ(JsonField(status.out, "previous"), "models/llama/versions/1") << status.out;

  AgentRun launch = Run({"current"});
  EXPECT_EQ(JsonField(launch.out, "version"), "models/llama/versions/2") << launch.out;
  EXPECT_EQ(JsonInt(launch.out, "launches"), 1) << launch.out;
  AgentRun again = Run({"current"});
  EXPECT_EQ(JsonField(again.out, "version"), "models/llama/versions/1") << again.out;
  EXPECT_EQ(JsonField(again.out, "rollbackReason"), "TRIAL_LAUNCH_LIMIT") << again.out;

  AgentRun held = Sync();
  EXPECT_EQ(held.exit_code, 0) << held.out << held.err;
  EXPECT_EQ(JsonField(held.out, "action"), "up-to-date") << held.out;
  EXPECT_EQ(JsonField(held.out, "heldBack"), "true") << held.out;
  EXPECT_EQ(JsonField(held.out, "version"), "models/llama/versions/1") << held.out;
  EXPECT_THAT(held.err, HasSubstr("was rolled back on this device (TRIAL_LAUNCH_LIMIT)"));

  AgentRun bad = Run({"confirm", "--failed", "out of memory"});
  EXPECT_EQ(bad.exit_code, 2) << bad.out;
  EXPECT_EQ(JsonField(bad.out, "reason"), "INVALID_LOAD_FAILURE_REASON") << bad.out;
}

}  // namespace
}  // namespace modeldist::testing
