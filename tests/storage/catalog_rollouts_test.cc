// Tests of rollouts (storage/catalog_rollouts.cc), and of what a yank does to them.
#include <sqlite3.h>

#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/status.h"
#include "gtest/gtest.h"
#include "tests/storage/catalog_fixture.h"

namespace modeldist::storage {
namespace {

// --- Rollouts -------------------------------------------------------------------------------

TEST_F(RolloutTest, StartRolloutFromTheResolvedVersion) {
  auto [v1, v2] = BoundTier();
  Advance(absl::Seconds(5));
  absl::StatusOr<v1::Rollout> rollout = catalog_->StartRollout(kTier, kStable, v2, 250);
  ASSERT_THAT(rollout, IsOk());
  EXPECT_EQ(rollout->id(), "r-1");
  EXPECT_EQ(rollout->tier(), kTier);
  EXPECT_EQ(rollout->channel(), kStable);
  EXPECT_EQ(rollout->from_version(), "models/llama/versions/v1");
  EXPECT_EQ(rollout->to_version(), "models/llama/versions/v2");
  EXPECT_EQ(rollout->basis_points(), 250);
  EXPECT_EQ(rollout->state(), v1::Rollout::ACTIVE);
  EXPECT_EQ(rollout->create_time().seconds(), 1'700'000'005);
  EXPECT_EQ(rollout->update_time().seconds(), 1'700'000'005);
  EXPECT_EQ(Sequence(), kT0 + 5'000'000);  // the clock, 5 s on
  // The binding itself is unchanged: devices outside the cohort keep v1.
  EXPECT_EQ(catalog_->GetTier(kTier, kStable)->version(), "models/llama/versions/v1");

  absl::StatusOr<ListPage<v1::Rollout>> listed = catalog_->ListRollouts("", "", 0, "");
  ASSERT_THAT(listed, IsOk());
  ASSERT_EQ(listed->items.size(), 1u);
  EXPECT_TRUE(MessageDifferencer::Equals(listed->items[0], *rollout));
}

TEST_F(RolloutTest, StartRolloutBoundaryShares) {
  auto [v1, v2] = BoundTier();
  VersionName other = Published("llama", "v3", 'c');
  ASSERT_THAT(catalog_->SetTier("other", kStable, v1), IsOk());
  EXPECT_EQ(catalog_->StartRollout(kTier, kStable, v2, 0)->basis_points(), 0);
  EXPECT_EQ(catalog_->StartRollout("other", kStable, other, 10000)->basis_points(), 10000);
}

TEST_F(RolloutTest, StartRolloutErrors) {
  VersionName v1 = Published("llama", "v1", 'a');
  VersionName v2 = Published("llama", "v2", 'b');

  for (int32_t bp : {-1, 10001}) {
    absl::StatusOr<v1::Rollout> out_of_range = catalog_->StartRollout(kTier, kStable, v2, bp);
    EXPECT_THAT(out_of_range,
                StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr(absl::StrCat("got ", bp))));
    EXPECT_EQ(ErrorReason(out_of_range.status()), "INVALID_BASIS_POINTS");
    EXPECT_EQ(ErrorMetadataValue(out_of_range.status(), "field"), "basis_points");
  }

  absl::StatusOr<v1::Rollout> unbound = catalog_->StartRollout(kTier, kStable, v2, 100);
  EXPECT_THAT(unbound, StatusIs(absl::StatusCode::kNotFound, HasSubstr("never bound")));
  EXPECT_EQ(ErrorReason(unbound.status()), "TIER_NOT_FOUND");

  ASSERT_THAT(catalog_->SetTier(kTier, kStable, v1), IsOk());
  absl::StatusOr<v1::Rollout> missing =
      catalog_->StartRollout(kTier, kStable, {"llama", "nope"}, 100);
  EXPECT_THAT(missing,
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("models/llama/versions/nope")));
  EXPECT_EQ(ErrorReason(missing.status()), "VERSION_NOT_FOUND");

  VersionName draft{"llama", "draft"};
  ASSERT_THAT(catalog_->CreateVersion(draft, {MacArtifact(Digest('d'), 1)}), IsOk());
  absl::StatusOr<v1::Rollout> on_draft = catalog_->StartRollout(kTier, kStable, draft, 100);
  EXPECT_THAT(on_draft, StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("DRAFT")));
  EXPECT_EQ(ErrorReason(on_draft.status()), "VERSION_NOT_PUBLISHED");

