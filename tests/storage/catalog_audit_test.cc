// Tests of the audit log, trust roots and damaged-blob records (storage/catalog_audit.cc).
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/status.h"
#include "gtest/gtest.h"
#include "tests/storage/catalog_fixture.h"

namespace modeldist::storage {
namespace {

// --- Audit log ------------------------------------------------------------------------------

TEST_F(RolloutTest, EveryMutationIsAuditedWithActorAndAction) {
  ASSERT_THAT(catalog_->CreateModel("llama", "", "alice@laptop"), IsOk());
  VersionName v1{"llama", "v1"};
  VersionName v2{"llama", "v2"};
  ASSERT_THAT(catalog_->CreateVersion(v1, {MacArtifact(Digest('a'), 1)}, "bob"), IsOk());
  ASSERT_THAT(catalog_->CreateVersion(v2, {MacArtifact(Digest('b'), 1)}), IsOk());
  ASSERT_THAT(catalog_->PublishVersion(v1, Uploaded, "carol"), IsOk());
  ASSERT_THAT(catalog_->PublishVersion(v2, Uploaded, ""), IsOk());  // empty = default actor
  ASSERT_THAT(catalog_->SetTier(kTier, kStable, v1, "dave"), IsOk());
  ASSERT_THAT(catalog_->StartRollout(kTier, kStable, v2, 100, "erin"), IsOk());
  ASSERT_THAT(catalog_->AdvanceRollout(kTier, kStable, 500, "erin"), IsOk());
  ASSERT_THAT(catalog_->PauseRollout(kTier, kStable, "erin"), IsOk());
  ASSERT_THAT(catalog_->ResumeRollout(kTier, kStable, "erin"), IsOk());
  ASSERT_THAT(catalog_->CompleteRollout(kTier, kStable, "erin"), IsOk());
  ASSERT_THAT(catalog_->PinDevices(kTier, kStable, {"d1", "d2"}, v1, "frank"), IsOk());
  ASSERT_THAT(catalog_->UnpinDevices(kTier, kStable, {"d2"}, "frank"), IsOk());
  VersionName v3 = {"llama", "v3"};
  ASSERT_THAT(catalog_->CreateVersion(v3, {MacArtifact(Digest('c'), 1)}), IsOk());
  ASSERT_THAT(catalog_->PublishVersion(v3, Uploaded), IsOk());
  ASSERT_THAT(catalog_->StartRollout(kTier, kStable, v3, 10), IsOk());
  ASSERT_THAT(catalog_->AbortRollout(kTier, kStable, "gina"), IsOk());
  ASSERT_THAT(catalog_->YankVersion(v1, "broken", "hank"), IsOk());
  ASSERT_THAT(catalog_->AppendTrustRoot(1, "root-1", "ivan"), IsOk());
  ASSERT_THAT(catalog_->AppendAudit("judy", "RotateSigningKeys", "keys", "rotated 2 keys"), IsOk());

  std::vector<v1::AuditEntry> entries = Audit();
  std::vector<std::string> seen;
  for (const v1::AuditEntry& e : entries) {
    seen.push_back(absl::StrCat(e.actor(), " ", e.action(), " ", e.resource()));
  }
  EXPECT_THAT(seen, ElementsAre("judy RotateSigningKeys keys",                //
                                "ivan AppendTrustRoot trustRoots/1",          //
                                "hank YankVersion models/llama/versions/v1",  //
                                "gina AbortRollout tiers/llama8b/channels/stable",
                                "admin StartRollout tiers/llama8b/channels/stable",
                                "admin PublishVersion models/llama/versions/v3",
                                "admin CreateVersion models/llama/versions/v3",
                                "frank UnpinDevices tiers/llama8b/channels/stable",
                                "frank PinDevices tiers/llama8b/channels/stable",
                                "erin CompleteRollout tiers/llama8b/channels/stable",
                                "erin ResumeRollout tiers/llama8b/channels/stable",
                                "erin PauseRollout tiers/llama8b/channels/stable",
                                "erin AdvanceRollout tiers/llama8b/channels/stable",
                                "erin StartRollout tiers/llama8b/channels/stable",
                                "dave SetTier tiers/llama8b/channels/stable",
                                "admin PublishVersion models/llama/versions/v2",
                                "carol PublishVersion models/llama/versions/v1",
                                "admin CreateVersion models/llama/versions/v2",
                                "bob CreateVersion models/llama/versions/v1",
                                "alice@laptop CreateModel models/llama"));
  for (size_t i = 1; i < entries.size(); ++i) EXPECT_LT(entries[i].id(), entries[i - 1].id());
  EXPECT_EQ(entries.back().time().seconds(), 1'700'000'000);
  // Details say what changed, with the sequence where devices see it.
  EXPECT_EQ(entries[14].details(),
            absl::StrCat("bound to models/llama/versions/v1 (sequence ", kT0, ")"));
  EXPECT_EQ(
      entries[13].details(),
      absl::StrCat("r-1: models/llama/versions/v1 -> models/llama/versions/v2 at 100 bp (sequence ",
                   kT0 + 1, ")"));
  EXPECT_EQ(entries[12].details(), absl::StrCat("r-1: 100 -> 500 bp (sequence ", kT0 + 2, ")"));
  EXPECT_EQ(
      entries[9].details(),
      absl::StrCat("r-1 completed: bound to models/llama/versions/v2 (sequence ", kT0 + 5, ")"));
  EXPECT_EQ(entries[8].details(),
            absl::StrCat("pinned 2 device(s) to models/llama/versions/v1, 2 changed (sequence ",
                         kT0 + 6, ")"));
  EXPECT_EQ(entries[7].details(),
            absl::StrCat("unpinned 1 of 1 device(s) (sequence ", kT0 + 7, ")"));
  EXPECT_THAT(entries[2].details(), AllOf(HasSubstr("\"broken\""), HasSubstr("1 pin(s) removed"),
                                          HasSubstr("tiers/llama8b/channels/stable (sequence")));
  EXPECT_EQ(entries[0].details(), "rotated 2 keys");
}

TEST_F(RolloutTest, FailedMutationsLeaveNoAuditEntry) {
  auto [v1, v2] = BoundTier();
  const size_t before = Audit().size();
  EXPECT_THAT(catalog_->CreateModel("llama", ""),
              StatusIs(absl::StatusCode::kAlreadyExists, HasSubstr("models/llama")));
  EXPECT_THAT(catalog_->SetTier(kTier, kStable, {"llama", "nope"}),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("nope")));
  EXPECT_THAT(catalog_->AbortRollout(kTier, kStable),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("no ACTIVE or PAUSED rollout")));
  EXPECT_THAT(catalog_->AppendTrustRoot(2, "x"),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("version 1")));
  EXPECT_EQ(Audit().size(), before);
}

