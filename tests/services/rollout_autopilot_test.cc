// Tests of health-gated rollouts (services/rollout_autopilot.h): policy validation, the gates'
// verdicts, the autopilot's pauses, aborts and scheduled steps on a real catalog under a fake
// clock, with report counts fed through its ReportCounter seam; and GetRolloutStatus
// (services/rollout_status.h) per-step counts.
#include "services/rollout_autopilot.h"

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "common/status.h"
#include "google/protobuf/util/time_util.h"
#include "gtest/gtest.h"
#include "services/rollout_status.h"
#include "tests/storage/catalog_fixture.h"
#include "tests/testing/test_util.h"

namespace modeldist::services {
namespace {

using storage::kStable;
using storage::kTier;
using ::testing::HasSubstr;

constexpr char kV1[] = "models/llama/versions/v1";
constexpr char kV2[] = "models/llama/versions/v2";

// A load gate of 3 % judged from 100 results, pausing; no schedule.
v1::RolloutPolicy Policy() {
  v1::RolloutPolicy policy;
  policy.set_max_load_failure_bp(300);
  policy.set_min_reports(100);
  return policy;
}

// --- validation -------------------------------------------------------------------------------

std::string ReasonAndField(const absl::Status& s) {
  return absl::StrCat(ErrorReason(s), " ", s.message());
}

TEST(CheckRolloutPolicyTest, AcceptsNoPolicyAndAFullOne) {
  EXPECT_TRUE(CheckRolloutPolicy(v1::RolloutPolicy(), 0).ok());
  v1::RolloutPolicy policy = Policy();
  policy.set_max_sync_failure_bp(10000);
  policy.set_on_trip(v1::RolloutPolicy::ABORT);
  for (int bp : {100, 1000, 5000, 10000}) policy.add_schedule_bp(bp);
  policy.mutable_step_interval()->set_seconds(60);
  EXPECT_TRUE(CheckRolloutPolicy(policy, 0).ok());
}

TEST(CheckRolloutPolicyTest, NamesTheFieldOfEachBrokenRule) {
  struct Case {
    std::function<void(v1::RolloutPolicy*)> set;
    std::string field;
  };
  const std::vector<Case> cases = {
      {[](v1::RolloutPolicy* p) { p->set_max_load_failure_bp(10001); }, "max_load_failure_bp"},
      {[](v1::RolloutPolicy* p) { p->set_max_sync_failure_bp(-1); }, "max_sync_failure_bp"},
      {[](v1::RolloutPolicy* p) { p->set_min_reports(-5); }, "min_reports"},
      {[](v1::RolloutPolicy* p) { p->set_on_trip(static_cast<v1::RolloutPolicy::GateAction>(7)); },
       "on_trip"},
      // Not above the starting share (100 below).
      {[](v1::RolloutPolicy* p) {
         p->add_schedule_bp(100);
         p->mutable_step_interval()->set_seconds(3600);
       },
       "schedule_bp[0]"},
      {[](v1::RolloutPolicy* p) {
         p->add_schedule_bp(1000);
         p->add_schedule_bp(1000);
         p->mutable_step_interval()->set_seconds(3600);
       },
       "schedule_bp[1]"},
      {[](v1::RolloutPolicy* p) {
         p->add_schedule_bp(10001);
         p->mutable_step_interval()->set_seconds(3600);
       },
       "schedule_bp[0]"},
      {[](v1::RolloutPolicy* p) {
         for (int i = 1; i <= 17; ++i) p->add_schedule_bp(100 + i);
         p->mutable_step_interval()->set_seconds(3600);
       },
       "schedule_bp"},
      {[](v1::RolloutPolicy* p) {
         p->add_schedule_bp(1000);
         p->mutable_step_interval()->set_seconds(59);
       },
       "step_interval"},
      {[](v1::RolloutPolicy* p) { p->mutable_step_interval()->set_seconds(-1); }, "step_interval"},
      // Change time + interval would overflow next_step_time (read as long past: an immediate
      // step), or leave the Timestamp range.
      {[](v1::RolloutPolicy* p) {
         p->add_schedule_bp(1000);
         p->mutable_step_interval()->set_seconds(9'223'000'000'000);
       },
       "step_interval"},
      {[](v1::RolloutPolicy* p) { p->mutable_step_interval()->set_seconds(INT64_MIN); },
       "step_interval"},
  };
  for (const Case& c : cases) {
    v1::RolloutPolicy policy = Policy();
    c.set(&policy);
    const absl::Status s = CheckRolloutPolicy(policy, 100);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << c.field;
    EXPECT_EQ(ErrorReason(s), "INVALID_ROLLOUT_POLICY") << c.field;
    EXPECT_THAT(std::string(s.message()), HasSubstr(absl::StrCat("policy.", c.field, ":")))
        << ReasonAndField(s);
  }
}

// --- gates ------------------------------------------------------------------------------------

TEST(JudgeGatesTest, WaitsForMinReportsThenJudgesExactly) {
  v1::RolloutPolicy policy = Policy();
  policy.set_max_sync_failure_bp(1000);
  VersionCounts counts;
  counts.load_confirmed = 60;
  counts.load_failed = 39;  // 99 reports: waiting, whatever the rate
  counts.activated = 100;
  std::vector<v1::GateState> gates = JudgeGates(policy, counts);
  ASSERT_EQ(gates.size(), 2u);
  EXPECT_EQ(gates[0].name(), "load_failure");
  EXPECT_EQ(gates[0].verdict(), v1::GateState::WAITING);
  EXPECT_EQ(gates[0].reports(), 99);
  EXPECT_EQ(gates[1].name(), "sync_failure");
  EXPECT_EQ(gates[1].verdict(), v1::GateState::HEALTHY);
  EXPECT_EQ(gates[1].observed_bp(), 0);

  // 3 failures of 100: exactly at the 300 bp limit is healthy; one more trips.
  counts.load_confirmed = 97;
  counts.load_failed = 3;
  EXPECT_EQ(JudgeGates(policy, counts)[0].verdict(), v1::GateState::HEALTHY);
  counts.load_failed = 4;
  gates = JudgeGates(policy, counts);
  EXPECT_EQ(gates[0].verdict(), v1::GateState::TRIPPED);
  EXPECT_EQ(gates[0].observed_bp(), 396);  // 4 / 101, rounded down

  // min_reports 0 means 100; a gate without a limit is not judged.
  v1::RolloutPolicy defaults;
  defaults.set_max_sync_failure_bp(50);
  gates = JudgeGates(defaults, counts);
  ASSERT_EQ(gates.size(), 1u);
  EXPECT_EQ(gates[0].name(), "sync_failure");
  EXPECT_EQ(gates[0].min_reports(), 100);
}

// --- the autopilot ----------------------------------------------------------------------------

class AutopilotTest : public storage::CatalogTest {
 protected:
  void SetUp() override {
    storage::CatalogTest::SetUp();
    autopilot_ = MakeAutopilot(RolloutAutopilot::Options());
  }