  absl::StatusOr<v1::Rollout> to_current = catalog_->StartRollout(kTier, kStable, v1, 100);
  EXPECT_THAT(to_current, StatusIs(absl::StatusCode::kFailedPrecondition,
                                   HasSubstr("already resolves to models/llama/versions/v1")));
  EXPECT_EQ(ErrorReason(to_current.status()), "VERSION_ALREADY_BOUND");

  ASSERT_THAT(catalog_->StartRollout(kTier, kStable, v2, 100), IsOk());
  VersionName v3 = Published("llama", "v3", 'c');
  absl::StatusOr<v1::Rollout> second = catalog_->StartRollout(kTier, kStable, v3, 100);
  EXPECT_THAT(second, StatusIs(absl::StatusCode::kFailedPrecondition,
                               AllOf(HasSubstr("r-1"), HasSubstr("ACTIVE"))));
  EXPECT_EQ(ErrorReason(second.status()), "ROLLOUT_IN_PROGRESS");
  ASSERT_THAT(catalog_->PauseRollout(kTier, kStable), IsOk());
  absl::StatusOr<v1::Rollout> while_paused = catalog_->StartRollout(kTier, kStable, v3, 100);
  EXPECT_THAT(while_paused, StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("PAUSED")));
  EXPECT_EQ(ErrorReason(while_paused.status()), "ROLLOUT_IN_PROGRESS");
  EXPECT_EQ(Sequence(), kT0 + 2);  // bind, start, pause; no failure bumped

  // A tier whose every bound version was yanked has nothing to roll out from.
  ASSERT_THAT(catalog_->SetTier("empty", kStable, v3), IsOk());
  ASSERT_THAT(catalog_->YankVersion(v3, "bad"), IsOk());
  absl::StatusOr<v1::Rollout> from_nothing = catalog_->StartRollout("empty", kStable, v2, 100);
  EXPECT_THAT(from_nothing, StatusIs(absl::StatusCode::kNotFound, HasSubstr("SetTier")));
  EXPECT_EQ(ErrorReason(from_nothing.status()), "TIER_NOT_BOUND");

  absl::StatusOr<ListPage<v1::Rollout>> listed = catalog_->ListRollouts("", "", 0, "");
  ASSERT_THAT(listed, IsOk());
  EXPECT_EQ(listed->items.size(), 1u);  // only the one that succeeded
}

TEST_F(RolloutTest, OneOpenRolloutPerTierEvenAgainstRawWrites) {
  auto [v1, v2] = BoundTier();
  ASSERT_THAT(catalog_->StartRollout(kTier, kStable, v2, 100), IsOk());
  // The partial unique index refuses a second ACTIVE/PAUSED row whoever writes it...
  EXPECT_EQ(ExecRaw(path(),
                    "INSERT INTO rollouts (tier, channel, from_model_id, from_version_id,"
                    " to_model_id, to_version_id, basis_points, state, create_time, update_time)"
                    " VALUES ('llama8b', 'stable', 'llama', 'v1', 'llama', 'v2', 0, 2, 0, 0)"),
            SQLITE_CONSTRAINT_UNIQUE);
  // ...but finished rollouts may pile up.
  EXPECT_EQ(ExecRaw(path(),
                    "INSERT INTO rollouts (tier, channel, from_model_id, from_version_id,"
                    " to_model_id, to_version_id, basis_points, state, create_time, update_time)"
                    " VALUES ('llama8b', 'stable', 'llama', 'v1', 'llama', 'v2', 0, 4, 0, 0)"),
            SQLITE_OK);
}