TEST_F(RolloutTest, AuditLogPagesNewestFirst) {
  for (int i = 0; i < 25; ++i) {
    ASSERT_THAT(catalog_->AppendAudit("a", "Test", absl::StrCat("r", i), ""), IsOk());
  }
  std::vector<std::string> resources;
  std::vector<size_t> sizes;
  std::string token;
  do {
    absl::StatusOr<ListPage<v1::AuditEntry>> page = catalog_->ListAuditLog(10, token);
    ASSERT_THAT(page, IsOk());
    sizes.push_back(page->items.size());
    for (const v1::AuditEntry& e : page->items) resources.push_back(e.resource());
    token = page->next_page_token;
    // A new entry between pages is newer than the cursor: it never shows up in later pages.
    ASSERT_THAT(catalog_->AppendAudit("a", "Test", "late", ""), IsOk());
  } while (!token.empty());
  EXPECT_THAT(sizes, ElementsAre(10, 10, 5));
  ASSERT_EQ(resources.size(), 25u);
  for (int i = 0; i < 25; ++i) EXPECT_EQ(resources[i], absl::StrCat("r", 24 - i));

  absl::StatusOr<ListPage<v1::AuditEntry>> bad = catalog_->ListAuditLog(10, "garbage!");
  EXPECT_THAT(bad, StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("page_token")));
  EXPECT_EQ(ErrorReason(bad.status()), "INVALID_PAGE_TOKEN");
  absl::StatusOr<ListPage<v1::AuditEntry>> negative = catalog_->ListAuditLog(-1, "");
  EXPECT_THAT(negative, StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("page_size")));
  EXPECT_EQ(ErrorMetadataValue(negative.status(), "field"), "page_size");
  // Another list's token is refused.
  absl::StatusOr<ListPage<v1::Model>> models = catalog_->ListModels(1, "");
  ASSERT_THAT(models, IsOk());
  EXPECT_THAT(catalog_->CreateModel("a", ""), IsOk());
  EXPECT_THAT(catalog_->CreateModel("b", ""), IsOk());
  absl::StatusOr<ListPage<v1::Model>> two = catalog_->ListModels(1, "");
  ASSERT_THAT(two, IsOk());
  EXPECT_THAT(catalog_->ListAuditLog(10, two->next_page_token),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("page_token")));
}

// --- Trust roots ----------------------------------------------------------------------------

