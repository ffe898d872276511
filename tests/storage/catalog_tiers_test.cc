// Tests of tier bindings (storage/catalog_tiers.cc): binding, falling back when a version is
// yanked, listing and resolving.
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/status.h"
#include "gtest/gtest.h"
#include "tests/storage/catalog_fixture.h"

namespace modeldist::storage {
namespace {

// --- Tiers and yanks ------------------------------------------------------------------------

TEST_F(CatalogTest, SetTierBindsAndBumpsSequence) {
  VersionName v1 = Published("llama", "v1");
  VersionName v2 = Published("llama", "v2");
  absl::StatusOr<v1::TierBinding> first = catalog_->SetTier("llama8b", "stable", v1);
  ASSERT_THAT(first, IsOk());
  EXPECT_EQ(first->tier(), "llama8b");
  EXPECT_EQ(first->channel(), "stable");
  EXPECT_EQ(first->version(), "models/llama/versions/v1");
  EXPECT_EQ(first->sequence(), kT0);  // the clock, not 1

  Advance(absl::Seconds(10));
  absl::StatusOr<v1::TierBinding> second = catalog_->SetTier("llama8b", "stable", v2);
  ASSERT_THAT(second, IsOk());
  EXPECT_EQ(second->sequence(), kT0 + 10'000'000);  // the clock again, not first + 1
  EXPECT_EQ(Seconds(second->update_time()), 1'700'000'010);

  absl::StatusOr<v1::TierBinding> got = catalog_->GetTier("llama8b", "stable");
  ASSERT_THAT(got, IsOk());
  EXPECT_TRUE(MessageDifferencer::Equals(*got, *second)) << got->DebugString();
  // Channels are independent.
  EXPECT_THAT(catalog_->GetTier("llama8b", "beta"),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("llama8b")));
  EXPECT_EQ(ErrorReason(catalog_->GetTier("llama8b", "beta").status()), "TIER_NOT_FOUND");
}

TEST_F(CatalogTest, SetTierRefusesDraftsYankedAndMissingVersions) {
  ASSERT_THAT(catalog_->CreateModel("llama", ""), IsOk());
  VersionName draft{"llama", "draft"};
  ASSERT_THAT(catalog_->CreateVersion(draft, {MacArtifact(Digest('a'), 10)}), IsOk());
  absl::StatusOr<v1::TierBinding> on_draft = catalog_->SetTier("t", "stable", draft);
  EXPECT_THAT(on_draft,
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       AllOf(HasSubstr("models/llama/versions/draft"), HasSubstr("DRAFT"))));
  EXPECT_EQ(ErrorReason(on_draft.status()), "VERSION_NOT_PUBLISHED");
  EXPECT_THAT(catalog_->GetTier("t", "stable"),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("t")));

  VersionName yanked = Published("llama", "yanked", 'b');
  ASSERT_THAT(catalog_->YankVersion(yanked, "bad"), IsOk());
  EXPECT_THAT(catalog_->SetTier("t", "stable", yanked),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("YANKED")));

  EXPECT_THAT(catalog_->SetTier("t", "stable", {"llama", "nope"}),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("models/llama/versions/nope")));
  absl::StatusOr<ListPage<v1::TierBinding>> tiers = catalog_->ListTiers(10, "");
  ASSERT_THAT(tiers, IsOk());
  EXPECT_THAT(tiers->items, IsEmpty());
}