TEST_F(RolloutTest, AdvanceRollout) {
  auto [v1, v2] = BoundTier();
  absl::StatusOr<v1::Rollout> none = catalog_->AdvanceRollout(kTier, kStable, 100);
  EXPECT_THAT(none, StatusIs(absl::StatusCode::kNotFound, HasSubstr(kTier)));
  EXPECT_EQ(ErrorReason(none.status()), "ROLLOUT_NOT_FOUND");

  ASSERT_THAT(catalog_->StartRollout(kTier, kStable, v2, 100), IsOk());  // kT0 + 1
  Advance(absl::Seconds(7));
  absl::StatusOr<v1::Rollout> advanced = catalog_->AdvanceRollout(kTier, kStable, 2500);
  ASSERT_THAT(advanced, IsOk());
  EXPECT_EQ(advanced->basis_points(), 2500);
  EXPECT_EQ(advanced->state(), v1::Rollout::ACTIVE);
  EXPECT_EQ(advanced->update_time().seconds(), 1'700'000'007);
  EXPECT_EQ(advanced->create_time().seconds(), 1'700'000'000);
  EXPECT_EQ(Sequence(), kT0 + 7'000'000);  // the clock, 7 s on

  // The same share changes nothing devices see: no bump, but the answer is the rollout.
  absl::StatusOr<v1::Rollout> same = catalog_->AdvanceRollout(kTier, kStable, 2500);
  ASSERT_THAT(same, IsOk());
  EXPECT_EQ(same->basis_points(), 2500);
  EXPECT_EQ(same->update_time().seconds(), 1'700'000'007);
  EXPECT_EQ(Sequence(), kT0 + 7'000'000);

  absl::StatusOr<v1::Rollout> lower = catalog_->AdvanceRollout(kTier, kStable, 2499);
  EXPECT_THAT(lower, StatusIs(absl::StatusCode::kInvalidArgument,
                              AllOf(HasSubstr("below the current 2500"), HasSubstr("Abort"))));
  EXPECT_EQ(ErrorReason(lower.status()), "BASIS_POINTS_DECREASE");
  EXPECT_EQ(ErrorMetadataValue(lower.status(), "field"), "basis_points");

  for (int32_t bp : {-5, 10001}) {
    absl::StatusOr<v1::Rollout> out = catalog_->AdvanceRollout(kTier, kStable, bp);
    EXPECT_THAT(out, StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("0..10000")));
    EXPECT_EQ(ErrorMetadataValue(out.status(), "field"), "basis_points");
  }

  ASSERT_THAT(catalog_->PauseRollout(kTier, kStable), IsOk());  // kT0 + 7'000'001
  absl::StatusOr<v1::Rollout> paused = catalog_->AdvanceRollout(kTier, kStable, 5000);
  EXPECT_THAT(paused, StatusIs(absl::StatusCode::kFailedPrecondition,
                               AllOf(HasSubstr("PAUSED"), HasSubstr("r-1"))));
  EXPECT_EQ(ErrorReason(paused.status()), "ROLLOUT_PAUSED");
  EXPECT_EQ(Sequence(), kT0 + 7'000'001);

  ASSERT_THAT(catalog_->ResumeRollout(kTier, kStable), IsOk());  // kT0 + 7'000'002
  absl::StatusOr<v1::Rollout> full = catalog_->AdvanceRollout(kTier, kStable, 10000);
  ASSERT_THAT(full, IsOk());
  EXPECT_EQ(full->basis_points(), 10000);
  EXPECT_EQ(full->state(), v1::Rollout::ACTIVE);  // 100% is not COMPLETED until asked
  EXPECT_EQ(Sequence(), kT0 + 7'000'003);
}

TEST_F(RolloutTest, PauseAndResume) {
  auto [v1, v2] = BoundTier();
  absl::StatusOr<v1::Rollout> none = catalog_->PauseRollout(kTier, kStable);
  EXPECT_THAT(none, StatusIs(absl::StatusCode::kNotFound, HasSubstr(kTier)));
  EXPECT_EQ(ErrorReason(none.status()), "ROLLOUT_NOT_FOUND");
  absl::StatusOr<v1::Rollout> none_resume = catalog_->ResumeRollout(kTier, kStable);
  EXPECT_THAT(none_resume, StatusIs(absl::StatusCode::kNotFound, HasSubstr(kTier)));
  EXPECT_EQ(ErrorReason(none_resume.status()), "ROLLOUT_NOT_FOUND");

  ASSERT_THAT(catalog_->StartRollout(kTier, kStable, v2, 300), IsOk());  // kT0 + 1
  absl::StatusOr<v1::Rollout> not_paused = catalog_->ResumeRollout(kTier, kStable);
  EXPECT_THAT(not_paused, StatusIs(absl::StatusCode::kFailedPrecondition,
                                   AllOf(HasSubstr("ACTIVE"), HasSubstr("not PAUSED"))));
  EXPECT_EQ(ErrorReason(not_paused.status()), "ROLLOUT_NOT_PAUSED");

  absl::StatusOr<v1::Rollout> paused = catalog_->PauseRollout(kTier, kStable);
  ASSERT_THAT(paused, IsOk());
  EXPECT_EQ(paused->state(), v1::Rollout::PAUSED);
  EXPECT_EQ(paused->basis_points(), 300);
  EXPECT_EQ(Sequence(), kT0 + 2);

  absl::StatusOr<v1::Rollout> twice = catalog_->PauseRollout(kTier, kStable);
  EXPECT_THAT(twice, StatusIs(absl::StatusCode::kFailedPrecondition,
                              AllOf(HasSubstr("PAUSED"), HasSubstr("not ACTIVE"))));
  EXPECT_EQ(ErrorReason(twice.status()), "ROLLOUT_NOT_ACTIVE");

  absl::StatusOr<v1::Rollout> resumed = catalog_->ResumeRollout(kTier, kStable);
  ASSERT_THAT(resumed, IsOk());
  EXPECT_EQ(resumed->state(), v1::Rollout::ACTIVE);
  EXPECT_EQ(resumed->basis_points(), 300);
  EXPECT_EQ(Sequence(), kT0 + 3);
}

TEST_F(RolloutTest, CompleteBindsTheTierToTheTarget) {
  auto [v1, v2] = BoundTier();
  absl::StatusOr<v1::Rollout> none = catalog_->CompleteRollout(kTier, kStable);
  EXPECT_THAT(none, StatusIs(absl::StatusCode::kNotFound, HasSubstr(kTier)));
  EXPECT_EQ(ErrorReason(none.status()), "ROLLOUT_NOT_FOUND");

  ASSERT_THAT(catalog_->StartRollout(kTier, kStable, v2, 300), IsOk());  // kT0 + 1
  ASSERT_THAT(catalog_->PauseRollout(kTier, kStable), IsOk());  // kT0 + 2: PAUSED completes too
  Advance(absl::Seconds(9));
  absl::StatusOr<v1::Rollout> completed = catalog_->CompleteRollout(kTier, kStable);
  ASSERT_THAT(completed, IsOk());
  EXPECT_EQ(completed->state(), v1::Rollout::COMPLETED);
  EXPECT_EQ(completed->basis_points(), 300);  // the last share, for the record
  absl::StatusOr<v1::TierBinding> binding = catalog_->GetTier(kTier, kStable);
  ASSERT_THAT(binding, IsOk());
  EXPECT_EQ(binding->version(), "models/llama/versions/v2");
  EXPECT_EQ(binding->sequence(), kT0 + 9'000'000);  // the clock, 9 s on
  EXPECT_EQ(binding->update_time().seconds(), 1'700'000'009);

  // No rollout is open any more: completing again fails, a bind is allowed again.
  EXPECT_THAT(catalog_->CompleteRollout(kTier, kStable),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr(kTier)));
  EXPECT_THAT(catalog_->AbortRollout(kTier, kStable),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr(kTier)));

  // The completion is a history entry: yanking v2 falls back to v1.
  ASSERT_THAT(catalog_->YankVersion(v2, "regression"), IsOk());
  binding = catalog_->GetTier(kTier, kStable);
  ASSERT_THAT(binding, IsOk());
  EXPECT_EQ(binding->version(), "models/llama/versions/v1");
  EXPECT_EQ(binding->sequence(), kT0 + 9'000'001);
  // A finished rollout keeps its state when its target is yanked later.
  absl::StatusOr<ListPage<v1::Rollout>> listed = catalog_->ListRollouts("", "", 0, "");
  ASSERT_THAT(listed, IsOk());
  EXPECT_EQ(listed->items[0].state(), v1::Rollout::COMPLETED);
}

TEST_F(RolloutTest, AbortKeepsTheBinding) {
  auto [v1, v2] = BoundTier();
  absl::StatusOr<v1::Rollout> none = catalog_->AbortRollout(kTier, kStable);
  EXPECT_THAT(none, StatusIs(absl::StatusCode::kNotFound, HasSubstr(kTier)));
  EXPECT_EQ(ErrorReason(none.status()), "ROLLOUT_NOT_FOUND");

  ASSERT_THAT(catalog_->StartRollout(kTier, kStable, v2, 5000), IsOk());  // kT0 + 1
  absl::StatusOr<v1::Rollout> aborted = catalog_->AbortRollout(kTier, kStable);
  ASSERT_THAT(aborted, IsOk());
  EXPECT_EQ(aborted->state(), v1::Rollout::ABORTED);
  EXPECT_EQ(catalog_->GetTier(kTier, kStable)->version(), "models/llama/versions/v1");
  EXPECT_EQ(Sequence(), kT0 + 2);

  // A new rollout after an abort gets a new id.
  absl::StatusOr<v1::Rollout> again = catalog_->StartRollout(kTier, kStable, v2, 10);
  ASSERT_THAT(again, IsOk());
  EXPECT_EQ(again->id(), "r-2");
}

TEST_F(RolloutTest, SetTierIsRefusedWhileARolloutIsOpen) {
  auto [v1, v2] = BoundTier();
  VersionName v3 = Published("llama", "v3", 'c');
  ASSERT_THAT(catalog_->StartRollout(kTier, kStable, v2, 100), IsOk());  // kT0 + 1
  absl::StatusOr<v1::TierBinding> active = catalog_->SetTier(kTier, kStable, v3);
  EXPECT_THAT(active, StatusIs(absl::StatusCode::kFailedPrecondition,
                               AllOf(HasSubstr("r-1"), HasSubstr("complete or abort"))));
  EXPECT_EQ(ErrorReason(active.status()), "ROLLOUT_IN_PROGRESS");
  EXPECT_EQ(ErrorMetadataValue(active.status(), "rollout"), "r-1");
  // Also for the version already bound: that bind would change nothing, but the operator
  // decides the rollout's fate first rather than get a success that leaves it running.
  absl::StatusOr<v1::TierBinding> same = catalog_->SetTier(kTier, kStable, v1);
  EXPECT_THAT(same, StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("r-1")));
  EXPECT_EQ(ErrorReason(same.status()), "ROLLOUT_IN_PROGRESS");

  ASSERT_THAT(catalog_->PauseRollout(kTier, kStable), IsOk());  // kT0 + 2
  absl::StatusOr<v1::TierBinding> paused = catalog_->SetTier(kTier, kStable, v3);
  EXPECT_THAT(paused, StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("PAUSED")));
  EXPECT_EQ(ErrorReason(paused.status()), "ROLLOUT_IN_PROGRESS");
  EXPECT_EQ(Sequence(), kT0 + 2);

  // Other channels of the tier are independent.
  ASSERT_THAT(catalog_->SetTier(kTier, "beta", v3), IsOk());

  ASSERT_THAT(catalog_->AbortRollout(kTier, kStable), IsOk());  // kT0 + 3
  absl::StatusOr<v1::TierBinding> after = catalog_->SetTier(kTier, kStable, v3);
  ASSERT_THAT(after, IsOk());
  EXPECT_EQ(after->sequence(), kT0 + 4);
}

