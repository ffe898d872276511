// A health-gated rollout against the real modeldist-server binary and a simulated fleet
// (issue 15, "Tests and figures"): 3000 device ids, half arm64 and half x86_64 Macs, all on
// v1; a rollout of v2 to 50 % with a load-failure gate; 30 % of the x86_64 devices cannot
// load v2. The fleet syncs in waves; the test checks that the rollout pauses by itself as soon
// as the gate has its sample, that the failing devices are back on v1 and stay there, that the
// healthy ones keep what they run, that the audit log says what happened, and that the
// server's figures match what the devices sent. Real agents (the C ABI of client/agent) take
// part on their own directories: on x86_64 their app cannot load v2, on arm64 it can.
#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <chrono>
#include <iostream>
#include <map>
#include <memory>
#include <regex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/file_util.h"
#include "gtest/gtest.h"
#include "modeldist/v1/registry.grpc.pb.h"
#include "tests/e2e/agent_app.h"
#include "tests/e2e/e2e_client.h"
#include "tests/e2e/simulated_fleet.h"
#include "tests/testing/server_process.h"
#include "tests/testing/test_util.h"

namespace modeldist::e2e {
namespace {

constexpr char kToken[] = "fleet-simulation-token-0123456789";
constexpr char kModel[] = "fleet-model";
constexpr char kTier[] = "fleet";
constexpr char kV1[] = "models/fleet-model/versions/v1";
constexpr char kV2[] = "models/fleet-model/versions/v2";
constexpr int kDevices = 3000;
constexpr int kRolloutBp = 5000;
// The gate: pause once more than 5 % of v2's load results are failures, judged from 200 on.
constexpr int kMaxLoadFailureBp = 500;
constexpr int kMinReports = 200;
// Three in every ten x86_64 devices (in id order) fail to load v2: 30 % of them, so about
// 15 % of the cohort's load results, three times the limit.
constexpr int kFailingPerTenX86 = 3;
// Devices per wave. A device sends at most one load result per wave, so a wave adds at most
// this many reports to the gate's sample.
constexpr int kWaveDevices = 100;
constexpr int kThreads = 4;
// Real agents per arch. Which of them are in the cohort follows from their ids and the
// rollout's id (`r-1` on a new server): these ids put at least one of each arch in it.
constexpr int kAgentsPerArch = 3;
// How often the server's autopilot judges the gates in this test (--rollout-check-interval;
// it also runs soon after reports arrive), and how long the test waits for a judgement it
// expects (many periods: the machine may be busy).
constexpr char kAutopilotInterval[] = "100ms";
constexpr auto kTripWait = std::chrono::seconds(10);

// Admin rpcs the e2e client does not have, each with the token and a deadline.
class Admin {
 public:
  explicit Admin(const std::shared_ptr<grpc::Channel>& channel)
      : registry_(v1::RegistryService::NewStub(channel)) {}

  std::unique_ptr<grpc::ClientContext> Context() const {
    auto context = std::make_unique<grpc::ClientContext>();
    context->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(20));
    context->AddMetadata("authorization", absl::StrCat("Bearer ", kToken));
    return context;
  }
  v1::RegistryService::Stub& operator*() const { return *registry_; }
  v1::RegistryService::Stub* operator->() const { return registry_.get(); }

