// kill -9 trials of the trial transitions of the real modeldist-agent binary (trial.h): with
// version 1 confirmed and version 2 on trial, `confirm` (ends the trial), `confirm --failed`
// (rolls back) and `current` past the launch limit (rolls back) are SIGKILLed at a random
// moment. After every kill `current` names a complete version, 1 or 2 (2 for a confirmation:
// it never moves a link); then the app's restart (`current`) and, when the kill came before the
// transition took hold, the same command again run to completion, after which a rollback has
// left `current` on 1, the version confirmed before, with 2 rejected and no trial open, and a
// confirmation has left 2 confirmed.
//
// MODELDIST_AGENT_KILL_TRIALS sets the number of trials (default 60 here; tools/
// agent-kill-trials.sh runs 1,000); MODELDIST_AGENT_KILL_SEED replays a run.
#include <signal.h>
#include <sys/wait.h>

#include <array>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "client/agent/model_store.h"
#include "client/agent/trial_state.h"
#include "common/digest.h"
#include "common/file_util.h"
#include "gtest/gtest.h"
#include "tests/client/agent/agent_cli.h"
#include "tests/testing/child_process.h"
#include "tests/testing/test_util.h"

namespace modeldist::testing {
namespace {

namespace fs = std::filesystem;

constexpr int kDefaultTrials = 60;
// The kill delay is uniform in [kMin, kMax] × an uninterrupted run: the process start takes
// most of a run and the transition comes at its end, so the range leaves the start out.
constexpr double kMinDelayFactor = 0.6;
constexpr double kMaxDelayFactor = 1.1;
constexpr char kTier[] = "killtier";

enum Kind { kConfirm, kFailed, kLaunchLimit, kKinds };
constexpr std::array<const char*, kKinds> kKindNames = {"confirm", "confirm --failed",
                                                        "current past the launch limit"};

// Where a kill landed, judged from what it left (model_store.h, Trials).
enum Phase { kUntouched, kRejectedOnly, kLinkMovedRecordLeft, kDone, kPhases };
constexpr std::array<const char*, kPhases> kPhaseNames = {
    "before any change", "after the rejection, before the link", "after the link, record left",
    "transition complete"};

class AgentTrialKillTest : public ::testing::Test {
 protected:
  std::string Name(int n) const { return absl::StrCat("models/m/versions/", n); }
  std::string Bytes(int n) const { return RandomBytes(64 << 10, static_cast<uint32_t>(n)); }
  std::string DigestOf(int n) const { return FormatDigest(Sha256::HexOf(Bytes(n))); }

  // A fresh dir with 1 confirmed and 2 on trial (`launches` counted, at most `max_launches`).
  void Prepare(const std::string& dir, int64_t launches, int64_t max_launches) {
    absl::StatusOr<agent::ModelStore> store = agent::ModelStore::Open(dir);
    ASSERT_THAT(store, IsOk());
    for (int n : {1, 2}) {
      if (n == 2) store->StartTrials({kTier, "stable", absl::Now(), {max_launches, {}}});
      const std::string artifact = store->StagingDir() + "/artifact";
      MD_ASSERT_OK(WriteFileAtomically(artifact, Bytes(n), 0644));
      ASSERT_THAT(store->Activate(artifact, Name(n), DigestOf(n), v1::FORMAT_GGUF), IsOk());
    }
    std::optional<agent::TrialRecord> record = agent::ReadTrial(dir);
    ASSERT_TRUE(record.has_value());
    record->launches = launches;
    MD_ASSERT_OK(agent::WriteTrial(dir, *record));
  }

  std::vector<std::string> Args(Kind kind, const std::string& dir) const {
    std::vector<std::string> args = {AgentBinary(), kind == kLaunchLimit ? "current" : "confirm",
                                     "--dir",       dir,
                                     "--json",      "--platform",
                                     "linux",       "--arch",
                                     "x86_64"};
    if (kind == kFailed) args.insert(args.end(), {"--failed", "OUT_OF_MEMORY"});
    return args;
  }

  // Runs to completion; fails the test unless it exits 0.
  void Complete(const std::vector<std::string>& args) {
    AgentRun run =
        RunAgent(std::vector<std::string>(args.begin() + 1, args.end()), scratch_.path());
    EXPECT_EQ(run.exit_code, 0) << args[1] << ": " << run.out << run.err;
  }

  // `current` names a complete version whose model is 1's or 2's bytes; returns which (0 on
  // failure).
  int CheckCurrent(const std::string& dir) {
    absl::StatusOr<agent::ModelStore> store = agent::ModelStore::Open(dir);
    if (!store.ok()) {
      ADD_FAILURE() << store.status();
      return 0;
    }
    std::optional<agent::InstalledVersion> current = store->Current();
    if (!current) {
      ADD_FAILURE() << "no complete current version";
      return 0;
    }
    for (int n : {1, 2}) {
      if (current->version != Name(n)) continue;
      absl::StatusOr<std::string> bytes = ReadFileToString(current->path);
      EXPECT_TRUE(bytes.ok() && *bytes == Bytes(n)) << "current's model is not " << Name(n);
      return n;
    }
    ADD_FAILURE() << "current is " << current->version;
    return 0;
  }

