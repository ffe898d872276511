// Tests of the catalog's rollouts, device pins, audit log, trust roots, artifact constraints
// and of migration 0002 (what migrations/0002_rollouts_pins_audit.sql adds).
#include <sqlite3.h>

#include <algorithm>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "common/status.h"
#include "gmock/gmock.h"
#include "google/protobuf/util/message_differencer.h"
#include "gtest/gtest.h"
#include "storage/catalog.h"
#include "storage/migrations.h"
#include "tests/testing/test_util.h"

namespace modeldist::storage {
namespace {

using ::google::protobuf::util::MessageDifferencer;
using ::modeldist::testing::IsOk;
using ::modeldist::testing::ScratchDir;
using ::modeldist::testing::StatusIs;
using ::testing::AllOf;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

constexpr char kTier[] = "llama8b";
constexpr char kStable[] = "stable";
constexpr char kTierResource[] = "tiers/llama8b/channels/stable";
// The fixture's clock at the start, in microseconds since the Unix epoch: a tier's first
// sequence. While the clock stands still each change adds one; once it moves on, the next
// change takes the clock (catalog.h, "Sequences").
constexpr int64_t kT0 = 1'700'000'000'000'000;

std::string Digest(char c) { return "sha256:" + std::string(64, c); }

v1::Artifact MacArtifact(const std::string& digest, int64_t size) {
  v1::Artifact artifact;
  artifact.set_platform(v1::PLATFORM_MACOS);
  artifact.set_arch(v1::ARCH_ARM64);
  artifact.set_format(v1::FORMAT_COREML_ZIP);
  artifact.set_digest(digest);
  artifact.set_size_bytes(size);
  return artifact;
}

bool Uploaded(const std::string&) { return true; }

// Runs `sql` through a second connection; returns the SQLite result code.
int ExecRaw(const std::string& path, const std::string& sql) {
  sqlite3* db = nullptr;
  EXPECT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
  sqlite3_extended_result_codes(db, 1);
  int rc = sqlite3_exec(db, sql.c_str(), nullptr, nullptr, nullptr);
  sqlite3_close(db);
  return rc;
}

// The first column of the first row of `sql` as text, through a second connection.
std::string QueryRaw(const std::string& path, const std::string& sql) {
  sqlite3* db = nullptr;
  EXPECT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
  sqlite3_stmt* stmt = nullptr;
  EXPECT_EQ(sqlite3_prepare_v2(db, sql.c_str(), -1, &stmt, nullptr), SQLITE_OK) << sql;
  std::string result = "<none>";
  if (stmt != nullptr && sqlite3_step(stmt) == SQLITE_ROW) {
    const unsigned char* text = sqlite3_column_text(stmt, 0);
    result = text ? reinterpret_cast<const char*>(text) : "<null>";
  }
  sqlite3_finalize(stmt);
  sqlite3_close(db);
  return result;
}

class RolloutTest : public ::testing::Test {
 protected:
  void SetUp() override { Reopen(); }

  void Reopen() {
    catalog_.reset();
    Catalog::Options options;
    options.now = [this] {
      absl::MutexLock lock(&clock_mu_);
      return now_;
    };
    absl::StatusOr<std::unique_ptr<Catalog>> opened = Catalog::Open(path(), options);
    ASSERT_THAT(opened, IsOk());
    catalog_ = std::move(opened).value();
  }

  void Advance(absl::Duration d) {
    absl::MutexLock lock(&clock_mu_);
    now_ += d;
  }

  std::string path() const { return dir_.Join("catalog.db"); }

  // Creates `model` (if needed) and a PUBLISHED `version` with one artifact of `digest`.
  VersionName Published(const std::string& model, const std::string& version, char digest = 'a') {
    if (!catalog_->GetModel(model).ok()) {
      EXPECT_THAT(catalog_->CreateModel(model, ""), IsOk());
    }
    VersionName name{model, version};
    EXPECT_THAT(catalog_->CreateVersion(name, {MacArtifact(Digest(digest), 100)}), IsOk());
    EXPECT_THAT(catalog_->PublishVersion(name, Uploaded), IsOk());
    return name;
  }

  // The sequence of llama8b/stable; -1 when it cannot be read.
  int64_t Sequence() {
    absl::StatusOr<v1::TierBinding> binding = catalog_->GetTier(kTier, kStable);
    EXPECT_THAT(binding, IsOk());
    return binding.ok() ? binding->sequence() : -1;
  }

