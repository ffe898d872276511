// Trial activation (client/agent/trial.h) on a real file system: a version activated on trial
// is rolled back to the last confirmed one when the app reports a failure, or stays silent past
// its launch or time limit (a fake clock); a confirmation keeps it; activating while a trial is
// open keeps `previous` on the confirmed version; a failed first install leaves no model; and
// the states a crash leaves between the steps of each transition (model_store.h, Trials) are
// recovered to a complete, confirmed `current`.
#include "client/agent/trial.h"

#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "client/agent/model_store.h"
#include "client/agent/report_queue.h"
#include "client/agent/trial_state.h"
#include "common/digest.h"
#include "common/file_util.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/test_util.h"

namespace modeldist::agent {
namespace {

namespace fs = std::filesystem;
using ::modeldist::testing::HasReason;
using ::modeldist::testing::IsOk;
using ::modeldist::testing::RandomBytes;
using ::modeldist::testing::ScratchDir;

constexpr char kTier[] = "llama8b";
constexpr char kChannel[] = "stable";
const absl::Time kT0 = absl::FromUnixSeconds(1'800'000'000);

class TrialTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::StatusOr<ModelStore> store = ModelStore::Open(dir_);
    ASSERT_THAT(store, IsOk());
    store_.emplace(*std::move(store));
    options_.dir = dir_;
    options_.tier = kTier;
    options_.channel = kChannel;
    options_.platform = v1::PLATFORM_LINUX;
    options_.arch = v1::ARCH_X86_64;
    options_.now = [this] { return now_; };
  }

  std::string Name(int n) const { return absl::StrCat("models/llama/versions/", n); }
  std::string Bytes(int n) const { return RandomBytes(1000 + n, static_cast<uint32_t>(n)); }
  std::string DigestOf(int n) const { return FormatDigest(Sha256::HexOf(Bytes(n))); }

  // Activates version `n`; on trial (with `limits`) unless `trial` is false.
  InstalledVersion Activate(int n, bool trial = true, TrialLimits limits = {}) {
    if (trial) store_->StartTrials({kTier, kChannel, now_, limits});
    const std::string artifact = store_->StagingDir() + "/artifact";
    EXPECT_THAT(WriteFileAtomically(artifact, Bytes(n), 0644), IsOk());
    absl::StatusOr<InstalledVersion> installed =
        store_->Activate(artifact, Name(n), DigestOf(n), v1::FORMAT_GGUF);
    EXPECT_THAT(installed, IsOk());
    return installed.ok() ? *installed : InstalledVersion{};
  }

  std::string CurrentVersion() const {
    std::optional<InstalledVersion> current = store_->Current();
    return current ? current->version : "none";
  }
  std::string PreviousVersion() const {
    std::optional<InstalledVersion> previous = store_->Previous();
    return previous ? previous->version : "none";
  }
  int64_t Queued() const {
    absl::StatusOr<std::unique_ptr<ReportQueue>> queue = ReportQueue::Open(dir_);
    return queue.ok() ? (*queue)->size() : -1;
  }