  ScratchDir scratch_;
};

TEST_F(AgentTrialKillTest, KilledConfirmAndRollbackLeaveAConfirmedCompleteVersion) {
  const int trials = KillTrialsFromEnv(kDefaultTrials);
  const uint64_t seed = KillSeedFromEnv();
  std::cout << "agent trial kill trials: " << trials << ", seed " << seed
            << " (replay: MODELDIST_AGENT_KILL_SEED=" << seed << ")" << std::endl;
  std::mt19937_64 rng(seed);

  // How long each command takes uninterrupted (process start to exit) on this machine.
  std::array<int64_t, kKinds> full_us{};
  for (int k = 0; k < kKinds; ++k) {
    const Kind kind = static_cast<Kind>(k);
    const std::string dir = scratch_.Join(absl::StrCat("measure-", k));
    ASSERT_NO_FATAL_FAILURE(Prepare(dir, 1, kind == kLaunchLimit ? 1 : 0));
    const auto start = std::chrono::steady_clock::now();
    Complete(Args(kind, dir));
    full_us[k] = std::chrono::duration_cast<std::chrono::microseconds>(
                     std::chrono::steady_clock::now() - start)
                     .count();
    ASSERT_EQ(CheckCurrent(dir), kind == kConfirm ? 2 : 1);
  }

  std::array<std::array<int, kPhases>, kKinds> landed{};
  for (int trial = 0; trial < trials; ++trial) {
    const Kind kind = static_cast<Kind>(trial % kKinds);
    const std::string dir = scratch_.Join(absl::StrCat("trial-", trial));
    ASSERT_NO_FATAL_FAILURE(Prepare(dir, 1, kind == kLaunchLimit ? 1 : 0));
    const int64_t delay = std::uniform_int_distribution<int64_t>(
        static_cast<int64_t>(kMinDelayFactor * static_cast<double>(full_us[kind])),
        static_cast<int64_t>(kMaxDelayFactor * static_cast<double>(full_us[kind])))(rng);
    SCOPED_TRACE(absl::StrCat("trial ", trial, " of seed ", seed, ": ", kKindNames[kind],
                              " killed after ", delay, " us"));
    int status = 0;
    {
      ChildProcess agent;
      ASSERT_TRUE(agent.Start(Args(kind, dir), {.stdout_path = scratch_.Join("kill.out"),
                                                .stderr_path = scratch_.Join("kill.err")}));
      std::this_thread::sleep_for(std::chrono::microseconds(delay));
      status = agent.KillAndReap();
    }
    ASSERT_TRUE(WIFSIGNALED(status) || (WIFEXITED(status) && WEXITSTATUS(status) == 0))
        << DescribeExit(status);

    // No third state, and a confirmation never moves a link.
    const int current = CheckCurrent(dir);
    ASSERT_NE(current, 0);
    if (kind == kConfirm) {
      EXPECT_EQ(current, 2);
    }
    const bool record = agent::ReadTrial(dir).has_value();
    const bool rejected = agent::FindRejected(dir, kTier, "stable").has_value();
    Phase phase = kUntouched;
    if (kind == kConfirm) {
      phase = record ? kUntouched : kDone;
    } else if (current == 2) {
      phase = rejected ? kRejectedOnly : kUntouched;
    } else {
      phase = record ? kLinkMovedRecordLeft : kDone;
    }
    ++landed[kind][phase];

    // The app restarts (a launch query), then repeats what was killed if it did not take hold.
    Complete({AgentBinary(), "current", "--dir", dir, "--json"});
    if (kind == kFailed && phase == kUntouched) Complete(Args(kind, dir));
    if (kind == kConfirm && phase == kUntouched) Complete(Args(kind, dir));
    ASSERT_FALSE(HasFailure());

    EXPECT_FALSE(agent::ReadTrial(dir).has_value()) << "a trial is still open";
    if (kind == kConfirm) {
      EXPECT_EQ(CheckCurrent(dir), 2);
      EXPECT_FALSE(agent::FindRejected(dir, kTier, "stable").has_value());
    } else {
      EXPECT_EQ(CheckCurrent(dir), 1) << "not back on the version confirmed before";
      std::optional<agent::Rejected> r = agent::FindRejected(dir, kTier, "stable");
      EXPECT_TRUE(r.has_value() && r->digest == DigestOf(2));
      EXPECT_EQ(fs::read_symlink(dir + "/previous").string(),
                fs::read_symlink(dir + "/current").string())
          << "previous must stay the confirmed version";
    }
    ASSERT_FALSE(HasFailure());
    fs::remove_all(dir);
  }

  for (int k = 0; k < kKinds; ++k) {
    std::cout << kKindNames[k] << " (uninterrupted " << full_us[k] / 1000 << " ms):";
    for (int p = 0; p < kPhases; ++p) std::cout << "  " << kPhaseNames[p] << " " << landed[k][p];
    std::cout << "\n";
  }
  std::cout << std::flush;
}

}  // namespace
}  // namespace modeldist::testing