  // The version of llama8b/stable's newest bind (read from the file, as the API shows only
  // what the tier resolves to); "<none>" when never bound.
  std::string NewestBind() {
    return QueryRaw(
        path(),
        "SELECT 'models/' || model_id || '/versions/' || version_id FROM tier_history"
        " WHERE tier = 'llama8b' AND channel = 'stable' ORDER BY sequence DESC LIMIT 1");
  }

  // Every audit entry, newest first.
  std::vector<v1::AuditEntry> Audit() {
    absl::StatusOr<ListPage<v1::AuditEntry>> page = catalog_->ListAuditLog(1000, "");
    EXPECT_THAT(page, IsOk());
    return page.ok() ? page->items : std::vector<v1::AuditEntry>{};
  }

  // Binds llama8b/stable to a fresh v1 and returns {v1, v2}, both PUBLISHED; the sequence is kT0.
  std::pair<VersionName, VersionName> BoundTier() {
    VersionName v1 = Published("llama", "v1", 'a');
    VersionName v2 = Published("llama", "v2", 'b');
    EXPECT_THAT(catalog_->SetTier(kTier, kStable, v1), IsOk());
    return {v1, v2};
  }

  ScratchDir dir_;  // declared first: outlives the catalog that keeps files in it
  absl::Mutex clock_mu_;
  absl::Time now_ = absl::FromUnixMicros(kT0);
  std::unique_ptr<Catalog> catalog_;
};

// --- Artifact constraints -------------------------------------------------------------------

TEST_F(RolloutTest, ConstraintsAndUnpackedSizeRoundTrip) {
  ASSERT_THAT(catalog_->CreateModel("llama", ""), IsOk());
  v1::Artifact constrained = MacArtifact(Digest('a'), 100);
  constrained.mutable_constraints()->set_min_os_version("14.0");
  constrained.mutable_constraints()->set_min_ram_bytes(8LL << 30);
  constrained.mutable_constraints()->add_required_accelerators(v1::ACCELERATOR_ANE);
  constrained.mutable_constraints()->add_required_accelerators(v1::ACCELERATOR_METAL);
  constrained.set_unpacked_size_bytes(250);
  v1::Artifact plain = MacArtifact(Digest('b'), 7);
  plain.set_platform(v1::PLATFORM_LINUX);
  v1::Artifact empty_constraints = MacArtifact(Digest('c'), 9);
  empty_constraints.set_platform(v1::PLATFORM_IOS);
  empty_constraints.mutable_constraints();  // present but empty

  VersionName name{"llama", "v1"};
  absl::StatusOr<v1::Version> created =
      catalog_->CreateVersion(name, {plain, constrained, empty_constraints});
  ASSERT_THAT(created, IsOk());
  ASSERT_EQ(created->artifacts_size(), 3);
  // Ordered by platform: MACOS=1, IOS=2, LINUX=3.
  EXPECT_TRUE(MessageDifferencer::Equals(created->artifacts(0), constrained))
      << created->artifacts(0).DebugString();
  EXPECT_TRUE(created->artifacts(1).has_constraints());
  EXPECT_FALSE(created->artifacts(2).has_constraints());
  EXPECT_EQ(created->artifacts(2).unpacked_size_bytes(), 0);

  absl::StatusOr<v1::Version> got = catalog_->GetVersion(name);
  ASSERT_THAT(got, IsOk());
  EXPECT_TRUE(MessageDifferencer::Equals(*got, *created)) << got->DebugString();

  ASSERT_THAT(catalog_->PublishVersion(name, Uploaded), IsOk());
  ASSERT_THAT(catalog_->SetTier(kTier, kStable, name), IsOk());
  absl::StatusOr<std::vector<ResolvedTier>> resolved = catalog_->ResolveAllTiers();
  ASSERT_THAT(resolved, IsOk());
  ASSERT_EQ(resolved->size(), 1u);
  const v1::Artifact& served = (*resolved)[0].version.artifacts(0);
  EXPECT_EQ(served.constraints().min_os_version(), "14.0");
  EXPECT_EQ(served.constraints().min_ram_bytes(), 8LL << 30);
  EXPECT_THAT(served.constraints().required_accelerators(),
              ElementsAre(v1::ACCELERATOR_ANE, v1::ACCELERATOR_METAL));
  EXPECT_EQ(served.unpacked_size_bytes(), 250);
}

TEST_F(RolloutTest, CorruptConstraintsAreInternalNotIgnored) {
  VersionName v1 = Published("llama", "v1");
  ASSERT_EQ(ExecRaw(path(), "UPDATE artifacts SET constraints = x'ffffffff'"), SQLITE_OK);
  absl::StatusOr<v1::Version> got = catalog_->GetVersion(v1);
  EXPECT_THAT(got, StatusIs(absl::StatusCode::kInternal, HasSubstr("do not parse")));
  EXPECT_EQ(ErrorReason(got.status()), "CATALOG_CORRUPT");
}

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

// --- Sequence -------------------------------------------------------------------------------

// 100 successful mixed changes on one tier/channel, chosen by a seeded generator, under a clock
// that stands still: every change of what devices see adds exactly one, everything else
// (failures, no-ops) adds nothing, and the value survives a reopen.
TEST_F(RolloutTest, SequenceGrowsByOnePerChangeAcrossMixedOperationsAndReopen) {
  std::vector<VersionName> published;
  int next_version = 0;
  auto publish = [&] {
    std::string id = absl::StrCat("v", next_version++);
    published.push_back(Published("llama", id, static_cast<char>('a' + next_version % 6)));
  };
  for (int i = 0; i < 4; ++i) publish();
  ASSERT_THAT(catalog_->SetTier(kTier, kStable, published[0]), IsOk());

  std::mt19937 random(20261125);
  auto pick = [&](size_t n) { return static_cast<size_t>(random() % n); };
  const std::vector<std::string> devices = {"d0", "d1", "d2", "d3", "d4"};
  auto some_devices = [&] {
    std::vector<std::string> out;
    for (const std::string& d : devices) {
      if (random() % 2 == 0) out.push_back(d);
    }
    return out;
  };

  int64_t sequence = Sequence();
  ASSERT_EQ(sequence, kT0);
  int changes = 0;
  int attempts = 0;
  int bumps = 0;
  while (changes < 100) {
    ASSERT_LT(++attempts, 5000) << "the generator stopped making progress";
    bool ok = false;
    bool expect_bump = false;
    switch (pick(10)) {
      case 0: {
        // Binding the version of the newest bind again is a no-op (every version in
        // `published` is PUBLISHED, so the tier resolves to it too).
        const VersionName& target = published[pick(published.size())];
        const bool already_bound = NewestBind() == target.ToString();
        ok = catalog_->SetTier(kTier, kStable, target).ok();
        expect_bump = ok && !already_bound;
        break;
      }
      case 1: {
        absl::StatusOr<v1::Rollout> r = catalog_->StartRollout(
            kTier, kStable, published[pick(published.size())], static_cast<int32_t>(pick(3000)));
        ok = r.ok();
        expect_bump = ok;
        break;
      }
      case 2: {
        absl::StatusOr<ListPage<v1::Rollout>> open = catalog_->ListRollouts(kTier, kStable, 1, "");
        ASSERT_THAT(open, IsOk());
        int32_t current = open->items.empty() ? 0 : open->items[0].basis_points();
        int32_t target = std::min<int32_t>(10000, current + static_cast<int32_t>(pick(3)) * 500);
        absl::StatusOr<v1::Rollout> r = catalog_->AdvanceRollout(kTier, kStable, target);
        ok = r.ok();
        expect_bump = ok && target != current;
        break;
      }
      case 3:
        ok = catalog_->PauseRollout(kTier, kStable).ok();
        expect_bump = ok;
        break;
      case 4:
        ok = catalog_->ResumeRollout(kTier, kStable).ok();
        expect_bump = ok;
        break;
      case 5:
        ok = (pick(2) == 0 ? catalog_->CompleteRollout(kTier, kStable)
                           : catalog_->AbortRollout(kTier, kStable))
                 .ok();
        expect_bump = ok;
        break;
      case 6: {
        absl::StatusOr<Catalog::PinChange> c =
            catalog_->PinDevices(kTier, kStable, some_devices(), published[pick(published.size())]);
        ok = c.ok();
        expect_bump = ok && c->changed > 0;
        if (ok) {
          EXPECT_EQ(c->sequence, sequence + (expect_bump ? 1 : 0));
        }
        break;
      }
      case 7: {
        absl::StatusOr<Catalog::PinChange> c =
            catalog_->UnpinDevices(kTier, kStable, some_devices());
        ok = c.ok();
        expect_bump = ok && c->changed > 0;
        if (ok) {
          EXPECT_EQ(c->sequence, sequence + (expect_bump ? 1 : 0));
        }
        break;
      }
      case 8: {
        if (published.size() < 3) {
          publish();
          continue;  // not a tier change
        }
        // Predict from the state before the yank whether llama8b/stable's answers change.
        size_t index = pick(published.size());
        const std::string victim = published[index].ToString();
        bool affects = catalog_->GetTier(kTier, kStable)->version() == victim;
        absl::StatusOr<ListPage<v1::Rollout>> open = catalog_->ListRollouts(kTier, kStable, 1, "");
        ASSERT_THAT(open, IsOk());
        if (!open->items.empty() && open->items[0].to_version() == victim &&
            (open->items[0].state() == v1::Rollout::ACTIVE ||
             open->items[0].state() == v1::Rollout::PAUSED)) {
          affects = true;
        }
        absl::StatusOr<ListPage<v1::DevicePin>> pins = catalog_->ListPins(0, "");
        ASSERT_THAT(pins, IsOk());
        for (const v1::DevicePin& pin : pins->items) {
          if (pin.version() == victim) affects = true;
        }
        ok = catalog_->YankVersion(published[index], "mixed").ok();
        ASSERT_TRUE(ok);
        published.erase(published.begin() + static_cast<long>(index));
        expect_bump = affects;
        break;
      }
      default:
        publish();
        continue;  // not a tier change
    }
    const int64_t now = Sequence();
    ASSERT_EQ(now, sequence + (expect_bump ? 1 : 0)) << "after attempt " << attempts;
    sequence = now;
    if (ok) ++changes;
    if (expect_bump) ++bumps;
  }
  EXPECT_GT(bumps, 50);  // the mix really exercised the bumping paths

  Reopen();
  EXPECT_EQ(Sequence(), sequence);
  // The next change continues from there, whichever kind it is.
  VersionName fresh = Published("llama", "fresh", 'f');
  absl::StatusOr<Catalog::PinChange> pinned = catalog_->PinDevices(kTier, kStable, {"new"}, fresh);
  ASSERT_THAT(pinned, IsOk());
  EXPECT_EQ(pinned->sequence, sequence + 1);
  absl::StatusOr<std::string> check = catalog_->IntegrityCheck();
  ASSERT_THAT(check, IsOk());
  EXPECT_EQ(*check, "ok");
}

// Every kind of change takes its sequence from the one rule: never below the clock in
// microseconds, one more than the previous while the clock stands still, and still one more
// when the clock goes back.
TEST_F(RolloutTest, EverySequenceIsAtLeastTheClockAndStrictlyIncreases) {
  auto [v1, v2] = BoundTier();
  VersionName v3 = Published("llama", "v3", 'c');
  std::vector<int64_t> issued = {Sequence()};
  auto changed = [&](const std::string& what) {
    const int64_t now = Sequence();
    EXPECT_EQ(now, issued.back() + 1) << what;
    issued.push_back(now);
  };
  EXPECT_EQ(issued.back(), kT0);  // the first bind: the clock
  ASSERT_THAT(catalog_->StartRollout(kTier, kStable, v2, 100), IsOk());
  changed("start");
  ASSERT_THAT(catalog_->AdvanceRollout(kTier, kStable, 200), IsOk());
  changed("advance");
  ASSERT_THAT(catalog_->PauseRollout(kTier, kStable), IsOk());
  changed("pause");
  ASSERT_THAT(catalog_->ResumeRollout(kTier, kStable), IsOk());
  changed("resume");
  ASSERT_THAT(catalog_->CompleteRollout(kTier, kStable), IsOk());
  changed("complete");
  ASSERT_THAT(catalog_->PinDevices(kTier, kStable, {"d"}, v1), IsOk());
  changed("pin");
  ASSERT_THAT(catalog_->UnpinDevices(kTier, kStable, {"d"}), IsOk());
  changed("unpin");
  ASSERT_THAT(catalog_->YankVersion(v2, "bad"), IsOk());  // falls back to v1
  changed("yank");
  ASSERT_THAT(catalog_->SetTier(kTier, kStable, v3), IsOk());
  changed("bind");
  EXPECT_EQ(issued.back(), kT0 + 9);

  // The clock moves on: the next change takes it, whatever its kind.
  Advance(absl::Seconds(2));
  ASSERT_THAT(catalog_->PinDevices(kTier, kStable, {"d"}, v3), IsOk());
  EXPECT_EQ(Sequence(), kT0 + 2'000'000);

  // The clock goes back an hour: sequences still only grow.
  Advance(-absl::Hours(1));
  ASSERT_THAT(catalog_->SetTier(kTier, kStable, v1), IsOk());
  EXPECT_EQ(Sequence(), kT0 + 2'000'001);
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

// --- Migration 0001 -> 0002 -----------------------------------------------------------------

TEST(Migration0002Test, UpgradesAVersionOneDatabaseKeepingItsData) {
  ScratchDir dir;
  const std::string path = dir.Join("catalog.db");
  {
    sqlite3* db = nullptr;
    ASSERT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
    ASSERT_GE(EmbeddedMigrations().size(), 2u);
    ASSERT_THAT(ApplyMigrations(db, {EmbeddedMigrations()[0]}), IsOk());
    ASSERT_THAT(ReadSchemaVersion(db), IsOk());
    EXPECT_EQ(*ReadSchemaVersion(db), 1);
    const std::string digest = Digest('a');
    const std::string rows = absl::StrCat(
        "INSERT INTO models VALUES ('llama', 'old', 1000000);"
        "INSERT INTO versions VALUES ('llama', 'v1', 2, 2000000, 3000000, NULL, '');"
        "INSERT INTO artifacts VALUES ('llama', 'v1', 1, 1, 1, '",
        digest,
        "', 42);"
        "INSERT INTO tiers VALUES ('llama8b', 'stable', 7, 4000000);"
        "INSERT INTO tier_history VALUES ('llama8b', 'stable', 7, 'llama', 'v1', 4000000);");
    ASSERT_EQ(sqlite3_exec(db, rows.c_str(), nullptr, nullptr, nullptr), SQLITE_OK)
        << sqlite3_errmsg(db);
    sqlite3_close(db);
  }

  Catalog::Options options;
  options.now = [] { return absl::FromUnixMicros(kT0); };
  absl::StatusOr<std::unique_ptr<Catalog>> opened = Catalog::Open(path, options);
  ASSERT_THAT(opened, IsOk());
  Catalog& catalog = **opened;
  // Upgraded to the newest schema (later migrations, e.g. 0003, run after 0002 too).
  EXPECT_EQ(catalog.SchemaVersion(), Catalog::LatestSchemaVersion());
  EXPECT_EQ(QueryRaw(path, "SELECT name FROM schema_migrations WHERE version = 2"),
            "rollouts_pins_audit");

  // Old rows survived; the new columns read as "nothing declared".
  EXPECT_EQ(catalog.GetModel("llama")->description(), "old");
  absl::StatusOr<v1::Version> version = catalog.GetVersion({"llama", "v1"});
  ASSERT_THAT(version, IsOk());
  EXPECT_EQ(version->state(), v1::Version::PUBLISHED);
  ASSERT_EQ(version->artifacts_size(), 1);
  EXPECT_EQ(version->artifacts(0).size_bytes(), 42);
  EXPECT_FALSE(version->artifacts(0).has_constraints());
  EXPECT_EQ(version->artifacts(0).unpacked_size_bytes(), 0);
  EXPECT_EQ(QueryRaw(path, "SELECT constraints IS NULL FROM artifacts"), "1");
  EXPECT_EQ(QueryRaw(path, "SELECT unpacked_size_bytes FROM artifacts"), "0");

  absl::StatusOr<std::vector<ResolvedTier>> resolved = catalog.ResolveAllTiers();
  ASSERT_THAT(resolved, IsOk());
  ASSERT_EQ(resolved->size(), 1u);
  EXPECT_EQ((*resolved)[0].binding.sequence(), 7);
  EXPECT_EQ((*resolved)[0].binding.version(), "models/llama/versions/v1");
  EXPECT_FALSE((*resolved)[0].rollout.has_value());
  EXPECT_THAT((*resolved)[0].pins, IsEmpty());
  EXPECT_THAT(catalog.ListAuditLog(0, "")->items, IsEmpty());
  EXPECT_THAT(catalog.GetTrustRoot(0), StatusIs(absl::StatusCode::kNotFound, HasSubstr("no")));

  // The new tables work on the upgraded file; the old sequence, far below the clock, jumps to
  // it on the next change (higher, so devices accept it).
  ASSERT_THAT(catalog.CreateVersion({"llama", "v2"}, {MacArtifact(Digest('b'), 5)}), IsOk());
  ASSERT_THAT(catalog.PublishVersion({"llama", "v2"}, Uploaded), IsOk());
  absl::StatusOr<v1::Rollout> rollout =
      catalog.StartRollout("llama8b", "stable", {"llama", "v2"}, 100);
  ASSERT_THAT(rollout, IsOk());
  EXPECT_EQ(rollout->id(), "r-1");
  EXPECT_EQ(rollout->from_version(), "models/llama/versions/v1");
  EXPECT_EQ(catalog.GetTier("llama8b", "stable")->sequence(), kT0);
  EXPECT_EQ(catalog.ListAuditLog(0, "")->items.size(), 3u);
  EXPECT_EQ(*catalog.IntegrityCheck(), "ok");
}

}  // namespace
}  // namespace modeldist::storage
