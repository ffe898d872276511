// Tests of opening the catalog (storage/catalog.cc): the sequence rule every change goes
// through, durability across reopens, the connection's settings and rollback of failed writes.
#include <sqlite3.h>

#include <algorithm>
#include <memory>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "common/status.h"
#include "gtest/gtest.h"
#include "tests/storage/catalog_fixture.h"

namespace modeldist::storage {
namespace {

// --- Sequence -------------------------------------------------------------------------------

// Under a clock that stands still: the first bind takes the clock, every later one adds one.
TEST_F(CatalogTest, SequenceStrictlyIncreasesAndSurvivesReopen) {
  VersionName v1 = Published("llama", "v1", 'a');
  VersionName v2 = Published("llama", "v2", 'b');
  int64_t previous = kT0 - 1;
  for (int i = 0; i < 100; ++i) {
    absl::StatusOr<v1::TierBinding> binding =
        catalog_->SetTier("llama8b", "stable", i % 2 == 0 ? v1 : v2);
    ASSERT_THAT(binding, IsOk());
    EXPECT_EQ(binding->sequence(), previous + 1);
    previous = binding->sequence();
  }
  EXPECT_EQ(previous, kT0 + 99);

  Reopen();
  absl::StatusOr<v1::TierBinding> after = catalog_->GetTier("llama8b", "stable");
  ASSERT_THAT(after, IsOk());
  EXPECT_EQ(after->sequence(), kT0 + 99);
  EXPECT_EQ(after->version(), "models/llama/versions/v2");
  absl::StatusOr<v1::TierBinding> next = catalog_->SetTier("llama8b", "stable", v1);
  ASSERT_THAT(next, IsOk());
  EXPECT_EQ(next->sequence(), kT0 + 100);
}

// Issue 9: a server started from an older copy of the catalog (a restored backup, a split
// brain) re-issued a sequence the lost catalog had issued for another version, and a device
// that had seen it installed the other version. Sequences that never fall behind the clock
// put the restored catalog's above everything the lost one issued.
TEST_F(CatalogTest, ARestoredBackupIssuesSequencesAboveEveryOneTheLostCatalogIssued) {
  VersionName v1 = Published("llama", "v1", 'a');
  VersionName v2 = Published("llama", "v2", 'b');
  VersionName v3 = Published("llama", "v3", 'c');
  ASSERT_THAT(catalog_->SetTier("llama8b", "stable", v1), IsOk());
  // A consistent copy of the live database, WAL included, as an operator's backup makes it.
  const std::string backup = dir_.Join("backup.db");
  EXPECT_EQ(ExecRaw(path(), absl::StrCat("VACUUM INTO '", backup, "'")), SQLITE_OK);

  // The catalog that is later lost lives on for an hour, with several changes within one
  // microsecond of each other and one a minute later.
  Advance(absl::Hours(1));
  std::vector<int64_t> issued;
  auto record = [&] { issued.push_back(catalog_->GetTier("llama8b", "stable")->sequence()); };
  ASSERT_THAT(catalog_->SetTier("llama8b", "stable", v2), IsOk());
  record();
  ASSERT_THAT(catalog_->PinDevices("llama8b", "stable", {"d"}, v1), IsOk());
  record();
  ASSERT_THAT(catalog_->StartRollout("llama8b", "stable", v3, 500), IsOk());
  record();
  ASSERT_THAT(catalog_->CompleteRollout("llama8b", "stable"), IsOk());
  record();
  Advance(absl::Minutes(1));
  ASSERT_THAT(catalog_->YankVersion(v3, "bad"), IsOk());
  record();
  const int64_t highest = *std::max_element(issued.begin(), issued.end());
  EXPECT_EQ(highest, kT0 + 3'660'000'000);
  catalog_.reset();  // lost

  // Restored from the backup a minute later: the tier is back on v1 with the old sequence,
  // and binding another version takes the clock, above all the lost catalog issued.
  Advance(absl::Minutes(1));
  std::unique_ptr<Catalog> restored = OpenWithClock(backup);
  ASSERT_NE(restored, nullptr);
  absl::StatusOr<v1::TierBinding> old = restored->GetTier("llama8b", "stable");
  ASSERT_THAT(old, IsOk());
  EXPECT_EQ(old->sequence(), kT0);
  EXPECT_EQ(old->version(), "models/llama/versions/v1");
  absl::StatusOr<v1::TierBinding> rebound = restored->SetTier("llama8b", "stable", v2);
  ASSERT_THAT(rebound, IsOk());
  EXPECT_GT(rebound->sequence(), highest);
  EXPECT_EQ(rebound->sequence(), kT0 + 3'720'000'000);  // the restored catalog's clock
  for (int64_t lost : issued) EXPECT_NE(rebound->sequence(), lost);
}

// The sequence cannot grow past the largest int64 (only a hand-edited file gets there): the
// change is refused and nothing of it is written.
TEST_F(CatalogTest, ASequenceThatCannotGrowRefusesTheChange) {
  VersionName v1 = Published("llama", "v1", 'a');
  VersionName v2 = Published("llama", "v2", 'b');
  ASSERT_THAT(catalog_->SetTier("llama8b", "stable", v1), IsOk());
  EXPECT_EQ(ExecRaw(path(), "UPDATE tiers SET sequence = 9223372036854775807"), SQLITE_OK);
  const size_t audit_before = AuditEntries();
  absl::StatusOr<v1::TierBinding> bound = catalog_->SetTier("llama8b", "stable", v2);
  EXPECT_THAT(bound, StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("largest")));
  EXPECT_EQ(ErrorReason(bound.status()), "SEQUENCE_EXHAUSTED");
  EXPECT_EQ(catalog_->GetTier("llama8b", "stable")->version(), "models/llama/versions/v1");
  EXPECT_EQ(HistoryRows(), 1);
  EXPECT_EQ(AuditEntries(), audit_before);
}

TEST_F(CatalogTest, ConcurrentSetTierGivesDistinctSequences) {
  constexpr int kThreads = 4;
  constexpr int kPerThread = 25;
  // Every bind names a version of its own, so each one changes the binding (binding the
  // version already bound would change nothing).
  std::vector<std::vector<VersionName>> versions(kThreads);
  for (int t = 0; t < kThreads; ++t) {
    for (int i = 0; i < kPerThread; ++i) {
      versions[t].push_back(Published("llama", absl::StrCat("v", t, "-", i)));
    }
  }
  absl::Mutex mu;
  std::set<int64_t> sequences;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) {
        absl::StatusOr<v1::TierBinding> binding =
            catalog_->SetTier("llama8b", "stable", versions[t][i]);
        EXPECT_THAT(binding, IsOk());
        if (binding.ok()) {
          absl::MutexLock lock(&mu);
          sequences.insert(binding->sequence());
        }
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  EXPECT_EQ(sequences.size(), static_cast<size_t>(kThreads * kPerThread));
  EXPECT_EQ(*sequences.begin(), kT0);
  EXPECT_EQ(*sequences.rbegin(), kT0 + kThreads * kPerThread - 1);
}

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

// --- Durability and integrity ---------------------------------------------------------------

TEST_F(CatalogTest, ReopenPreservesEverything) {
  ASSERT_THAT(catalog_->CreateModel("llama", "desc"), IsOk());
  VersionName v1 = Published("llama", "v1", 'a');
  VersionName v2 = Published("llama", "v2", 'b');
  ASSERT_THAT(catalog_->CreateVersion({"llama", "draft"}, {MacArtifact(Digest('c'), 3)}), IsOk());
  ASSERT_THAT(catalog_->SetTier("t", "stable", v1), IsOk());
  ASSERT_THAT(catalog_->SetTier("t", "stable", v2), IsOk());
  ASSERT_THAT(catalog_->YankVersion(v2, "why"), IsOk());

  v1::Model model = *catalog_->GetModel("llama");
  absl::StatusOr<ListPage<v1::Version>> versions = catalog_->ListVersions("llama", 0, "");
  ASSERT_THAT(versions, IsOk());
  v1::TierBinding tier = *catalog_->GetTier("t", "stable");

  Reopen();
  EXPECT_EQ(catalog_->SchemaVersion(), Catalog::LatestSchemaVersion());
  EXPECT_TRUE(MessageDifferencer::Equals(*catalog_->GetModel("llama"), model));
  absl::StatusOr<ListPage<v1::Version>> reopened = catalog_->ListVersions("llama", 0, "");
  ASSERT_THAT(reopened, IsOk());
  ASSERT_EQ(reopened->items.size(), 3u);
  for (size_t i = 0; i < 3; ++i) {
    EXPECT_TRUE(MessageDifferencer::Equals(reopened->items[i], versions->items[i]))
        << reopened->items[i].DebugString();
  }
  EXPECT_TRUE(MessageDifferencer::Equals(*catalog_->GetTier("t", "stable"), tier));
  EXPECT_EQ(tier.version(), "models/llama/versions/v1");
  absl::StatusOr<std::string> check = catalog_->IntegrityCheck();
  ASSERT_THAT(check, IsOk());
  EXPECT_EQ(*check, "ok");
}

TEST_F(CatalogTest, IntegrityCheckAndSchemaVersion) {
  absl::StatusOr<std::string> check = catalog_->IntegrityCheck();
  ASSERT_THAT(check, IsOk());
  EXPECT_EQ(*check, "ok");
  EXPECT_GE(Catalog::LatestSchemaVersion(), 1);
  EXPECT_EQ(catalog_->SchemaVersion(), Catalog::LatestSchemaVersion());
}

TEST_F(CatalogTest, DatabaseIsInWalMode) {
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(path().c_str(), &db), SQLITE_OK);
  sqlite3_stmt* stmt = nullptr;
  ASSERT_EQ(sqlite3_prepare_v2(db, "PRAGMA journal_mode", -1, &stmt, nullptr), SQLITE_OK);
  ASSERT_EQ(sqlite3_step(stmt), SQLITE_ROW);
  EXPECT_STREQ(reinterpret_cast<const char*>(sqlite3_column_text(stmt, 0)), "wal");
  sqlite3_finalize(stmt);
  sqlite3_close(db);
}

// A statement failing half-way through a write must leave nothing of that write behind. A
// trigger added through a second connection makes the second artifact insert fail.
TEST_F(CatalogTest, FailedWriteRollsBackEverything) {
  ASSERT_THAT(catalog_->CreateModel("llama", ""), IsOk());
  EXPECT_EQ(
      ExecRaw(path(), absl::StrCat("CREATE TRIGGER fail_artifact BEFORE INSERT ON artifacts WHEN "
                                   "NEW.digest = '",
                                   Digest('f'), "' BEGIN SELECT RAISE(ABORT, 'injected'); END")),
      SQLITE_OK);
  VersionName name{"llama", "v1"};
  absl::StatusOr<v1::Version> failed = catalog_->CreateVersion(
      name, {MacArtifact(Digest('a'), 1),
             MakeArtifact(v1::PLATFORM_LINUX, v1::ARCH_ANY, v1::FORMAT_GGUF, Digest('f'), 2)});
  EXPECT_THAT(failed, StatusIs(absl::StatusCode::kInternal, HasSubstr("injected")));
  EXPECT_THAT(catalog_->GetVersion(name),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("models/llama/versions/v1")));
  EXPECT_THAT(catalog_->DeclaredSize(Digest('a')),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr(Digest('a'))));

