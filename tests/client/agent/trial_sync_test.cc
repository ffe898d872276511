// Trial activation through Sync and the C ABI against a real server on loopback: a synced
// version is on trial; a reported failure rolls back and the rejected digest is not installed
// again while the manifest names it (an up-to-date sync that says why), and is once the
// manifest names another; a trial past its time limit is rolled back at the start of a sync;
// the C ABI counts launches and rolls back past the launch limit.
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "client/agent/agent.h"
#include "client/agent/trial.h"
#include "client/agent/trial_state.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "modeldist/agent.h"
#include "tests/client/agent/agent_fixture.h"
#include "tests/testing/test_util.h"

namespace modeldist::testing {
namespace {

using ::testing::HasSubstr;

class TrialSyncTest : public AgentFixture {
 protected:
  void SetUp() override {
    server_.SetTier("llama8b", "", Publish("1", RandomBytes(3000, 1)));
    ASSERT_NO_FATAL_FAILURE(WriteShippedTrustRoot());
  }

  agent::TrialOptions Trial() {
    agent::TrialOptions o;
    o.dir = Options().dir;
    o.tier = "llama8b";
    o.platform = v1::PLATFORM_LINUX;
    o.arch = v1::ARCH_X86_64;
    return o;
  }

  // Syncs and expects success; returns the result.
  agent::SyncResult SyncOk(const agent::SyncOptions& options) {
    absl::StatusOr<agent::SyncResult> result = agent::Sync(options);
    EXPECT_THAT(result, IsOk());
    return result.ok() ? *result : agent::SyncResult{};
  }
};

TEST_F(TrialSyncTest, ARolledBackDigestIsNotInstalledAgainUntilTheManifestChanges) {
  EXPECT_EQ(SyncOk(Options()).action, agent::SyncResult::Action::kActivated);
  ASSERT_THAT(agent::ConfirmLoaded(Trial()), IsOk());
  server_.SetTier("llama8b", "", Publish("2", RandomBytes(3000, 2)));
  const agent::SyncResult second = SyncOk(Options());
  EXPECT_EQ(second.action, agent::SyncResult::Action::kActivated);
  ASSERT_TRUE(agent::ReadTrial(Options().dir).has_value());
  EXPECT_EQ(agent::ReadTrial(Options().dir)->version, "models/llama/versions/2");

  absl::StatusOr<agent::TrialState> failed =
      agent::ReportLoadFailed(Trial(), "OUT_OF_MEMORY", second.installed.path);
  ASSERT_THAT(failed, IsOk());
  EXPECT_EQ(failed->current->version, "models/llama/versions/1");

  // The manifest still names 2: an up-to-date no-op that says why, nothing downloaded.
  const agent::SyncResult held = SyncOk(Options());
  EXPECT_EQ(held.action, agent::SyncResult::Action::kUpToDate);
  EXPECT_TRUE(held.held_back);
  EXPECT_THAT(held.selection_reason, HasSubstr("rolled back on this device (LOAD_FAILED)"));
  EXPECT_EQ(held.installed.version, "models/llama/versions/1");
  EXPECT_EQ(held.download.bytes_received, 0);

  // Another artifact: installed, and the rejection forgotten.
  server_.SetTier("llama8b", "", Publish("3", RandomBytes(3000, 3)));
  const agent::SyncResult third = SyncOk(Options());
  EXPECT_EQ(third.action, agent::SyncResult::Action::kActivated);
  EXPECT_EQ(third.installed.version, "models/llama/versions/3");
  EXPECT_FALSE(agent::FindRejected(Options().dir, "llama8b", "stable").has_value());
  auto store = agent::ModelStore::Open(Options().dir);
  ASSERT_THAT(store, IsOk());
  EXPECT_EQ(store->Previous()->version, "models/llama/versions/1") << "2 was never confirmed";
}

TEST_F(TrialSyncTest, ATrialPastItsTimeLimitIsRolledBackAtTheStartOfASync) {
  agent::SyncOptions options = Options();
  options.trial.timeout = absl::Minutes(1);
  absl::Duration offset;
  options.now = [&offset] { return absl::Now() + offset; };
  ASSERT_EQ(SyncOk(options).action, agent::SyncResult::Action::kActivated);
  ASSERT_THAT(agent::ConfirmLoaded(Trial()), IsOk());
  server_.SetTier("llama8b", "", Publish("2", RandomBytes(3000, 2)));
  ASSERT_EQ(SyncOk(options).action, agent::SyncResult::Action::kActivated);

  offset = absl::Minutes(2);
  const agent::SyncResult late = SyncOk(options);
  EXPECT_EQ(late.rolled_back, "models/llama/versions/2");
  EXPECT_EQ(late.rollback_reason, "TRIAL_EXPIRED");
  EXPECT_TRUE(late.held_back);
  EXPECT_EQ(late.installed.version, "models/llama/versions/1");
}

TEST_F(TrialSyncTest, CApiCountsLaunchesAndRollsBackPastTheLimit) {
  md_agent_config config = CApiConfig();
  config.trial_launches = 1;
  md_agent* agent = md_agent_new(&config);
  ASSERT_NE(agent, nullptr);
  md_sync_result result = {};
  ASSERT_EQ(md_agent_sync(agent, nullptr, nullptr, &result), MD_OK) << md_agent_last_error(agent);
  EXPECT_EQ(md_agent_confirm_loaded(agent), MD_OK) << md_agent_last_error(agent);

  server_.SetTier("llama8b", "", Publish("2", RandomBytes(3000, 2)));
  ASSERT_EQ(md_agent_sync(agent, nullptr, nullptr, &result), MD_OK) << md_agent_last_error(agent);
  ASSERT_EQ(result.activated, 1);
  const std::string v2_path = result.model_path;
  const char* path = nullptr;
  ASSERT_EQ(md_agent_current_path(agent, &path), MD_OK) << md_agent_last_error(agent);
  EXPECT_EQ(std::string(path), v2_path) << "the first launch on trial";
  // The app never confirmed: the second launch goes back to 1.
  ASSERT_EQ(md_agent_current_path(agent, &path), MD_OK) << md_agent_last_error(agent);
  EXPECT_THAT(std::string(path), HasSubstr("/versions/1-"));
  EXPECT_EQ(md_agent_report_load_failed(agent, "not upper snake"), MD_INVALID_ARGUMENT);
  // 1 is confirmed: a failure is reported, nothing moves.
  EXPECT_EQ(md_agent_report_load_failed(agent, "GPU_LOST"), MD_OK) << md_agent_last_error(agent);
  ASSERT_EQ(md_agent_current_path(agent, &path), MD_OK);
  EXPECT_THAT(std::string(path), HasSubstr("/versions/1-"));
  md_agent_free(agent);
}

TEST_F(TrialSyncTest, CApiReportedFailureOfAFirstInstallLeavesNoModel) {
  md_agent_config config = CApiConfig();
  md_agent* agent = md_agent_new(&config);
  ASSERT_NE(agent, nullptr);
  md_sync_result result = {};
  ASSERT_EQ(md_agent_sync(agent, nullptr, nullptr, &result), MD_OK) << md_agent_last_error(agent);
  EXPECT_EQ(md_agent_report_load_failed(agent, "UNSUPPORTED_OPS"), MD_OK)
      << md_agent_last_error(agent);
  const char* path = nullptr;
  EXPECT_EQ(md_agent_current_path(agent, &path), MD_NOT_FOUND);
  // The manifest still names it: held back, no model, not an error.
  ASSERT_EQ(md_agent_sync(agent, nullptr, nullptr, &result), MD_OK) << md_agent_last_error(agent);
  EXPECT_EQ(result.activated, 0);
  EXPECT_EQ(std::string(result.model_path), "");
  md_agent_free(agent);
}

}  // namespace
}  // namespace modeldist::testing