TEST_F(RolloutTest, TrustRootChainIsGapFree) {
  absl::StatusOr<std::string> none = catalog_->GetTrustRoot(0);
  EXPECT_THAT(none, StatusIs(absl::StatusCode::kNotFound, HasSubstr("no trust root")));
  EXPECT_EQ(ErrorReason(none.status()), "TRUST_ROOT_NOT_FOUND");

  absl::Status not_first = catalog_->AppendTrustRoot(2, "two");
  EXPECT_THAT(not_first,
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("must be version 1")));
  EXPECT_EQ(ErrorReason(not_first), "ROOT_VERSION_GAP");
  EXPECT_EQ(ErrorMetadataValue(not_first, "expected"), "1");
  EXPECT_THAT(catalog_->AppendTrustRoot(0, "zero"),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("must be version 1")));

  // Signed roots are binary: NUL bytes survive.
  const std::string root1("root\0one", 8);
  ASSERT_THAT(catalog_->AppendTrustRoot(1, root1, "ops"), IsOk());
  ASSERT_THAT(catalog_->AppendTrustRoot(2, "root two"), IsOk());

  absl::Status gap = catalog_->AppendTrustRoot(4, "four");
  EXPECT_THAT(gap, StatusIs(absl::StatusCode::kFailedPrecondition,
                            AllOf(HasSubstr("version 4"), HasSubstr("must be version 3"))));
  EXPECT_EQ(ErrorReason(gap), "ROOT_VERSION_GAP");
  absl::Status again = catalog_->AppendTrustRoot(2, "other two");
  EXPECT_THAT(again, StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("version 3")));
  EXPECT_EQ(ErrorReason(again), "ROOT_VERSION_GAP");

  EXPECT_EQ(*catalog_->GetTrustRoot(0), "root two");
  EXPECT_EQ(*catalog_->GetTrustRoot(1), root1);
  EXPECT_EQ(*catalog_->GetTrustRoot(2), "root two");
  absl::StatusOr<std::string> missing = catalog_->GetTrustRoot(3);
  EXPECT_THAT(missing, StatusIs(absl::StatusCode::kNotFound, HasSubstr("version 3")));
  EXPECT_EQ(ErrorReason(missing.status()), "TRUST_ROOT_NOT_FOUND");
  EXPECT_THAT(catalog_->GetTrustRoot(-1), StatusIs(absl::StatusCode::kNotFound, HasSubstr("-1")));

  Reopen();
  EXPECT_EQ(*catalog_->GetTrustRoot(0), "root two");
  ASSERT_THAT(catalog_->AppendTrustRoot(3, "root three"), IsOk());
  EXPECT_EQ(*catalog_->GetTrustRoot(0), "root three");

  std::vector<v1::AuditEntry> audit = Audit();
  ASSERT_EQ(audit.size(), 3u);
  EXPECT_EQ(audit[2].actor(), "ops");
  EXPECT_EQ(audit[2].action(), "AppendTrustRoot");
  EXPECT_EQ(audit[2].resource(), "trustRoots/1");
  EXPECT_EQ(audit[2].details(), "trust root version 1 (8 bytes)");
}

// --- Damaged blobs --------------------------------------------------------------------------

TEST_F(CatalogTest, DamagedBlobsAreRecordedOnceWithAnAuditEntryAndCleared) {
  const std::string digest = Digest('a');
  const size_t before = AuditEntries();
  EXPECT_THAT(catalog_->MarkBlobDamaged(digest, "chunk 2 of 3 does not match", "server"),
              IsOkAndHolds(true));
  EXPECT_THAT(catalog_->MarkBlobDamaged(digest, "again", "server"), IsOkAndHolds(false));
  EXPECT_EQ(AuditEntries(), before + 1) << "one entry per incident";
  absl::StatusOr<std::vector<DamagedBlob>> damaged = catalog_->ListDamagedBlobs();
  ASSERT_THAT(damaged, IsOk());
  ASSERT_EQ(damaged->size(), 1u);
  EXPECT_EQ((*damaged)[0].digest, digest);
  EXPECT_EQ((*damaged)[0].details, "chunk 2 of 3 does not match");
  EXPECT_EQ((*damaged)[0].detect_time, absl::FromUnixMicros(kT0));
  absl::StatusOr<ListPage<v1::AuditEntry>> audit = catalog_->ListAuditLog(1, "");
  ASSERT_THAT(audit, IsOk());
  EXPECT_EQ(audit->items[0].action(), "BlobDamaged");
  EXPECT_EQ(audit->items[0].resource(), digest);
  EXPECT_EQ(audit->items[0].actor(), "server");

  Reopen();  // durable
  EXPECT_THAT(catalog_->ClearBlobDamaged(digest, "stored again", "server"), IsOkAndHolds(true));
  EXPECT_THAT(catalog_->ClearBlobDamaged(digest, "stored again", "server"), IsOkAndHolds(false));
  EXPECT_EQ(AuditEntries(), before + 2);
  EXPECT_THAT(catalog_->ListDamagedBlobs(), IsOkAndHolds(::testing::IsEmpty()));
}

}  // namespace
}  // namespace modeldist::storage
