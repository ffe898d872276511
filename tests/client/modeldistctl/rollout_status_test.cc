// `modeldistctl rollout start` with a policy and `rollout status`, against a real in-process
// server (tests/testing/test_server.h): the policy flags reach the server as a RolloutPolicy,
// and status shows its steps and gates.
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "client/modeldistctl/errors.h"
#include "client/modeldistctl/publish.h"
#include "client/modeldistctl/registry_client.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/client/modeldistctl/ctl_fixture.h"
#include "tests/testing/test_server.h"
#include "tests/testing/test_util.h"

namespace modeldist::ctl {
namespace {

using ::modeldist::testing::IsOk;
using ::modeldist::testing::ScratchDir;
using ::testing::HasSubstr;

class RolloutStatusTest : public ::testing::Test {
 protected:
  void SetUp() override {
    client_ = std::make_unique<RegistryClient>(server_.channel(), modeldist::testing::kTestToken);
    WriteFile(token_file_, absl::StrCat(modeldist::testing::kTestToken, "\n"));
    // Published in this order, llama8b ends up bound to 1.0, with 2.0 published beside it.
    for (const char* version : {"2.0", "1.0"}) {
      const std::string path = dir_.Join(absl::StrCat(version, ".gguf"));
      WriteFile(path, modeldist::testing::RandomBytes(4096, version[0]));
      PublishSpec spec;
      spec.model_id = "llama";
      spec.version_id = version;
      spec.tier = "llama8b";
      spec.artifacts = {{v1::PLATFORM_MACOS, v1::ARCH_ARM64, v1::FORMAT_GGUF, path}};
      PublishResult result;
      ASSERT_THAT(ctl::Publish(*client_, spec, PublishOptions{}, &result), IsOk());
    }
  }

  // modeldistctl `args`, as a user types them, over TCP to the test server.
  CtlRun Run(const std::vector<std::string>& args) {
    std::vector<std::string> all = {"--server", absl::StrCat("127.0.0.1:", server_.server().port()),
                                    "--token-file", token_file_};
    all.insert(all.end(), args.begin(), args.end());
    return RunInProcess(all);
  }

  modeldist::testing::TestServer server_;
  std::unique_ptr<RegistryClient> client_;
  ScratchDir dir_;
  const std::string token_file_ = dir_.Join("token");
};

TEST_F(RolloutStatusTest, StartWithAPolicyThenStatusShowsStepsAndGates) {
  CtlRun start = Run({"rollout",
                      "start",
                      "--tier",
                      "llama8b",
                      "--version",
                      "models/llama/versions/2.0",
                      "--percent",
                      "1",
                      "--max-load-failure",
                      "3",
                      "--max-sync-failure",
                      "0.5",
                      "--min-reports",
                      "50",
                      "--on-trip",
                      "abort",
                      "--schedule",
                      "10%,50%,100%",
                      "--every",
                      "6h"});
  ASSERT_EQ(start.code, kExitOk) << start.err;

  CtlRun json = Run({"--json", "rollout", "status", "llama8b"});
  ASSERT_EQ(json.code, kExitOk) << json.err;
  // The policy as the server stored it.
  EXPECT_THAT(json.out, HasSubstr("\"maxLoadFailureBp\":300"));
  EXPECT_THAT(json.out, HasSubstr("\"maxSyncFailureBp\":50"));
  EXPECT_THAT(json.out, HasSubstr("\"minReports\":50"));
  EXPECT_THAT(json.out, HasSubstr("\"onTrip\":\"ABORT\""));
  EXPECT_THAT(json.out, HasSubstr("\"scheduleBp\":[1000,5000,10000]"));
  EXPECT_THAT(json.out, HasSubstr("\"stepInterval\":\"21600s\""));
  EXPECT_THAT(json.out, HasSubstr("\"nextStepTime\""));
  // One step so far, by the token's actor, and both gates waiting for reports.
  EXPECT_THAT(json.out, HasSubstr("\"steps\":[{\"basisPoints\":100"));
  EXPECT_THAT(json.out, HasSubstr("{\"name\":\"load_failure\",\"maxBp\":300"));
  EXPECT_THAT(json.out, HasSubstr("{\"name\":\"sync_failure\",\"maxBp\":50"));
  EXPECT_THAT(json.out, HasSubstr("\"verdict\":\"WAITING\""));

  CtlRun text = Run({"rollout", "status", "--tier", "llama8b", "--channel", "stable"});
  ASSERT_EQ(text.code, kExitOk) << text.err;
  EXPECT_THAT(text.out, HasSubstr("at 1% (ACTIVE)"));
  EXPECT_THAT(text.out, HasSubstr("next step: "));
  EXPECT_THAT(text.out, HasSubstr("SHARE")) << text.out;
  EXPECT_THAT(text.out, HasSubstr("LOAD-FAILED"));
  EXPECT_THAT(text.out, HasSubstr("load_failure  3%"));
  EXPECT_THAT(text.out, HasSubstr("WAITING"));

  // No rollout on another channel: the server's NOT_FOUND.
  CtlRun none = Run({"rollout", "status", "llama8b", "--channel", "beta"});
  EXPECT_EQ(none.code, kExitRpc);
  EXPECT_THAT(none.err, HasSubstr("ROLLOUT_NOT_FOUND"));
}

TEST_F(RolloutStatusTest, BadPolicyFlagsAreRefused) {
  const std::vector<std::string> base = {"rollout",   "start",     "--tier",
                                         "llama8b",   "--version", "models/llama/versions/2.0",
                                         "--percent", "1"};
  auto with = [&](std::vector<std::string> extra) {
    std::vector<std::string> args = base;
    args.insert(args.end(), extra.begin(), extra.end());
    return Run(args);
  };
  EXPECT_EQ(with({"--on-trip", "retreat"}).code, kExitUsage);
  EXPECT_EQ(with({"--schedule", "10%"}).code, kExitUsage);  // no --every
  EXPECT_EQ(with({"--min-reports", "-3"}).code, kExitUsage);
  // The server's rules: a step interval of at least a minute.
  CtlRun fast = with({"--schedule", "10%", "--every", "30s"});
  EXPECT_EQ(fast.code, kExitRpc);
  EXPECT_THAT(fast.err, HasSubstr("INVALID_ROLLOUT_POLICY"));
  EXPECT_THAT(fast.err, HasSubstr("policy.step_interval"));
}

}  // namespace
}  // namespace modeldist::ctl
