// Tests of device pins (storage/catalog_pins.cc).
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/status.h"
#include "gtest/gtest.h"
#include "tests/storage/catalog_fixture.h"

namespace modeldist::storage {
namespace {

// --- Pins -----------------------------------------------------------------------------------

TEST_F(RolloutTest, PinDevicesAddsAndReplaces) {
  auto [v1, v2] = BoundTier();
  Advance(absl::Seconds(3));
  absl::StatusOr<Catalog::PinChange> pinned = catalog_->PinDevices(kTier, kStable, {"b", "a"}, v2);
  ASSERT_THAT(pinned, IsOk());
  EXPECT_EQ(pinned->changed, 2);
  EXPECT_EQ(pinned->sequence, kT0 + 3'000'000);  // the clock, 3 s on
  EXPECT_EQ(Sequence(), kT0 + 3'000'000);

  // Re-pinning to the same version changes nothing: no bump.
  absl::StatusOr<Catalog::PinChange> same = catalog_->PinDevices(kTier, kStable, {"a", "a"}, v2);
  ASSERT_THAT(same, IsOk());
  EXPECT_EQ(same->changed, 0);
  EXPECT_EQ(same->sequence, kT0 + 3'000'000);

  // Moving one pin and adding one: two changes, one bump.
  absl::StatusOr<Catalog::PinChange> moved = catalog_->PinDevices(kTier, kStable, {"a", "c"}, v1);
  ASSERT_THAT(moved, IsOk());
  EXPECT_EQ(moved->changed, 2);
  EXPECT_EQ(moved->sequence, kT0 + 3'000'001);

  absl::StatusOr<ListPage<v1::DevicePin>> pins = catalog_->ListPins(0, "");
  ASSERT_THAT(pins, IsOk());
  ASSERT_EQ(pins->items.size(), 3u);
  EXPECT_EQ(pins->items[0].device_id(), "a");
  EXPECT_EQ(pins->items[0].version(), "models/llama/versions/v1");
  EXPECT_EQ(pins->items[1].device_id(), "b");
  EXPECT_EQ(pins->items[1].version(), "models/llama/versions/v2");
  EXPECT_EQ(pins->items[1].tier(), kTier);
  EXPECT_EQ(pins->items[1].channel(), kStable);
  EXPECT_EQ(pins->items[1].create_time().seconds(), 1'700'000'003);
  EXPECT_EQ(pins->items[2].device_id(), "c");

  absl::StatusOr<std::vector<ResolvedTier>> resolved = catalog_->ResolveAllTiers();
  ASSERT_THAT(resolved, IsOk());
  ASSERT_EQ(resolved->size(), 1u);
  const ResolvedTier& tier = resolved->front();
  ASSERT_EQ(tier.pins.size(), 3u);
  EXPECT_EQ(tier.pins[0].device_id(), "a");
  EXPECT_EQ(tier.pins[2].device_id(), "c");
  ASSERT_EQ(tier.pinned_versions.size(), 2u);
  EXPECT_EQ(tier.pinned_versions.at("models/llama/versions/v1").artifacts(0).digest(), Digest('a'));
  EXPECT_EQ(tier.pinned_versions.at("models/llama/versions/v2").artifacts(0).digest(), Digest('b'));
}

TEST_F(RolloutTest, PinDevicesErrors) {
  VersionName v1 = Published("llama", "v1", 'a');
  absl::StatusOr<Catalog::PinChange> unbound = catalog_->PinDevices(kTier, kStable, {"d"}, v1);
  EXPECT_THAT(unbound, StatusIs(absl::StatusCode::kNotFound, HasSubstr("never bound")));
  EXPECT_EQ(ErrorReason(unbound.status()), "TIER_NOT_FOUND");

  ASSERT_THAT(catalog_->SetTier(kTier, kStable, v1), IsOk());
  absl::StatusOr<Catalog::PinChange> missing =
      catalog_->PinDevices(kTier, kStable, {"d"}, {"llama", "nope"});
  EXPECT_THAT(missing, StatusIs(absl::StatusCode::kNotFound, HasSubstr("versions/nope")));
  EXPECT_EQ(ErrorReason(missing.status()), "VERSION_NOT_FOUND");
  absl::StatusOr<Catalog::PinChange> no_model =
      catalog_->PinDevices(kTier, kStable, {"d"}, {"ghost", "v1"});
  EXPECT_THAT(no_model, StatusIs(absl::StatusCode::kNotFound, HasSubstr("models/ghost")));

  VersionName draft{"llama", "draft"};
  ASSERT_THAT(catalog_->CreateVersion(draft, {MacArtifact(Digest('d'), 1)}), IsOk());
  absl::StatusOr<Catalog::PinChange> on_draft = catalog_->PinDevices(kTier, kStable, {"d"}, draft);
  EXPECT_THAT(on_draft, StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("DRAFT")));
  EXPECT_EQ(ErrorReason(on_draft.status()), "VERSION_NOT_PUBLISHED");

  VersionName yanked = Published("llama", "yanked", 'e');
  ASSERT_THAT(catalog_->YankVersion(yanked, "x"), IsOk());
  absl::StatusOr<Catalog::PinChange> on_yanked =
      catalog_->PinDevices(kTier, kStable, {"d"}, yanked);
  EXPECT_THAT(on_yanked, StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("YANKED")));
  EXPECT_EQ(ErrorReason(on_yanked.status()), "VERSION_NOT_PUBLISHED");