 private:
  std::unique_ptr<v1::RegistryService::Stub> registry_;
};

// Whether the gate must trip on these load results of v2 (the autopilot's rule, exactly).
bool ShouldTrip(int64_t failed, int64_t loads) {
  return loads >= kMinReports && failed * 10000 > int64_t{kMaxLoadFailureBp} * loads;
}

// The reports a real agent sends about a version it activates on trial: DOWNLOADED and
// VERIFIED (reporting.h), ACTIVATED, then LOAD_CONFIRMED, or LOAD_FAILED and ROLLED_BACK
// (trial.h).
void CountAgentTrial(const std::string& version, bool load_failed, Tally* sent) {
  for (v1::StatusEvent event :
       {v1::STATUS_EVENT_DOWNLOADED, v1::STATUS_EVENT_VERIFIED, v1::STATUS_EVENT_ACTIVATED}) {
    ++sent->events[{version, event}];
  }
  if (load_failed) {
    ++sent->events[{version, v1::STATUS_EVENT_LOAD_FAILED}];
    ++sent->events[{version, v1::STATUS_EVENT_ROLLED_BACK}];
  } else {
    ++sent->events[{version, v1::STATUS_EVENT_LOAD_CONFIRMED}];
  }
}

class FleetSimulationTest : public ::testing::Test {
 protected:
  void SetUp() override {
    MD_ASSERT_OK(
        WriteFileAtomically(scratch_.Join("admin.token"), absl::StrCat(kToken, "\n"), 0600));
    server_ = std::make_unique<testing::ServerProcess>(
        testing::BuildDir() + "/services/modeldist-server", scratch_.Join("data"),
        scratch_.Join("admin.token"), scratch_.path(),
        std::vector<std::string>{"--log-level", "warn", "--rollout-check-interval",
                                 kAutopilotInterval});
    ASSERT_TRUE(server_->Start());
    channel_ = grpc::CreateChannel(server_->address(), grpc::InsecureChannelCredentials());
    admin_ = std::make_unique<Admin>(channel_);
    rpcs_ = std::make_unique<FleetRpcs>(channel_, kTier);
    ASSERT_NO_FATAL_FAILURE(PublishVersions());
  }

  void TearDown() override { server_->Kill(); }

  // v1 and v2 of kModel, each a small GGUF per Mac arch; the tier bound to v1.
  void PublishVersions() {
    E2eClient client(server_->address(), kToken);
    ASSERT_TRUE(client.CreateModel(kModel).ok());
    uint32_t seed = 0;
    for (const char* version : {"v1", "v2"}) {
      v1::CreateVersionRequest request;
      request.set_parent(absl::StrCat("models/", kModel));
      request.set_version_id(version);
      const std::string name = absl::StrCat("models/", kModel, "/versions/", version);
      std::vector<std::string> blobs;
      for (v1::Arch arch : {v1::ARCH_ARM64, v1::ARCH_X86_64}) {
        blobs.push_back(testing::RandomBytes(4096, ++seed));
        digests_[{name, arch}] = DigestOf(blobs.back());
        v1::Artifact* a = request.add_artifacts();
        a->set_platform(v1::PLATFORM_MACOS);
        a->set_arch(arch);
        a->set_format(v1::FORMAT_GGUF);
        a->set_digest(DigestOf(blobs.back()));
        a->set_size_bytes(static_cast<int64_t>(blobs.back().size()));
      }
      v1::Version created;
      grpc::Status s = (*admin_)->CreateVersion(admin_->Context().get(), request, &created);
      ASSERT_TRUE(s.ok()) << StatusText(s);
      for (const std::string& blob : blobs) {
        s = client.WriteArtifact(DigestOf(blob), blob);
        ASSERT_TRUE(s.ok()) << StatusText(s);
      }
      s = client.PublishVersion(created.name(), &created);
      ASSERT_TRUE(s.ok()) << StatusText(s);
    }
    v1::TierBinding binding;
    grpc::Status s = client.SetTier(kTier, kV1, &binding);
    ASSERT_TRUE(s.ok()) << StatusText(s);
  }

  // dev-0001 .. dev-3000: odd numbers arm64, even numbers x86_64.
  static std::vector<SimDevice> MakeFleet() {
    std::vector<SimDevice> devices(kDevices);
    for (int i = 0; i < kDevices; ++i) {
      SimDevice& d = devices[i];
      d.id = absl::StrFormat("dev-%04d", i + 1);
      d.arch = i % 2 == 0 ? v1::ARCH_ARM64 : v1::ARCH_X86_64;
      if (d.arch == v1::ARCH_X86_64 && (i / 2) % 10 < kFailingPerTenX86) d.fails_to_load = kV2;
    }
    return devices;
  }