TEST_F(CatalogTest, YankFallsBackToThePreviousBindingAndBumpsSequence) {
  VersionName v1 = Published("llama", "v1", 'a');
  VersionName v2 = Published("llama", "v2", 'b');
  ASSERT_THAT(catalog_->SetTier("llama8b", "stable", v1), IsOk());  // kT0
  ASSERT_THAT(catalog_->SetTier("llama8b", "stable", v2), IsOk());  // kT0 + 1
  ASSERT_THAT(catalog_->SetTier("other", "stable", v1), IsOk());    // kT0

  Advance(absl::Seconds(30));
  absl::StatusOr<v1::Version> yanked = catalog_->YankVersion(v2, "crashes on A15");
  ASSERT_THAT(yanked, IsOk());
  EXPECT_EQ(yanked->state(), v1::Version::YANKED);
  EXPECT_EQ(yanked->yank_reason(), "crashes on A15");
  EXPECT_EQ(Seconds(yanked->yank_time()), 1'700'000'030);
  EXPECT_EQ(Seconds(yanked->publish_time()), 1'700'000'000);

  absl::StatusOr<v1::TierBinding> fallback = catalog_->GetTier("llama8b", "stable");
  ASSERT_THAT(fallback, IsOk());
  EXPECT_EQ(fallback->version(), "models/llama/versions/v1");
  EXPECT_EQ(fallback->sequence(), kT0 + 30'000'000);
  EXPECT_EQ(Seconds(fallback->update_time()), 1'700'000'030);
  // A tier that never resolved to v2 is untouched.
  EXPECT_EQ(catalog_->GetTier("other", "stable")->sequence(), kT0);

  // Yanking the last good version leaves the tiers resolving to nothing.
  Advance(absl::Seconds(30));
  ASSERT_THAT(catalog_->YankVersion(v1, "also bad"), IsOk());
  absl::StatusOr<v1::TierBinding> empty = catalog_->GetTier("llama8b", "stable");
  ASSERT_THAT(empty, IsOk());
  EXPECT_EQ(empty->version(), "");
  EXPECT_EQ(empty->sequence(), kT0 + 60'000'000);
  EXPECT_EQ(catalog_->GetTier("other", "stable")->version(), "");
  EXPECT_EQ(catalog_->GetTier("other", "stable")->sequence(), kT0 + 60'000'000);

  // Binding again continues the sequence.
  VersionName v3 = Published("llama", "v3", 'c');
  absl::StatusOr<v1::TierBinding> rebound = catalog_->SetTier("llama8b", "stable", v3);
  ASSERT_THAT(rebound, IsOk());
  EXPECT_EQ(rebound->sequence(), kT0 + 60'000'001);
}

TEST_F(CatalogTest, YankOfAnOlderBindingDoesNotBumpSequence) {
  VersionName v1 = Published("llama", "v1", 'a');
  VersionName v2 = Published("llama", "v2", 'b');
  ASSERT_THAT(catalog_->SetTier("llama8b", "stable", v1), IsOk());
  ASSERT_THAT(catalog_->SetTier("llama8b", "stable", v2), IsOk());
  ASSERT_THAT(catalog_->YankVersion(v1, "old"), IsOk());
  absl::StatusOr<v1::TierBinding> binding = catalog_->GetTier("llama8b", "stable");
  ASSERT_THAT(binding, IsOk());
  EXPECT_EQ(binding->version(), "models/llama/versions/v2");
  EXPECT_EQ(binding->sequence(), kT0 + 1);
}

// Publishing the same thing twice must change nothing: binding the version the tier/channel is
// bound to writes no history row, takes no new sequence and leaves no audit entry.
TEST_F(CatalogTest, SetTierOfTheBoundVersionChangesNothing) {
  VersionName v1 = Published("llama", "v1", 'a');
  absl::StatusOr<v1::TierBinding> first = catalog_->SetTier("llama8b", "stable", v1);
  ASSERT_THAT(first, IsOk());
  const size_t audit_before = AuditEntries();
  ASSERT_EQ(HistoryRows(), 1);

  Advance(absl::Seconds(5));
  absl::StatusOr<v1::TierBinding> again = catalog_->SetTier("llama8b", "stable", v1, "ci");
  ASSERT_THAT(again, IsOk());
  // The current binding comes back: same version, sequence and update time.
  EXPECT_TRUE(MessageDifferencer::Equals(*again, *first)) << again->DebugString();
  EXPECT_EQ(again->sequence(), kT0);
  EXPECT_TRUE(MessageDifferencer::Equals(*catalog_->GetTier("llama8b", "stable"), *first));
  EXPECT_EQ(HistoryRows(), 1);
  EXPECT_EQ(AuditEntries(), audit_before);

  // Resolving to the version is not enough: after a yank fell back to v1, the newest bind
  // names v2, and binding v1 again is a change of its own (history, sequence, audit entry).
  VersionName v2 = Published("llama", "v2", 'b');
  ASSERT_THAT(catalog_->SetTier("llama8b", "stable", v2), IsOk());  // the clock: kT0 + 5 s
  ASSERT_THAT(catalog_->YankVersion(v2, "bad"), IsOk());            // + 1, back on v1
  const size_t audit_after_yank = AuditEntries();
  absl::StatusOr<v1::TierBinding> rebound = catalog_->SetTier("llama8b", "stable", v1);
  ASSERT_THAT(rebound, IsOk());
  EXPECT_EQ(rebound->version(), "models/llama/versions/v1");
  EXPECT_EQ(rebound->sequence(), kT0 + 5'000'002);
  EXPECT_EQ(HistoryRows(), 3);
  EXPECT_EQ(AuditEntries(), audit_after_yank + 1);
  // And now it is the newest bind: once more is a no-op again.
  absl::StatusOr<v1::TierBinding> once_more = catalog_->SetTier("llama8b", "stable", v1);
  ASSERT_THAT(once_more, IsOk());
  EXPECT_EQ(once_more->sequence(), kT0 + 5'000'002);
  EXPECT_EQ(HistoryRows(), 3);
}

TEST_F(CatalogTest, ListTiersPagesInTierChannelOrder) {
  VersionName v1 = Published("llama", "v1");
  for (const auto& [tier, channel] : std::vector<std::pair<std::string, std::string>>{
           {"b", "stable"}, {"a", "stable"}, {"a", "beta"}, {"c", "beta"}, {"b", "beta"}}) {
    ASSERT_THAT(catalog_->SetTier(tier, channel, v1), IsOk());
  }
  std::vector<std::string> seen;
  std::string token;
  int pages = 0;
  do {
    absl::StatusOr<ListPage<v1::TierBinding>> page = catalog_->ListTiers(2, token);
    ASSERT_THAT(page, IsOk());
    ++pages;
    for (const v1::TierBinding& b : page->items) {
      seen.push_back(absl::StrCat(b.tier(), "/", b.channel()));
      EXPECT_EQ(b.version(), "models/llama/versions/v1");
      EXPECT_EQ(b.sequence(), kT0);
    }
    token = page->next_page_token;
  } while (!token.empty());
  EXPECT_EQ(pages, 3);
  EXPECT_THAT(seen, ElementsAre("a/beta", "a/stable", "b/beta", "b/stable", "c/beta"));
}

TEST_F(CatalogTest, ResolveAllTiersSkipsTiersWithNothingPublished) {
  VersionName v1 = Published("llama", "v1", 'a');
  VersionName v2 = Published("llama", "v2", 'b');
  ASSERT_THAT(catalog_->SetTier("a", "stable", v1), IsOk());
  ASSERT_THAT(catalog_->SetTier("b", "stable", v2), IsOk());
  ASSERT_THAT(catalog_->SetTier("c", "beta", v1), IsOk());
  ASSERT_THAT(catalog_->SetTier("c", "beta", v2), IsOk());
  ASSERT_THAT(catalog_->YankVersion(v2, "bad"), IsOk());

  absl::StatusOr<std::vector<ResolvedTier>> resolved = catalog_->ResolveAllTiers();
  ASSERT_THAT(resolved, IsOk());
  ASSERT_EQ(resolved->size(), 2u);  // b/stable resolves to nothing
  EXPECT_EQ((*resolved)[0].binding.tier(), "a");
  EXPECT_EQ((*resolved)[0].binding.version(), "models/llama/versions/v1");
  EXPECT_EQ((*resolved)[0].binding.sequence(), kT0);
  EXPECT_EQ((*resolved)[1].binding.tier(), "c");
  EXPECT_EQ((*resolved)[1].binding.channel(), "beta");
  EXPECT_EQ((*resolved)[1].binding.version(), "models/llama/versions/v1");
  EXPECT_EQ((*resolved)[1].binding.sequence(), kT0 + 2);  // bind, bind, yank
  for (const ResolvedTier& r : *resolved) {
    EXPECT_EQ(r.version.name(), "models/llama/versions/v1");
    EXPECT_EQ(r.version.state(), v1::Version::PUBLISHED);
    ASSERT_EQ(r.version.artifacts_size(), 1);
    EXPECT_EQ(r.version.artifacts(0).digest(), Digest('a'));
  }
}

}  // namespace
}  // namespace modeldist::storage
