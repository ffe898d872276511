// SyncAndReport, the CLI's and the C ABI's sync: a real server on loopback behind one address
// that also serves a FleetService at the seam (report_test_fleet.h; the manifest's artifact
// source is the real server). What a sync queues and sends, that reports never change a
// sync's result nor hold it past their deadline, and the off switch.
#include "client/agent/reporting.h"

#include <sys/stat.h>

#include <algorithm>
#include <memory>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "modeldist/agent.h"
#include "tests/client/agent/agent_cli.h"
#include "tests/client/agent/agent_fixture.h"
#include "tests/client/agent/report_test_fleet.h"

namespace modeldist::testing {
namespace {

using ::testing::ElementsAre;

// The events this file's code sends, in order.
std::vector<v1::StatusEvent> Events(const std::vector<v1::StatusReport>& reports) {
  std::vector<v1::StatusEvent> out;
  for (const auto& r : reports) {
    // ACTIVATED and the trial's events come from activation itself: not this file's concern.
    if (r.event() == v1::STATUS_EVENT_DOWNLOADED || r.event() == v1::STATUS_EVENT_VERIFIED ||
        r.event() == v1::STATUS_EVENT_SYNC_FAILED) {
      out.push_back(r.event());
    }
  }
  return out;
}

class ReportingTest : public AgentFixture {
 protected:
  void SetUp() override {
    // Manifests name the real server as their artifact source, so that the front (forwarding
    // ManifestService, with the test's FleetService) needs no ArtifactService.
    const std::string self = ServerAddress();
    server_.config().listen = self;
    server_.config().public_address = self;
    server_.Restart();
    front_ = std::make_unique<TestFleetServer>(server_.channel());
    version_ = Publish("1", RandomBytes(3 << 20, 5));
    server_.SetTier("llama8b", "", version_);
    ASSERT_NO_FATAL_FAILURE(WriteShippedTrustRoot());
  }

  agent::SyncOptions Device() {
    agent::SyncOptions o = Options(front_->address());
    o.device_id = "device-7";
    return o;
  }
  agent::ReportingOptions Reporting() {
    agent::ReportingOptions r;
    r.app_version = "3.1.4";
    r.send_timeout = absl::Seconds(1);
    return r;
  }
  int64_t Queued() {
    auto queue = agent::ReportQueue::Open(Options().dir);
    return queue.ok() ? (*queue)->size() : -1;
  }