  grpc::Status StartRollout(v1::Rollout* out) {
    v1::StartRolloutRequest request;
    request.set_tier(kTier);
    request.set_to_version(kV2);
    request.set_basis_points(kRolloutBp);
    v1::RolloutPolicy* policy = request.mutable_policy();
    policy->set_max_load_failure_bp(kMaxLoadFailureBp);
    policy->set_min_reports(kMinReports);
    policy->set_on_trip(v1::RolloutPolicy::PAUSE);
    return (*admin_)->StartRollout(admin_->Context().get(), request, out);
  }

  grpc::Status RolloutStatus(v1::RolloutStatus* out) {
    v1::RolloutRequest request;
    request.set_tier(kTier);
    return (*admin_)->GetRolloutStatus(admin_->Context().get(), request, out);
  }

  // Polls GetRolloutStatus until the rollout is PAUSED or kTripWait passed.
  void AwaitPause(v1::RolloutStatus* status) {
    const auto deadline = std::chrono::steady_clock::now() + kTripWait;
    do {
      grpc::Status s = RolloutStatus(status);
      ASSERT_TRUE(s.ok()) << StatusText(s);
      if (status->rollout().state() == v1::Rollout::PAUSED) return;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    } while (std::chrono::steady_clock::now() < deadline);
  }

  // Real agents on v1: each downloads it, and its app loads and confirms it. Their apps on
  // x86_64 cannot load v2's x86_64 artifact.
  void StartAgentsOnV1() {
    auto manifests = v1::ManifestService::NewStub(channel_);
    v1::GetTrustRootRequest request;
    request.set_version(1);
    v1::SignedTrustRoot root;
    grpc::ClientContext context;
    grpc::Status s = manifests->GetTrustRoot(&context, request, &root);
    ASSERT_TRUE(s.ok()) << StatusText(s);
    MD_ASSERT_OK(WriteFileAtomically(scratch_.Join("root.bin"), root.SerializeAsString(), 0644));
    for (v1::Arch arch : {v1::ARCH_ARM64, v1::ARCH_X86_64}) {
      for (int i = 1; i <= kAgentsPerArch; ++i) {
        SimDevice& d = agent_devices_.emplace_back();
        d.id = absl::StrCat("mac-", v1::Arch_Name(arch), "-", i);
        d.arch = arch;
        agents_.push_back(std::make_unique<AgentApp>(
            server_->address(), kTier, scratch_.Join(d.id), scratch_.Join("root.bin"), d.id, arch,
            arch == v1::ARCH_X86_64 ? digests_[{kV2, arch}] : ""));
      }
    }
    for (size_t i = 0; i < agents_.size(); ++i) {
      bool activated = false;
      ASSERT_TRUE(agents_[i]->Sync(&agent_devices_[i].version, &activated));
      ASSERT_TRUE(activated);
      ASSERT_EQ(agent_devices_[i].version, kV1);
      ASSERT_NO_FATAL_FAILURE(ExpectLaunch(i, false));
      CountAgentTrial(kV1, false, &sent_);
      agent_devices_[i].counted_version = kV1;
    }
  }