  EXPECT_EQ(Sequence(), kT0);
  EXPECT_THAT(catalog_->ListPins(0, "")->items, IsEmpty());
}

TEST_F(RolloutTest, UnpinDevices) {
  auto [v1, v2] = BoundTier();
  absl::StatusOr<Catalog::PinChange> unbound = catalog_->UnpinDevices("nope", kStable, {"a"});
  EXPECT_THAT(unbound, StatusIs(absl::StatusCode::kNotFound, HasSubstr("nope")));
  EXPECT_EQ(ErrorReason(unbound.status()), "TIER_NOT_FOUND");

  ASSERT_THAT(catalog_->PinDevices(kTier, kStable, {"a", "b", "c"}, v2), IsOk());  // kT0 + 1
  absl::StatusOr<Catalog::PinChange> removed =
      catalog_->UnpinDevices(kTier, kStable, {"a", "zzz", "c"});
  ASSERT_THAT(removed, IsOk());
  EXPECT_EQ(removed->changed, 2);  // unknown ids are ignored
  EXPECT_EQ(removed->sequence, kT0 + 2);

  absl::StatusOr<Catalog::PinChange> nothing = catalog_->UnpinDevices(kTier, kStable, {"a", "q"});
  ASSERT_THAT(nothing, IsOk());
  EXPECT_EQ(nothing->changed, 0);
  EXPECT_EQ(nothing->sequence, kT0 + 2);
  EXPECT_EQ(Sequence(), kT0 + 2);

  absl::StatusOr<ListPage<v1::DevicePin>> pins = catalog_->ListPins(0, "");
  ASSERT_THAT(pins, IsOk());
  ASSERT_EQ(pins->items.size(), 1u);
  EXPECT_EQ(pins->items[0].device_id(), "b");
}

TEST_F(RolloutTest, ListPinsPagesInTierChannelDeviceOrder) {
  auto [v1, v2] = BoundTier();
  ASSERT_THAT(catalog_->SetTier("a", "beta", v1), IsOk());
  ASSERT_THAT(catalog_->SetTier("a", "stable", v1), IsOk());
  ASSERT_THAT(catalog_->PinDevices(kTier, kStable, {"d2", "d1"}, v2), IsOk());
  ASSERT_THAT(catalog_->PinDevices("a", "stable", {"d9"}, v2), IsOk());
  ASSERT_THAT(catalog_->PinDevices("a", "beta", {"d5", "d3"}, v2), IsOk());

  std::vector<std::string> seen;
  std::string token;
  int pages = 0;
  do {
    absl::StatusOr<ListPage<v1::DevicePin>> page = catalog_->ListPins(2, token);
    ASSERT_THAT(page, IsOk());
    ++pages;
    for (const v1::DevicePin& p : page->items) {
      seen.push_back(absl::StrCat(p.tier(), "/", p.channel(), "/", p.device_id()));
    }
    token = page->next_page_token;
  } while (!token.empty());
  EXPECT_EQ(pages, 3);
  EXPECT_THAT(seen, ElementsAre("a/beta/d3", "a/beta/d5", "a/stable/d9", "llama8b/stable/d1",
                                "llama8b/stable/d2"));
  EXPECT_THAT(catalog_->ListPins(2, "bad token"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("page_token")));
  EXPECT_THAT(catalog_->ListPins(-2, ""),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("page_size")));
}

}  // namespace
}  // namespace modeldist::storage