TEST_F(RolloutTest, RolloutIdsAreNeverReusedAcrossTiersAndReopens) {
  auto [v1, v2] = BoundTier();
  ASSERT_THAT(catalog_->SetTier("other", "beta", v1), IsOk());
  EXPECT_EQ(catalog_->StartRollout(kTier, kStable, v2, 1)->id(), "r-1");
  EXPECT_EQ(catalog_->StartRollout("other", "beta", v2, 1)->id(), "r-2");
  ASSERT_THAT(catalog_->AbortRollout(kTier, kStable), IsOk());
  // Even if the newest row were gone, AUTOINCREMENT does not hand its id out again.
  ASSERT_EQ(ExecRaw(path(), "DELETE FROM rollouts WHERE id = 2"), SQLITE_OK);
  Reopen();
  ASSERT_THAT(catalog_->AbortRollout("other", "beta"),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("other")));
  EXPECT_EQ(catalog_->StartRollout("other", "beta", v2, 1)->id(), "r-3");
  EXPECT_EQ(catalog_->StartRollout(kTier, kStable, v2, 1)->id(), "r-4");
}

TEST_F(RolloutTest, ListRolloutsNewestFirstWithFiltersAndPages) {
  auto [v1, v2] = BoundTier();
  ASSERT_THAT(catalog_->SetTier(kTier, "beta", v1), IsOk());
  ASSERT_THAT(catalog_->SetTier("other", kStable, v1), IsOk());
  // r-1..r-3 on llama8b/stable (aborted), r-4 llama8b/beta, r-5 other/stable.
  for (int i = 0; i < 3; ++i) {
    ASSERT_THAT(catalog_->StartRollout(kTier, kStable, v2, 1), IsOk());
    ASSERT_THAT(catalog_->AbortRollout(kTier, kStable), IsOk());
  }
  ASSERT_THAT(catalog_->StartRollout(kTier, "beta", v2, 1), IsOk());
  ASSERT_THAT(catalog_->StartRollout("other", kStable, v2, 1), IsOk());

  auto ids = [](const ListPage<v1::Rollout>& page) {
    std::vector<std::string> out;
    for (const v1::Rollout& r : page.items) out.push_back(r.id());
    return out;
  };
  absl::StatusOr<ListPage<v1::Rollout>> all = catalog_->ListRollouts("", "", 0, "");
  ASSERT_THAT(all, IsOk());
  EXPECT_THAT(ids(*all), ElementsAre("r-5", "r-4", "r-3", "r-2", "r-1"));
  EXPECT_EQ(all->next_page_token, "");

  absl::StatusOr<ListPage<v1::Rollout>> tier = catalog_->ListRollouts(kTier, "", 0, "");
  ASSERT_THAT(tier, IsOk());
  EXPECT_THAT(ids(*tier), ElementsAre("r-4", "r-3", "r-2", "r-1"));

  absl::StatusOr<ListPage<v1::Rollout>> first = catalog_->ListRollouts(kTier, kStable, 2, "");
  ASSERT_THAT(first, IsOk());
  EXPECT_THAT(ids(*first), ElementsAre("r-3", "r-2"));
  ASSERT_NE(first->next_page_token, "");
  absl::StatusOr<ListPage<v1::Rollout>> second =
      catalog_->ListRollouts(kTier, kStable, 2, first->next_page_token);
  ASSERT_THAT(second, IsOk());
  EXPECT_THAT(ids(*second), ElementsAre("r-1"));
  EXPECT_EQ(second->next_page_token, "");

  // A token belongs to its filter.
  absl::StatusOr<ListPage<v1::Rollout>> other_filter =
      catalog_->ListRollouts("other", "", 2, first->next_page_token);
  EXPECT_THAT(other_filter, StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("page_token")));
  EXPECT_EQ(ErrorReason(other_filter.status()), "INVALID_PAGE_TOKEN");
  EXPECT_THAT(catalog_->ListRollouts("", "", -1, ""),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("page_size")));
  EXPECT_THAT(catalog_->ListRollouts("nope", "", 0, "")->items, IsEmpty());
}