  // An autopilot on the fixture's catalog and clock, reading counts_.
  std::unique_ptr<RolloutAutopilot> MakeAutopilot(RolloutAutopilot::Options options) {
    options.now = [this] {
      absl::MutexLock lock(&clock_mu_);
      return now_;
    };
    return std::make_unique<RolloutAutopilot>(
        catalog_.get(), /*manifests=*/nullptr,
        [this](absl::string_view tier, absl::string_view channel, absl::string_view version) {
          EXPECT_EQ(tier, kTier);
          EXPECT_EQ(channel, kStable);
          absl::MutexLock lock(&counts_mu_);
          return counts_[std::string(version)];
        },
        options);
  }

  // Starts llama8b/stable's rollout v1 -> v2 at `bp` with `policy`, as the registry does.
  v1::Rollout Start(int32_t bp, const v1::RolloutPolicy& policy) {
    BoundTier();
    EXPECT_TRUE(CheckRolloutPolicy(policy, bp).ok());
    absl::StatusOr<v1::Rollout> started =
        catalog_->StartRollout(kTier, kStable, VersionName{"llama", "v2"}, bp, "alice", policy,
                               autopilot_->NoteFor(kTier, kStable, kV2, kV1));
    EXPECT_TRUE(started.ok()) << started.status();
    return started.ok() ? *started : v1::Rollout();
  }