  std::string version_;
  std::unique_ptr<TestFleetServer> front_;  // in front of the server (SetUp)
};

TEST_F(ReportingTest, ActivationQueuesAndSendsDownloadedAndVerified) {
  agent::ReportingOutcome outcome;
  auto synced = agent::SyncAndReport(Device(), Reporting(), &outcome);
  ASSERT_TRUE(synced.ok()) << synced.status();
  EXPECT_EQ(synced->action, agent::SyncResult::Action::kActivated);
  EXPECT_TRUE(outcome.queued.ok()) << outcome.queued;
  EXPECT_TRUE(outcome.sent.ok()) << outcome.sent;
  EXPECT_EQ(Queued(), 0);

  const auto batches = front_->fleet().batches();
  ASSERT_EQ(batches.size(), 1u);
  EXPECT_EQ(batches[0].device_id(), "device-7");
  EXPECT_EQ(batches[0].app_version(), "3.1.4");
  EXPECT_FALSE(batches[0].agent_version().empty());
  const auto reports = front_->fleet().reports();
  EXPECT_THAT(Events(reports), ElementsAre(v1::STATUS_EVENT_DOWNLOADED, v1::STATUS_EVENT_VERIFIED));
  // Oldest first: downloaded and verified before the trial's ACTIVATED (when it sends one).
  for (size_t i = 0; i < reports.size(); ++i) {
    if (reports[i].event() == v1::STATUS_EVENT_ACTIVATED) {
      EXPECT_GE(i, 2u);
    }
  }
  for (const auto& r : reports) {
    EXPECT_EQ(r.tier(), "llama8b");
    EXPECT_EQ(r.channel(), "stable");
    EXPECT_EQ(r.version(), version_);
    EXPECT_EQ(r.digest(), synced->manifest.artifact().digest());
    EXPECT_EQ(r.platform(), v1::PLATFORM_LINUX);
    EXPECT_EQ(r.arch(), v1::ARCH_X86_64);
    EXPECT_GT(r.time().seconds(), 0);
  }

  // Up to date: nothing new to say.
  auto again = agent::SyncAndReport(Device(), Reporting(), &outcome);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(again->action, agent::SyncResult::Action::kUpToDate);
  EXPECT_EQ(Events(front_->fleet().reports()).size(), 2u);
}

TEST_F(ReportingTest, FailedSyncReportsItsReason) {
  agent::SyncOptions o = Device();
  o.trust_root_file.clear();  // a fresh dir without a root: NO_TRUST_ROOT
  agent::ReportingOutcome outcome;
  auto synced = agent::SyncAndReport(o, Reporting(), &outcome);
  EXPECT_EQ(ErrorReason(synced.status()), "NO_TRUST_ROOT");
  EXPECT_TRUE(outcome.sent.ok()) << outcome.sent;
  const auto reports = front_->fleet().reports();
  ASSERT_THAT(Events(reports), ElementsAre(v1::STATUS_EVENT_SYNC_FAILED));
  EXPECT_EQ(reports.back().reason(), "NO_TRUST_ROOT");
  EXPECT_EQ(reports.back().version(), "");  // no manifest was accepted
}

TEST_F(ReportingTest, FailureAfterTheManifestNamesItsVersionAndWaitsWhenUnreachable) {
  // The artifact's source is down (the real server moved away from the manifests' address).
  ::modeldist::testing::ReservedPort dead;
  server_.config().public_address = absl::StrCat("127.0.0.1:", dead.port());
  server_.Restart();
  front_ = std::make_unique<TestFleetServer>(server_.channel());
  agent::SyncOptions o = Device();
  o.download.retry.max_attempts = 2;
  agent::ReportingOutcome outcome;
  auto synced = agent::SyncAndReport(o, Reporting(), &outcome);
  ASSERT_FALSE(synced.ok());
  // The sync just failed to reach a source: its reports wait for the next sync.
  EXPECT_EQ(ErrorReason(outcome.sent), "REPORTS_DEFERRED");
  EXPECT_EQ(front_->fleet().calls(), 0);
  ASSERT_EQ(Queued(), 1);
  auto queue = agent::ReportQueue::Open(o.dir);
  ASSERT_TRUE(queue.ok());
  ASSERT_TRUE((*queue)->Send({.server = front_->address(), .device_id = "device-7"}).ok());
  const auto reports = front_->fleet().reports();
  ASSERT_THAT(Events(reports), ElementsAre(v1::STATUS_EVENT_SYNC_FAILED));
  EXPECT_EQ(reports.back().version(), version_);
  EXPECT_EQ(reports.back().reason(), ErrorReason(synced.status()).empty()
                                         ? absl::StatusCodeToString(synced.status().code())
                                         : ErrorReason(synced.status()));
}

TEST_F(ReportingTest, FleetServiceThatNeverAnswersDelaysASuccessfulSyncOnlyByTheDeadline) {
  front_->fleet().set_answer([](grpc::ServerContext* context, int, const v1::ReportStatusRequest&) {
    return Hang(context);
  });
  const absl::Time start = absl::Now();
  agent::ReportingOutcome outcome;
  auto synced = agent::SyncAndReport(Device(), Reporting(), &outcome);
  const absl::Duration took = absl::Now() - start;
  ASSERT_TRUE(synced.ok()) << synced.status();
  EXPECT_EQ(synced->action, agent::SyncResult::Action::kActivated);
  EXPECT_FALSE(outcome.sent.ok());
  EXPECT_GE(Queued(), 2);  // DOWNLOADED, VERIFIED (and the trial's own) kept
  // The sync of 3 MiB on loopback takes well under a second; the send is cut at 1 s.
  EXPECT_LT(took, absl::Seconds(3)) << took;
}

TEST_F(ReportingTest, ReportsOffOrNoDeviceIdQueueAndSendNothing) {
  agent::ReportingOptions off = Reporting();
  off.enabled = false;
  auto synced = agent::SyncAndReport(Device(), off);
  ASSERT_TRUE(synced.ok()) << synced.status();
  agent::SyncOptions anonymous = Device();
  anonymous.device_id.clear();
  anonymous.dir = dir_.Join("other");
  ASSERT_TRUE(agent::SyncAndReport(anonymous, Reporting()).ok());
  EXPECT_EQ(front_->fleet().calls(), 0);
  struct stat st;
  EXPECT_NE(::stat((Options().dir + "/reports/queue").c_str(), &st), 0);
}

TEST_F(ReportingTest, CApiReportsUnlessTurnedOff) {
  const std::string server = front_->address();
  const std::string dir = Options().dir;
  md_agent_config config = {};
  config.server = server.c_str();
  config.tier = "llama8b";
  config.dir = dir.c_str();
  config.trust_root_file = root_file_.c_str();
  config.platform = "linux";
  config.arch = "x86_64";
  config.device_id = "device-c";
  config.app_version = "9.9";
  config.no_reports = 1;
  md_agent* agent = md_agent_new(&config);
  ASSERT_NE(agent, nullptr);
  md_sync_result result = {};
  ASSERT_EQ(md_agent_sync(agent, nullptr, nullptr, &result), MD_OK) << md_agent_last_error(agent);
  md_agent_free(agent);
  EXPECT_EQ(front_->fleet().calls(), 0);

  server_.SetTier("llama8b", "", Publish("2", RandomBytes(1 << 20, 6)));
  config.no_reports = 0;
  agent = md_agent_new(&config);
  ASSERT_NE(agent, nullptr);
  ASSERT_EQ(md_agent_sync(agent, nullptr, nullptr, &result), MD_OK) << md_agent_last_error(agent);
  EXPECT_EQ(result.activated, 1);
  md_agent_free(agent);
  const auto batches = front_->fleet().batches();
  ASSERT_EQ(batches.size(), 1u);
  EXPECT_EQ(batches[0].device_id(), "device-c");
  EXPECT_EQ(batches[0].app_version(), "9.9");
  EXPECT_THAT(Events(front_->fleet().reports()),
              ElementsAre(v1::STATUS_EVENT_DOWNLOADED, v1::STATUS_EVENT_VERIFIED));
  EXPECT_EQ(front_->fleet().reports().back().version(), "models/llama/versions/2");
}

TEST_F(ReportingTest, CliSendsReportsWithItsAppVersionUnlessNoReports) {
  const std::vector<std::string> sync = {
      "sync",        "--server",     front_->address(), "--tier",     "llama8b", "--dir",
      Options().dir, "--trust-root", root_file_,        "--platform", "linux",   "--arch",
      "x86_64",      "--device-id",  "device-cli",      "--json"};
  std::vector<std::string> quiet = sync;
  quiet.push_back("--no-reports");
  AgentRun run = RunAgent(quiet, dir_.path());
  ASSERT_EQ(run.exit_code, 0) << run.err;
  EXPECT_EQ(front_->fleet().calls(), 0);

  server_.SetTier("llama8b", "", Publish("2", RandomBytes(1 << 20, 8)));
  std::vector<std::string> loud = sync;
  loud.insert(loud.end(), {"--app-version", "7.0"});
  run = RunAgent(loud, dir_.path());
  ASSERT_EQ(run.exit_code, 0) << run.err;
  EXPECT_EQ(JsonField(run.out, "action"), "activated");
  const auto batches = front_->fleet().batches();
  ASSERT_EQ(batches.size(), 1u);
  EXPECT_EQ(batches[0].device_id(), "device-cli");
  EXPECT_EQ(batches[0].app_version(), "7.0");
  EXPECT_THAT(Events(front_->fleet().reports()),
              ElementsAre(v1::STATUS_EVENT_DOWNLOADED, v1::STATUS_EVENT_VERIFIED));
}

}  // namespace
}  // namespace modeldist::testing