TEST_F(RolloutTest, ResolveAllTiersCarriesOpenRolloutsOnly) {
  auto [v1, v2] = BoundTier();
  auto resolve = [&]() -> ResolvedTier {
    absl::StatusOr<std::vector<ResolvedTier>> all = catalog_->ResolveAllTiers();
    EXPECT_THAT(all, IsOk());
    EXPECT_EQ(all->size(), 1u);
    return all->empty() ? ResolvedTier{} : all->front();
  };
  EXPECT_FALSE(resolve().rollout.has_value());
  EXPECT_FALSE(resolve().rollout_version.has_value());

  ASSERT_THAT(catalog_->StartRollout(kTier, kStable, v2, 700), IsOk());
  ResolvedTier active = resolve();
  ASSERT_TRUE(active.rollout.has_value());
  EXPECT_EQ(active.rollout->id(), "r-1");
  EXPECT_EQ(active.rollout->basis_points(), 700);
  ASSERT_TRUE(active.rollout_version.has_value());
  EXPECT_EQ(active.rollout_version->name(), "models/llama/versions/v2");
  EXPECT_EQ(active.rollout_version->artifacts(0).digest(), Digest('b'));
  EXPECT_EQ(active.version.name(), "models/llama/versions/v1");
  EXPECT_EQ(active.binding.sequence(), kT0 + 1);

  ASSERT_THAT(catalog_->PauseRollout(kTier, kStable), IsOk());
  ResolvedTier paused = resolve();
  ASSERT_TRUE(paused.rollout.has_value());
  EXPECT_EQ(paused.rollout->state(), v1::Rollout::PAUSED);

  ASSERT_THAT(catalog_->AbortRollout(kTier, kStable), IsOk());
  ResolvedTier aborted = resolve();
  EXPECT_FALSE(aborted.rollout.has_value());
  EXPECT_FALSE(aborted.rollout_version.has_value());
  EXPECT_EQ(aborted.binding.sequence(), kT0 + 3);
}