  // Adds load results about v2.
  void Loads(int64_t confirmed, int64_t failed) {
    absl::MutexLock lock(&counts_mu_);
    counts_[kV2].load_confirmed += confirmed;
    counts_[kV2].load_failed += failed;
  }

  v1::Rollout Current() {
    absl::StatusOr<storage::RolloutRecord> record = catalog_->GetRolloutRecord(kTier, kStable);
    EXPECT_TRUE(record.ok()) << record.status();
    return record.ok() ? record->rollout : v1::Rollout();
  }

  int RunOnce() {
    absl::StatusOr<int> changed = autopilot_->RunOnce();
    EXPECT_TRUE(changed.ok()) << changed.status();
    return changed.value_or(-1);
  }

  absl::Mutex counts_mu_;  // the loop's thread reads what a test writes
  std::map<std::string, VersionCounts> counts_;
  std::unique_ptr<RolloutAutopilot> autopilot_;
};

TEST_F(AutopilotTest, ATrippedGatePausesWithItsVerdictAndAnAuditEntry) {
  // Reports from before the rollout do not count: the gate diffs from the start's snapshot.
  Loads(0, 1000);
  Start(100, Policy());
  Loads(90, 9);  // 99 results: the gate waits
  EXPECT_EQ(RunOnce(), 0);
  EXPECT_EQ(Current().state(), v1::Rollout::ACTIVE);
  const int64_t before = Sequence();

  Loads(0, 1);  // 100 results, 10 failed: 1000 bp > 300 bp
  EXPECT_EQ(RunOnce(), 1);
  const v1::Rollout paused = Current();
  EXPECT_EQ(paused.state(), v1::Rollout::PAUSED);
  EXPECT_EQ(paused.basis_points(), 100);
  EXPECT_EQ(paused.state_reason(), "load_failure 1000 bp > 300 bp over 100 reports");
  EXPECT_FALSE(paused.has_next_step_time());
  EXPECT_GT(Sequence(), before) << "devices must get re-signed answers";

  const std::vector<v1::AuditEntry> audit = Audit();
  ASSERT_FALSE(audit.empty());
  EXPECT_EQ(audit[0].actor(), "gate");
  EXPECT_EQ(audit[0].action(), "PauseRollout");
  EXPECT_THAT(audit[0].details(), HasSubstr("load_failure 1000 bp > 300 bp over 100 reports"));

  // Judged again: a PAUSED rollout is left alone (no second entry).
  EXPECT_EQ(RunOnce(), 0);
  EXPECT_EQ(Audit().size(), audit.size());

  // An admin resumes: the reason is cleared (and the gate, still tripped, pauses it again).
  ASSERT_THAT(catalog_->ResumeRollout(kTier, kStable, "alice"), storage::IsOk());
  EXPECT_EQ(Current().state_reason(), "");
  EXPECT_EQ(RunOnce(), 1);
  EXPECT_EQ(Current().state(), v1::Rollout::PAUSED);
}

TEST_F(AutopilotTest, AJudgementIsNotAppliedToARolloutThatChangedSinceItWasJudged) {
  // What the autopilot read, then an admin pauses and resumes before its change lands: the
  // schedule's completing step, judged on the old state, must not be applied.
  Start(100, Policy());
  absl::StatusOr<storage::RolloutRecord> judged = catalog_->GetRolloutRecord(kTier, kStable);
  ASSERT_TRUE(judged.ok()) << judged.status();
  {
    absl::MutexLock lock(&clock_mu_);
    now_ += absl::Seconds(1);  // the admin's changes come later than the judgement
  }
  ASSERT_THAT(catalog_->PauseRollout(kTier, kStable, "alice"), storage::IsOk());
  ASSERT_THAT(catalog_->ResumeRollout(kTier, kStable, "alice"), storage::IsOk());

  storage::RolloutNote note = autopilot_->NoteFor(kTier, kStable, kV2, kV1);
  note.rollout_id = judged->rollout.id();
  note.judged_update_micros =
      google::protobuf::util::TimeUtil::TimestampToMicroseconds(judged->rollout.update_time());
  EXPECT_THAT(catalog_->CompleteRollout(kTier, kStable, "schedule", note).status(),
              ::modeldist::testing::HasReason(absl::StatusCode::kNotFound, "ROLLOUT_NOT_FOUND"));
  EXPECT_EQ(Current().state(), v1::Rollout::ACTIVE);

  // Judged on what is stored now, it applies.
  judged = catalog_->GetRolloutRecord(kTier, kStable);
  ASSERT_TRUE(judged.ok()) << judged.status();
  note.judged_update_micros =
      google::protobuf::util::TimeUtil::TimestampToMicroseconds(judged->rollout.update_time());
  EXPECT_THAT(catalog_->CompleteRollout(kTier, kStable, "schedule", note), storage::IsOk());
  EXPECT_EQ(Current().state(), v1::Rollout::COMPLETED);
}

TEST_F(AutopilotTest, ATrippedGateAbortsWhenThePolicySaysSo) {
  v1::RolloutPolicy policy;
  policy.set_max_sync_failure_bp(500);
  policy.set_min_reports(20);
  policy.set_on_trip(v1::RolloutPolicy::ABORT);
  Start(1000, policy);
  counts_[kV2].activated = 15;
  counts_[kV2].sync_failed = 5;  // 2500 bp of 20
  EXPECT_EQ(RunOnce(), 1);
  const v1::Rollout aborted = Current();
  EXPECT_EQ(aborted.state(), v1::Rollout::ABORTED);
  EXPECT_EQ(aborted.state_reason(), "sync_failure 2500 bp > 500 bp over 20 reports");
  const std::vector<v1::AuditEntry> audit = Audit();
  EXPECT_EQ(audit[0].actor(), "gate");
  EXPECT_EQ(audit[0].action(), "AbortRollout");
  EXPECT_THAT(audit[0].details(), HasSubstr("sync_failure 2500 bp > 500 bp"));
  // An aborted rollout is not judged any more.
  EXPECT_EQ(RunOnce(), 0);
}

TEST_F(AutopilotTest, TheScheduleAdvancesOnlyWhenDueAndEveryGateJudgedHealthy) {
  v1::RolloutPolicy policy = Policy();
  for (int bp : {1000, 10000}) policy.add_schedule_bp(bp);
  policy.mutable_step_interval()->set_seconds(3600);
  const v1::Rollout started = Start(100, policy);
  EXPECT_EQ(started.next_step_time().seconds(), storage::kT0 / 1000000 + 3600);

  // Healthy but not due.
  Loads(200, 0);
  Advance(absl::Minutes(59));
  EXPECT_EQ(RunOnce(), 0);
  EXPECT_EQ(Current().basis_points(), 100);

  // Due and healthy: the next step, by `schedule`, with a new next_step_time.
  Advance(absl::Minutes(1));
  EXPECT_EQ(RunOnce(), 1);
  v1::Rollout stepped = Current();
  EXPECT_EQ(stepped.basis_points(), 1000);
  EXPECT_EQ(stepped.state(), v1::Rollout::ACTIVE);
  EXPECT_EQ(stepped.next_step_time().seconds(), storage::kT0 / 1000000 + 7200);
  EXPECT_EQ(Audit()[0].actor(), "schedule");
  EXPECT_EQ(Audit()[0].action(), "AdvanceRollout");

  // A PAUSED rollout does not advance, however overdue; after a resume the wait restarts.
  ASSERT_THAT(catalog_->PauseRollout(kTier, kStable, "alice"), storage::IsOk());
  Advance(absl::Hours(5));
  EXPECT_EQ(RunOnce(), 0);
  EXPECT_EQ(Current().basis_points(), 1000);
  ASSERT_THAT(catalog_->ResumeRollout(kTier, kStable, "alice"), storage::IsOk());
  EXPECT_EQ(RunOnce(), 0);
  Advance(absl::Hours(1));
  EXPECT_EQ(RunOnce(), 1);
  EXPECT_EQ(Current().basis_points(), 10000);

  // At 100 %, one more healthy interval completes it: the tier is bound to v2.
  ASSERT_TRUE(Current().has_next_step_time());
  Advance(absl::Hours(1));
  EXPECT_EQ(RunOnce(), 1);
  EXPECT_EQ(Current().state(), v1::Rollout::COMPLETED);
  EXPECT_FALSE(Current().has_next_step_time());
  EXPECT_EQ(Audit()[0].action(), "CompleteRollout");
  EXPECT_EQ(Audit()[0].actor(), "schedule");
  EXPECT_EQ(catalog_->GetTier(kTier, kStable)->version(), kV2);
}

TEST_F(AutopilotTest, NoStepBeforeEveryGateHasJudged) {
  v1::RolloutPolicy policy = Policy();
  policy.set_max_sync_failure_bp(1000);
  policy.add_schedule_bp(5000);
  policy.mutable_step_interval()->set_seconds(60);
  Start(100, policy);
  Loads(500, 0);  // the load gate is healthy; the sync gate has no report yet
  Advance(absl::Hours(3));
  EXPECT_EQ(RunOnce(), 0);
  EXPECT_EQ(Current().basis_points(), 100);
  counts_[kV2].activated = 100;  // now it judges, healthy
  EXPECT_EQ(RunOnce(), 1);
  EXPECT_EQ(Current().basis_points(), 5000);
}

TEST_F(AutopilotTest, ARolloutWithoutGatesFollowsItsSchedule) {
  v1::RolloutPolicy policy;
  policy.add_schedule_bp(2000);
  policy.mutable_step_interval()->set_seconds(600);
  Start(0, policy);
  Advance(absl::Minutes(10));
  EXPECT_EQ(RunOnce(), 1);
  EXPECT_EQ(Current().basis_points(), 2000);
  // The schedule is done (it does not end at 100 %): nothing is due any more.
  EXPECT_FALSE(Current().has_next_step_time());
  Advance(absl::Hours(10));
  EXPECT_EQ(RunOnce(), 0);
  EXPECT_EQ(Current().state(), v1::Rollout::ACTIVE);
}

TEST_F(AutopilotTest, AWakeJudgesAtOnceWithoutWaitingForThePeriod) {
  RolloutAutopilot::Options options;
  options.period = absl::Hours(1);
  options.min_wake_gap = absl::ZeroDuration();
  std::unique_ptr<RolloutAutopilot> looping = MakeAutopilot(options);
  Start(100, Policy());
  looping->Start();  // its first round runs at once: nothing to judge yet
  absl::SleepFor(absl::Milliseconds(300));
  Loads(50, 50);
  absl::SleepFor(absl::Milliseconds(300));
  EXPECT_EQ(Current().state(), v1::Rollout::ACTIVE) << "no round ran without a wake";
  looping->Wake();  // what FleetService calls after a ReportStatus batch
  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  while (Current().state() == v1::Rollout::ACTIVE && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(10));
  }
  EXPECT_EQ(Current().state(), v1::Rollout::PAUSED);
  looping->Stop();
}

// --- GetRolloutStatus -------------------------------------------------------------------------

TEST_F(AutopilotTest, StatusCountsEachStepAsTheDifferenceOfTwoSnapshots) {
  v1::RolloutPolicy policy = Policy();
  policy.set_min_reports(10);
  counts_[kV1].load_confirmed = 7;  // before the rollout: not counted
  Loads(5, 5);                      // likewise
  Start(100, policy);
  Loads(8, 0);
  counts_[kV2].activated = 8;
  counts_[kV1].load_confirmed += 3;
  Advance(absl::Minutes(1));
  ASSERT_THAT(catalog_->AdvanceRollout(kTier, kStable, 2500, "bob",
                                       autopilot_->NoteFor(kTier, kStable, kV2, kV1)),
              storage::IsOk());
  Loads(20, 1);

  v1::RolloutRequest request;
  request.set_tier(kTier);
  v1::RolloutStatus status;
  ASSERT_THAT(GetRolloutStatus(*catalog_, autopilot_.get(), request, &status), storage::IsOk());
  EXPECT_EQ(status.rollout().basis_points(), 2500);
  EXPECT_EQ(status.to_version().load_confirmed(), 28);
  EXPECT_EQ(status.to_version().load_failed(), 1);
  EXPECT_EQ(status.to_version().activated(), 8);
  EXPECT_EQ(status.to_version().load_failure_bp(), 344);  // 1 / 29
  EXPECT_EQ(status.from_version().load_confirmed(), 3);
  ASSERT_EQ(status.steps_size(), 2);
  EXPECT_EQ(status.steps(0).basis_points(), 100);
  EXPECT_EQ(status.steps(0).actor(), "alice");
  EXPECT_EQ(status.steps(0).health().load_confirmed(), 8);
  EXPECT_EQ(status.steps(0).health().activated(), 8);
  EXPECT_EQ(status.steps(1).basis_points(), 2500);
  EXPECT_EQ(status.steps(1).actor(), "bob");
  EXPECT_EQ(status.steps(1).start_time().seconds(), storage::kT0 / 1000000 + 60);
  EXPECT_EQ(status.steps(1).health().load_confirmed(), 20);
  EXPECT_EQ(status.steps(1).health().load_failed(), 1);
  EXPECT_EQ(status.steps(1).health().activated(), 0);
  ASSERT_EQ(status.gates_size(), 1);
  EXPECT_EQ(status.gates(0).verdict(), v1::GateState::TRIPPED);
  EXPECT_EQ(status.gates(0).reports(), 29);

  // Once aborted, the last step ends at the abort's snapshot: later reports are not its.
  ASSERT_THAT(
      catalog_->AbortRollout(kTier, kStable, "bob", autopilot_->NoteFor(kTier, kStable, kV2, kV1)),
      storage::IsOk());
  Loads(0, 50);
  status.Clear();
  ASSERT_THAT(GetRolloutStatus(*catalog_, autopilot_.get(), request, &status), storage::IsOk());
  EXPECT_EQ(status.rollout().state(), v1::Rollout::ABORTED);
  ASSERT_EQ(status.steps_size(), 2);
  EXPECT_EQ(status.steps(1).health().load_failed(), 1);
  EXPECT_EQ(status.to_version().load_failed(), 1);

  // A tier/channel that never had a rollout.
  request.set_channel("beta");
  const absl::Status missing = GetRolloutStatus(*catalog_, autopilot_.get(), request, &status);
  EXPECT_EQ(ErrorReason(missing), "ROLLOUT_NOT_FOUND");
  request.set_channel("..");
  EXPECT_EQ(GetRolloutStatus(*catalog_, autopilot_.get(), request, &status).code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace modeldist::services