  // The real agents sync once the rollout started: those in the cohort activate v2 on
  // trial; an x86_64 app fails to load it and its agent rolls back to v1. The next sync sends
  // the reports and does not install v2 again while the manifest names it.
  void AgentsTryV2() {
    std::map<v1::Arch, int> in_cohort;
    for (size_t i = 0; i < agents_.size(); ++i) {
      SimDevice& d = agent_devices_[i];
      bool activated = false;
      ASSERT_TRUE(agents_[i]->Sync(&d.version, &activated));
      if (!activated) {
        EXPECT_EQ(d.version, kV1) << d.id;
        continue;
      }
      ASSERT_EQ(d.version, kV2) << d.id;
      const bool fails = d.arch == v1::ARCH_X86_64;
      ASSERT_NO_FATAL_FAILURE(ExpectLaunch(i, fails));
      ASSERT_TRUE(agents_[i]->Sync(&d.version, &activated));
      EXPECT_FALSE(activated) << d.id;
      EXPECT_EQ(d.version, fails ? kV1 : kV2) << d.id;
      CountAgentTrial(kV2, fails, &sent_);
      d.counted_version = kV2;
      d.counted_rolled_back = fails;
      ++in_cohort[d.arch];
    }
    ASSERT_GT(in_cohort[v1::ARCH_ARM64], 0) << "no arm64 agent in the cohort: change the ids";
    ASSERT_GT(in_cohort[v1::ARCH_X86_64], 0) << "no x86_64 agent in the cohort: change the ids";
  }

  // One app start of agent `i`: it loads what its device runs (agent_devices_[i].version),
  // after a failure to load v2 when `fails`.
  void ExpectLaunch(size_t i, bool fails) {
    const SimDevice& d = agent_devices_[i];
    LaunchResult launch;
    ASSERT_TRUE(agents_[i]->Launch(&launch));
    EXPECT_EQ(launch.load_failed, fails) << d.id;
    const std::string version = fails ? kV1 : d.version;
    EXPECT_EQ(launch.loaded, digests_[std::make_pair(version, d.arch)]) << d.id;
  }

  // Syncs the simulated fleet in waves. After each wave the test asks whether the gate must
  // have tripped by now (ShouldTrip on what was sent) and, if so, waits for the pause before
  // the next wave. The bound checked: the rollout is PAUSED before any device beyond the wave
  // in which v2's load results reached min_reports syncs, so the gate judged on at most
  // min_reports + kWaveDevices results (300 here, of ~1500 had it not tripped); and a pause
  // seen while fewer than min_reports were sent fails the test. Returns the load results
  // sent when the pause was seen; the rest of the fleet then syncs too.
  int64_t SyncInWavesUntilPaused() {
    int64_t loads_at_pause = -1;
    for (size_t begin = 0; begin < devices_.size(); begin += kWaveDevices) {
      const size_t end = std::min(devices_.size(), begin + kWaveDevices);
      grpc::Status s = SyncDevices(*rpcs_, &devices_, begin, end, kThreads, &sent_);
      EXPECT_TRUE(s.ok()) << StatusText(s);
      if (!s.ok() || loads_at_pause >= 0) continue;
      const int64_t failed = sent_.Count(kV2, v1::STATUS_EVENT_LOAD_FAILED);
      const int64_t loads = failed + sent_.Count(kV2, v1::STATUS_EVENT_LOAD_CONFIRMED);
      v1::RolloutStatus status;
      s = RolloutStatus(&status);
      EXPECT_TRUE(s.ok()) << StatusText(s);
      if (status.rollout().state() == v1::Rollout::PAUSED) {
        EXPECT_GE(loads, kMinReports) << "the gate judged before it had min_reports results: "
                                      << status.rollout().state_reason();
        loads_at_pause = loads;
      } else if (ShouldTrip(failed, loads)) {
        AwaitPause(&status);
        EXPECT_EQ(status.rollout().state(), v1::Rollout::PAUSED)
            << "still " << v1::Rollout::State_Name(status.rollout().state()) << " after " << failed
            << " of " << loads << " load results failed";
        loads_at_pause = loads;
      }
      if (loads_at_pause >= 0) {
        pause_reason_ = status.rollout().state_reason();
        std::cout << "paused with " << loads
                  << " load results of v2 sent: " << status.rollout().state_reason() << "\n";
      }
    }
    return loads_at_pause;
  }