// --- Yank interplay -------------------------------------------------------------------------

TEST_F(RolloutTest, YankOfTheRolloutTargetAbortsItAndRemovesPinsWithOneBump) {
  auto [v1, v2] = BoundTier();
  ASSERT_THAT(catalog_->SetTier("other", kStable, v1), IsOk());
  ASSERT_THAT(catalog_->StartRollout(kTier, kStable, v2, 4000), IsOk());        // kT0 + 1
  ASSERT_THAT(catalog_->PinDevices(kTier, kStable, {"p1", "p2"}, v2), IsOk());  // kT0 + 2
  ASSERT_THAT(catalog_->PinDevices(kTier, kStable, {"p3"}, v1), IsOk());        // kT0 + 3
  ASSERT_THAT(catalog_->PinDevices("other", kStable, {"q1"}, v2), IsOk());      // other kT0 + 1

  absl::StatusOr<v1::Version> yanked = catalog_->YankVersion(v2, "crashes");
  ASSERT_THAT(yanked, IsOk());
  EXPECT_EQ(yanked->state(), v1::Version::YANKED);

  // Rollout and pins changed on llama8b/stable: one bump for both.
  EXPECT_EQ(Sequence(), kT0 + 4);
  EXPECT_EQ(catalog_->GetTier("other", kStable)->sequence(), kT0 + 2);
  EXPECT_EQ(catalog_->GetTier(kTier, kStable)->version(), "models/llama/versions/v1");

  absl::StatusOr<ListPage<v1::Rollout>> rollouts = catalog_->ListRollouts("", "", 0, "");
  ASSERT_THAT(rollouts, IsOk());
  ASSERT_EQ(rollouts->items.size(), 1u);
  EXPECT_EQ(rollouts->items[0].state(), v1::Rollout::ABORTED);
  EXPECT_EQ(rollouts->items[0].basis_points(), 4000);

  absl::StatusOr<ListPage<v1::DevicePin>> pins = catalog_->ListPins(0, "");
  ASSERT_THAT(pins, IsOk());
  ASSERT_EQ(pins->items.size(), 1u);  // only p3, pinned to v1, remains
  EXPECT_EQ(pins->items[0].device_id(), "p3");

  absl::StatusOr<std::vector<ResolvedTier>> resolved = catalog_->ResolveAllTiers();
  ASSERT_THAT(resolved, IsOk());
  for (const ResolvedTier& tier : *resolved) {
    EXPECT_FALSE(tier.rollout.has_value()) << tier.binding.tier();
    EXPECT_EQ(tier.pinned_versions.count("models/llama/versions/v2"), 0u);
  }

  std::vector<v1::AuditEntry> audit = Audit();
  EXPECT_EQ(audit[0].action(), "YankVersion");
  EXPECT_THAT(
      audit[0].details(),
      AllOf(HasSubstr("rollout r-1 aborted"), HasSubstr("3 pin(s) removed"),
            HasSubstr(absl::StrCat("tiers/llama8b/channels/stable (sequence ", kT0 + 4, ")")),
            HasSubstr(absl::StrCat("tiers/other/channels/stable (sequence ", kT0 + 2, ")"))));

  // The tier is free for a new rollout and for binds.
  ASSERT_THAT(catalog_->SetTier(kTier, kStable, v1), IsOk());
}