  ScratchDir scratch_;
  const std::string dir_ = scratch_.Join("models");
  std::optional<ModelStore> store_;
  TrialOptions options_;
  absl::Time now_ = kT0;
};

TEST_F(TrialTest, ReportedFailureRollsBackToTheConfirmedVersionAndRejectsTheDigest) {
  Activate(1, /*trial=*/false);
  const InstalledVersion two = Activate(2);
  EXPECT_EQ(CurrentVersion(), Name(2));
  EXPECT_EQ(PreviousVersion(), Name(1));
  std::optional<TrialRecord> record = ReadTrial(dir_);
  ASSERT_TRUE(record.has_value());
  EXPECT_EQ(record->key, two.key);
  EXPECT_EQ(record->tier, kTier);
  EXPECT_EQ(record->confirmed, store_->Previous()->key);

  absl::StatusOr<TrialState> failed = ReportLoadFailed(options_, "OUT_OF_MEMORY", two.path);
  ASSERT_THAT(failed, IsOk());
  ASSERT_TRUE(failed->rolled_back.has_value());
  EXPECT_EQ(failed->rolled_back->version, Name(2));
  EXPECT_EQ(failed->rollback_reason, "LOAD_FAILED");
  EXPECT_EQ(failed->report_error, "");
  EXPECT_EQ(CurrentVersion(), Name(1));
  EXPECT_EQ(failed->current->version, Name(1));
  EXPECT_FALSE(ReadTrial(dir_).has_value());
  std::optional<Rejected> rejected = FindRejected(dir_, kTier, kChannel);
  ASSERT_TRUE(rejected.has_value());
  EXPECT_EQ(rejected->digest, DigestOf(2));
  EXPECT_EQ(rejected->reason, "LOAD_FAILED");
  EXPECT_EQ(Queued(), 2) << "LOAD_FAILED and ROLLED_BACK";

  // The next launch loads the confirmed version, and counts nothing (no trial).
  absl::StatusOr<TrialState> launch = LaunchCurrent(options_);
  ASSERT_THAT(launch, IsOk());
  EXPECT_EQ(launch->current->version, Name(1));
  EXPECT_FALSE(launch->on_trial);
}

TEST_F(TrialTest, SilencePastTheLaunchLimitRollsBackOnTheNextLaunch) {
  Activate(1, /*trial=*/false);
  Activate(2, /*trial=*/true, {.max_launches = 2});
  for (int launch = 1; launch <= 2; ++launch) {
    absl::StatusOr<TrialState> state = LaunchCurrent(options_);
    ASSERT_THAT(state, IsOk());
    EXPECT_EQ(state->current->version, Name(2));
    EXPECT_TRUE(state->on_trial);
    EXPECT_EQ(state->record.launches, launch);
  }
  // A sync between launches judges time only: the app may still be loading.
  ASSERT_THAT(SettleTrial(options_), IsOk());
  EXPECT_EQ(CurrentVersion(), Name(2));

  absl::StatusOr<TrialState> third = LaunchCurrent(options_);
  ASSERT_THAT(third, IsOk());
  EXPECT_EQ(third->current->version, Name(1));
  EXPECT_EQ(third->rollback_reason, "TRIAL_LAUNCH_LIMIT");
  EXPECT_EQ(CurrentVersion(), Name(1));
  EXPECT_EQ(FindRejected(dir_, kTier, kChannel)->digest, DigestOf(2));
}

TEST_F(TrialTest, SilencePastTheTimeLimitRollsBackOnTheNextSyncOrLaunch) {
  Activate(1, /*trial=*/false);
  Activate(2, /*trial=*/true, {.timeout = absl::Hours(1)});
  now_ = kT0 + absl::Minutes(59);
  absl::StatusOr<TrialState> early = SettleTrial(options_);
  ASSERT_THAT(early, IsOk());
  EXPECT_TRUE(early->on_trial);
  EXPECT_EQ(CurrentVersion(), Name(2));

  now_ = kT0 + absl::Hours(1);
  absl::StatusOr<TrialState> late = SettleTrial(options_);
  ASSERT_THAT(late, IsOk());
  ASSERT_TRUE(late->rolled_back.has_value());
  EXPECT_EQ(late->rollback_reason, "TRIAL_EXPIRED");
  EXPECT_EQ(CurrentVersion(), Name(1));
  EXPECT_FALSE(ReadTrial(dir_).has_value());
}

TEST_F(TrialTest, ConfirmationKeepsTheVersionPastEveryLimit) {
  Activate(1, /*trial=*/false);
  const InstalledVersion two =
      Activate(2, /*trial=*/true, {.max_launches = 1, .timeout = absl::Minutes(5)});
  ASSERT_THAT(LaunchCurrent(options_), IsOk());
  absl::StatusOr<TrialState> confirmed = ConfirmLoaded(options_, two.path);
  ASSERT_THAT(confirmed, IsOk());
  EXPECT_TRUE(confirmed->confirmed);
  EXPECT_FALSE(ReadTrial(dir_).has_value());
  EXPECT_EQ(Queued(), 1) << "LOAD_CONFIRMED";
  // Idempotent.
  absl::StatusOr<TrialState> again = ConfirmLoaded(options_);
  ASSERT_THAT(again, IsOk());
  EXPECT_FALSE(again->confirmed);

  now_ = kT0 + absl::Hours(100);
  for (int i = 0; i < 5; ++i) {
    absl::StatusOr<TrialState> launch = LaunchCurrent(options_);
    ASSERT_THAT(launch, IsOk());
    EXPECT_EQ(launch->current->version, Name(2));
  }
  // A confirmed version that fails later is reported, not rolled back.
  absl::StatusOr<TrialState> failed = ReportLoadFailed(options_, "DISK_ERROR");
  ASSERT_THAT(failed, IsOk());
  EXPECT_FALSE(failed->rolled_back.has_value());
  EXPECT_EQ(CurrentVersion(), Name(2));
  EXPECT_FALSE(FindRejected(dir_, kTier, kChannel).has_value());
}

TEST_F(TrialTest, WithoutLimitsOnlyAReportedFailureEndsATrial) {
  Activate(1, /*trial=*/false);
  Activate(2);
  now_ = kT0 + absl::Hours(24 * 365);
  for (int i = 0; i < 50; ++i) ASSERT_THAT(LaunchCurrent(options_), IsOk());
  ASSERT_THAT(SettleTrial(options_), IsOk());
  EXPECT_EQ(CurrentVersion(), Name(2));
  EXPECT_EQ(ReadTrial(dir_)->launches, 50);
}

TEST_F(TrialTest, ActivationWhileOnTrialKeepsPreviousConfirmed) {
  const InstalledVersion one = Activate(1, /*trial=*/false);
  Activate(2);
  const InstalledVersion three = Activate(3);
  EXPECT_EQ(CurrentVersion(), Name(3));
  EXPECT_EQ(PreviousVersion(), Name(1)) << "2 was never confirmed";
  EXPECT_EQ(ReadTrial(dir_)->key, three.key);
  EXPECT_EQ(ReadTrial(dir_)->confirmed, one.key);
  // Garbage collection keeps the rollback target.
  ASSERT_THAT(store_->CollectGarbage(), IsOk());
  ASSERT_THAT(ReportLoadFailed(options_, "BAD_TENSOR_SHAPE"), IsOk());
  EXPECT_EQ(CurrentVersion(), Name(1));

  // Once confirmed, a version becomes previous at the next activation.
  Activate(4);
  ASSERT_THAT(ConfirmLoaded(options_), IsOk());
  Activate(5);
  EXPECT_EQ(PreviousVersion(), Name(4));
  // An activation without a trial of its own continues the open one (a bundle install).
  Activate(6, /*trial=*/false);
  EXPECT_EQ(PreviousVersion(), Name(4));
  EXPECT_EQ(ReadTrial(dir_)->version, Name(6));
  EXPECT_EQ(ReadTrial(dir_)->tier, kTier);
}

TEST_F(TrialTest, GoingBackToTheConfirmedVersionEndsTheTrialWithoutRejecting) {
  Activate(1, /*trial=*/false);
  Activate(2);
  Activate(1);  // the manifest named 1 again
  EXPECT_EQ(CurrentVersion(), Name(1));
  EXPECT_FALSE(ReadTrial(dir_).has_value());
  EXPECT_FALSE(FindRejected(dir_, kTier, kChannel).has_value());
}

TEST_F(TrialTest, AFailedFirstInstallLeavesNoModel) {
  const InstalledVersion one = Activate(1);
  EXPECT_EQ(ReadTrial(dir_)->confirmed, "");
  ASSERT_THAT(ReportLoadFailed(options_, "UNSUPPORTED_ARCH", one.path), IsOk());
  EXPECT_FALSE(store_->Current().has_value());
  EXPECT_FALSE(fs::exists(fs::symlink_status(dir_ + "/current")));
  EXPECT_THAT(LaunchCurrent(options_).status(), HasReason(absl::StatusCode::kNotFound, "NO_MODEL"));
  // A later version installs normally, on trial with nothing to go back to.
  Activate(2);
  EXPECT_EQ(CurrentVersion(), Name(2));
}

TEST_F(TrialTest, ConfirmingOrFailingAPathThatIsNoLongerCurrentIsRefused) {
  Activate(1, /*trial=*/false);
  const InstalledVersion two = Activate(2);
  Activate(3);
  EXPECT_THAT(ConfirmLoaded(options_, two.path).status(),
              HasReason(absl::StatusCode::kFailedPrecondition, "CURRENT_CHANGED"));
  EXPECT_THAT(ReportLoadFailed(options_, "OUT_OF_MEMORY", two.path).status(),
              HasReason(absl::StatusCode::kFailedPrecondition, "CURRENT_CHANGED"));
  EXPECT_EQ(CurrentVersion(), Name(3));
  EXPECT_EQ(ReadTrial(dir_)->version, Name(3)) << "3 is still on trial";
}

TEST_F(TrialTest, LoadFailureReasonsAreUpperSnake) {
  Activate(1);
  for (const std::string& bad : std::vector<std::string>{"", "oom", "OUT OF MEMORY", "9LIVES",
                                                         "A-B", std::string(65, 'A')}) {
    EXPECT_THAT(ReportLoadFailed(options_, bad).status(),
                HasReason(absl::StatusCode::kInvalidArgument, "INVALID_LOAD_FAILURE_REASON"))
        << bad;
  }
  EXPECT_EQ(CurrentVersion(), Name(1));
  EXPECT_THAT(ValidateLoadFailureReason(std::string(64, 'A')), IsOk());
}

// The leftovers of kill -9 between the steps of each transition (model_store.h, Trials).

TEST_F(TrialTest, CrashAfterTheRecordBeforeTheLinksActivatedNothing) {
  Activate(1, /*trial=*/false);
  const InstalledVersion two = Activate(2);
  ASSERT_THAT(ConfirmLoaded(options_), IsOk());
  // Activation of 3 wrote its record and died: `current` (2) is the record's `confirmed`.
  TrialRecord record{"3-deadbeef", Name(3), DigestOf(3), kTier, kChannel, kT0, 0, {}, two.key};
  ASSERT_THAT(WriteTrial(dir_, record), IsOk());
  absl::StatusOr<TrialState> state = LaunchCurrent(options_);
  ASSERT_THAT(state, IsOk());
  EXPECT_FALSE(state->on_trial);
  EXPECT_EQ(state->current->version, Name(2));
  EXPECT_FALSE(ReadTrial(dir_).has_value());
}

TEST_F(TrialTest, CrashInAnActivationWhileOnTrialKeepsTheEarlierTrial) {
  const InstalledVersion one = Activate(1, /*trial=*/false);
  const InstalledVersion two = Activate(2);
  // Activation of 3 replaced 2's record and died before moving `current`.
  TrialRecord record{"3-deadbeef", Name(3), DigestOf(3), kTier, kChannel, kT0, 0, {}, one.key};
  ASSERT_THAT(WriteTrial(dir_, record), IsOk());
  absl::StatusOr<TrialState> state = LaunchCurrent(options_);
  ASSERT_THAT(state, IsOk());
  EXPECT_TRUE(state->on_trial) << "2 was never confirmed";
  EXPECT_EQ(state->record.key, two.key);
  EXPECT_EQ(state->record.confirmed, one.key);
  ASSERT_THAT(ReportLoadFailed(options_, "OUT_OF_MEMORY"), IsOk());
  EXPECT_EQ(CurrentVersion(), Name(1));
}

TEST_F(TrialTest, CrashAfterTheRejectionIsRolledBackOnRestart) {
  Activate(1, /*trial=*/false);
  Activate(2);
  // Step (1) of a rollback is durable, (2) never happened.
  ASSERT_THAT(SetRejected(dir_, kTier, kChannel, DigestOf(2), "LOAD_FAILED"), IsOk());
  EXPECT_EQ(CurrentVersion(), Name(2));
  absl::StatusOr<TrialState> state = ConfirmLoaded(options_);
  ASSERT_THAT(state, IsOk());
  EXPECT_FALSE(state->confirmed) << "a rollback under way is not undone by a confirmation";
  EXPECT_EQ(state->rollback_reason, "LOAD_FAILED");
  EXPECT_EQ(CurrentVersion(), Name(1));
  EXPECT_FALSE(ReadTrial(dir_).has_value());
}

TEST_F(TrialTest, CrashAfterTheLinkMovedBackOnlyLeavesTheRecord) {
  const InstalledVersion one = Activate(1, /*trial=*/false);
  Activate(2);
  // Steps (1) and (2) done, (3) not: `current` is the record's `confirmed`.
  ASSERT_THAT(SetRejected(dir_, kTier, kChannel, DigestOf(2), "LOAD_FAILED"), IsOk());
  ASSERT_THAT(store_->SetCurrent(one.key), IsOk());
  absl::StatusOr<TrialState> state = SettleTrial(options_);
  ASSERT_THAT(state, IsOk());
  EXPECT_FALSE(state->on_trial);
  EXPECT_FALSE(ReadTrial(dir_).has_value());
  EXPECT_EQ(CurrentVersion(), Name(1));
}

}  // namespace
}  // namespace modeldist::agent