  // Same for a bind: the history insert fails after the sequence bump. (A bind of another
  // version: binding the one already bound would not write at all.)
  VersionName v2 = Published("llama", "v2", 'a');
  VersionName v3 = Published("llama", "v3", 'a');
  ASSERT_THAT(catalog_->SetTier("t", "stable", v2), IsOk());
  EXPECT_EQ(ExecRaw(path(),
                    "CREATE TRIGGER fail_history BEFORE INSERT ON tier_history "
                    "BEGIN SELECT RAISE(ABORT, 'injected'); END"),
            SQLITE_OK);
  EXPECT_THAT(catalog_->SetTier("t", "stable", v3),
              StatusIs(absl::StatusCode::kInternal, HasSubstr("injected")));
  EXPECT_EQ(catalog_->GetTier("t", "stable")->sequence(), kT0);
  EXPECT_EQ(catalog_->GetTier("t", "stable")->version(), "models/llama/versions/v2");

  // The connection is usable afterwards.
  EXPECT_EQ(ExecRaw(path(), "DROP TRIGGER fail_history"), SQLITE_OK);
  absl::StatusOr<v1::TierBinding> bound = catalog_->SetTier("t", "stable", v3);
  ASSERT_THAT(bound, IsOk());
  EXPECT_EQ(bound->sequence(), kT0 + 1);
}

}  // namespace
}  // namespace modeldist::storage