TEST_F(RolloutTest, YankOfTheFromVersionKeepsTheRolloutAndBumpsOnce) {
  auto [v1, v2] = BoundTier();
  VersionName v0 = Published("llama", "v0", 'c');
  ASSERT_THAT(catalog_->SetTier(kTier, kStable, v0), IsOk());            // kT0 + 1
  ASSERT_THAT(catalog_->SetTier(kTier, kStable, v1), IsOk());            // kT0 + 2
  ASSERT_THAT(catalog_->StartRollout(kTier, kStable, v2, 10), IsOk());   // kT0 + 3
  ASSERT_THAT(catalog_->PinDevices(kTier, kStable, {"p"}, v1), IsOk());  // kT0 + 4
  ASSERT_THAT(catalog_->YankVersion(v1, "bad"), IsOk());
  EXPECT_EQ(Sequence(), kT0 + 5);  // fallback and pin removal: one bump
  EXPECT_EQ(catalog_->GetTier(kTier, kStable)->version(), "models/llama/versions/v0");
  absl::StatusOr<ListPage<v1::Rollout>> rollouts = catalog_->ListRollouts("", "", 0, "");
  ASSERT_THAT(rollouts, IsOk());
  EXPECT_EQ(rollouts->items[0].state(), v1::Rollout::ACTIVE);
}

}  // namespace
}  // namespace modeldist::storage