  void ExpectPausedByTheGate() {
    v1::RolloutStatus status;
    grpc::Status s = RolloutStatus(&status);
    ASSERT_TRUE(s.ok()) << StatusText(s);
    EXPECT_EQ(status.rollout().state(), v1::Rollout::PAUSED);
    EXPECT_EQ(status.rollout().basis_points(), kRolloutBp);
    EXPECT_TRUE(absl::StrContains(status.rollout().state_reason(), "load_failure"))
        << status.rollout().state_reason();
    const int64_t failed = sent_.Count(kV2, v1::STATUS_EVENT_LOAD_FAILED);
    const int64_t loads = failed + sent_.Count(kV2, v1::STATUS_EVENT_LOAD_CONFIRMED);
    const v1::RolloutHealth& health = status.to_version();
    EXPECT_EQ(health.activated(), sent_.Count(kV2, v1::STATUS_EVENT_ACTIVATED));
    EXPECT_EQ(health.load_confirmed(), sent_.Count(kV2, v1::STATUS_EVENT_LOAD_CONFIRMED));
    EXPECT_EQ(health.load_failed(), failed);
    EXPECT_EQ(health.rolled_back(), sent_.Count(kV2, v1::STATUS_EVENT_ROLLED_BACK));
    EXPECT_EQ(health.load_failure_bp(), failed * 10000 / loads);
    ASSERT_GE(status.gates_size(), 1);
    const v1::GateState& gate = status.gates(0);
    EXPECT_EQ(gate.name(), "load_failure");
    EXPECT_EQ(gate.verdict(), v1::GateState::TRIPPED);
    EXPECT_EQ(gate.max_bp(), kMaxLoadFailureBp);
    EXPECT_EQ(gate.min_reports(), kMinReports);
    EXPECT_EQ(gate.reports(), loads);
    EXPECT_EQ(gate.observed_bp(), failed * 10000 / loads);

    // The audit log: one entry by the gate, naming it and the rate it saw.
    v1::ListAuditLogRequest request;
    request.set_page_size(100);
    v1::ListAuditLogResponse response;
    s = (*admin_)->ListAuditLog(admin_->Context().get(), request, &response);
    ASSERT_TRUE(s.ok()) << StatusText(s);
    int by_gate = 0;
    for (const v1::AuditEntry& entry : response.entries()) {
      if (entry.actor() != "gate") continue;
      ++by_gate;
      std::cout << "audit: " << entry.action() << " " << entry.resource() << ": " << entry.details()
                << "\n";
      EXPECT_TRUE(absl::StrContains(entry.resource(), kTier)) << entry.resource();
      EXPECT_TRUE(absl::StrContains(entry.details(), "load_failure")) << entry.details();
      EXPECT_TRUE(std::regex_search(entry.details(), std::regex("[0-9]+ ?bp"))) << entry.details();
    }
    EXPECT_EQ(by_gate, 1);
  }

  // GetFleetSummary counts what every device sent: reports per version and event, and each
  // device once, at its newest version.
  void ExpectSummaryOfWhatWasSent() {
    v1::GetFleetSummaryRequest request;
    request.set_tier(kTier);
    v1::FleetSummary summary;
    grpc::Status s = (*admin_)->GetFleetSummary(admin_->Context().get(), request, &summary);
    ASSERT_TRUE(s.ok()) << StatusText(s);
    Tally reported;
    for (const v1::EventCount& e : summary.events()) {
      reported.events[{e.version(), e.event()}] += e.count();
    }
    EXPECT_EQ(reported.events, sent_.events);
    DeviceCounts counted;
    for (const v1::FieldVersion& v : summary.versions()) {
      counted[{v.version(), v.arch(), v.rolled_back()}] += v.devices();
    }
    std::vector<SimDevice> all = devices_;
    all.insert(all.end(), agent_devices_.begin(), agent_devices_.end());
    EXPECT_EQ(counted, CountDevices(all));
  }

  testing::ScratchDir scratch_;
  std::unique_ptr<testing::ServerProcess> server_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<Admin> admin_;
  std::unique_ptr<FleetRpcs> rpcs_;
  // The artifact digest of each (version, arch).
  std::map<std::pair<std::string, v1::Arch>, std::string> digests_;
  std::vector<SimDevice> devices_ = MakeFleet();
  // The real agents, and what their devices run and how the summary counts them.
  std::vector<std::unique_ptr<AgentApp>> agents_;
  std::vector<SimDevice> agent_devices_;
  // Every report sent, by the simulated devices and the agents.
  Tally sent_;
  // Rollout.state_reason when the pause was seen.
  std::string pause_reason_;
};

TEST_F(FleetSimulationTest, GatePausesTheRolloutAndFailingDevicesRollBack) {
  // The whole fleet on v1 before the rollout.
  grpc::Status s = SyncDevices(*rpcs_, &devices_, 0, devices_.size(), kThreads, &sent_);
  ASSERT_TRUE(s.ok()) << StatusText(s);
  ASSERT_EQ(sent_.Count(kV1, v1::STATUS_EVENT_LOAD_CONFIRMED), kDevices);
  ASSERT_NO_FATAL_FAILURE(StartAgentsOnV1());

  v1::Rollout rollout;
  s = StartRollout(&rollout);
  ASSERT_TRUE(s.ok()) << StatusText(s);
  ASSERT_EQ(rollout.state(), v1::Rollout::ACTIVE);
  ASSERT_NO_FATAL_FAILURE(AgentsTryV2());

  const auto start = std::chrono::steady_clock::now();
  const int64_t loads_at_pause = SyncInWavesUntilPaused();
  ASSERT_GE(loads_at_pause, kMinReports) << "the rollout never paused";
  EXPECT_LE(loads_at_pause, kMinReports + kWaveDevices);
  // The sample the gate judged on ("load_failure 1590 bp > 500 bp over 220 reports"):
  // enough reports, and none the test sent after it expected the pause.
  std::smatch judged;
  ASSERT_TRUE(std::regex_search(pause_reason_, judged, std::regex("over ([0-9]+) reports")))
      << pause_reason_;
  EXPECT_GE(std::stoll(judged[1]), kMinReports);
  EXPECT_LE(std::stoll(judged[1]), loads_at_pause);
  std::cout << "3000 devices synced in "
            << std::chrono::duration_cast<std::chrono::milliseconds>(
                   std::chrono::steady_clock::now() - start)
                   .count()
            << " ms\n";

  // Another sync of every device changes nothing: the paused rollout keeps its cohort on v2
  // (the healthy devices keep it), the others on v1, and a device whose trial of v2 failed
  // does not try it again while the manifest names it.
  Tally again;
  s = SyncDevices(*rpcs_, &devices_, 0, devices_.size(), kThreads, &again);
  ASSERT_TRUE(s.ok()) << StatusText(s);
  EXPECT_EQ(again.report_calls, 0) << "a device changed version after the pause";
  int64_t on_v2 = 0, rolled_back = 0;
  for (const SimDevice& d : devices_) {
    if (d.fails_to_load == kV2) {
      EXPECT_EQ(d.version, kV1) << d.id;
    }
    on_v2 += d.version == kV2;
    rolled_back += d.counted_rolled_back;
  }
  std::cout << on_v2 << " simulated devices on v2, " << rolled_back << " rolled back to v1, "
            << kDevices - on_v2 - rolled_back << " never offered v2\n";
  EXPECT_GT(rolled_back, 0);
  EXPECT_GT(on_v2, kDevices / 4) << "the cohort lost v2";
  for (size_t i = 0; i < agents_.size(); ++i) {
    SimDevice& d = agent_devices_[i];
    const std::string before = d.version;
    bool activated = false;
    ASSERT_TRUE(agents_[i]->Sync(&d.version, &activated));
    EXPECT_FALSE(activated) << d.id;
    EXPECT_EQ(d.version, before) << d.id;
    ASSERT_NO_FATAL_FAILURE(ExpectLaunch(i, false));
  }

  ExpectPausedByTheGate();
  ExpectSummaryOfWhatWasSent();
}

}  // namespace
}  // namespace modeldist::e2e
