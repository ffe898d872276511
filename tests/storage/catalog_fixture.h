// File: catalog_fixture.h
//
// What the catalog tests share (tests/storage/catalog*_test.cc, migrations_test.cc): artifacts
// and digests to declare, a fixture with a catalog on a scratch file under a clock that stands
// still until a test moves it, and raw access to the file through a second connection, for
// fault injection and for looking at what the catalog wrote.
#ifndef MODELDIST_TESTS_STORAGE_CATALOG_FIXTURE_H_
#define MODELDIST_TESTS_STORAGE_CATALOG_FIXTURE_H_

#include <sqlite3.h>

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/names.h"
#include "gmock/gmock.h"
#include "google/protobuf/timestamp.pb.h"
#include "google/protobuf/util/message_differencer.h"
#include "gtest/gtest.h"
#include "modeldist/v1/resources.pb.h"
#include "storage/catalog.h"
#include "tests/testing/test_util.h"

namespace modeldist::storage {

// The matchers and helpers the catalog tests use, in scope for all of them (this header is
// included by tests only).
using ::google::protobuf::util::MessageDifferencer;
using ::modeldist::testing::IsOk;
using ::modeldist::testing::IsOkAndHolds;
using ::modeldist::testing::ScratchDir;
using ::modeldist::testing::StatusIs;
using ::testing::AllOf;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

// The tier/channel most tests bind, and its audit resource.
inline constexpr char kTier[] = "llama8b";
inline constexpr char kStable[] = "stable";
inline constexpr char kTierResource[] = "tiers/llama8b/channels/stable";

// The fixture's clock at the start, in microseconds since the Unix epoch: a tier's first
// sequence. While the clock stands still each change adds one; once it moves on, the next
// change takes the clock (catalog.h, "Sequences").
inline constexpr int64_t kT0 = 1'700'000'000'000'000;

// `sha256:` and 64 times `c`.
std::string Digest(char c);
v1::Artifact MakeArtifact(v1::Platform platform, v1::Arch arch, v1::Format format,
                          const std::string& digest, int64_t size);
// A macOS/arm64 Core ML artifact.
v1::Artifact MacArtifact(const std::string& digest, int64_t size);
// An is_uploaded callback for PublishVersion that says yes to everything.
bool Uploaded(const std::string& digest);
int64_t Seconds(const google::protobuf::Timestamp& t);

// Runs `sql` on the file at `path` through a second connection; returns the SQLite result
// code (extended codes on).
[[nodiscard]] int ExecRaw(const std::string& path, const std::string& sql);
// The first column of the first row of `sql` on `db` as text; "<none>" without a row and
// "<null>" for NULL.
std::string QueryText(sqlite3* db, const std::string& sql);
// QueryText through a second connection to the file at `path`.
std::string QueryRaw(const std::string& path, const std::string& sql);

class CatalogTest : public ::testing::Test {
 protected:
  void SetUp() override { Reopen(); }

  // Closes the catalog and opens the file again (fatal failure if it does not open).
  void Reopen();
  // A catalog over `file` with the fixture's clock; null (and a failure) if it does not open.
  std::unique_ptr<Catalog> OpenWithClock(const std::string& file);

  void Advance(absl::Duration d);

  std::string path() const { return dir_.Join("catalog.db"); }

  // Rows in tier_history, read from the file.
  int64_t HistoryRows();
  // Every audit entry, newest first.
  std::vector<v1::AuditEntry> Audit();
  size_t AuditEntries() { return Audit().size(); }

  // Creates `model` (if needed) and a PUBLISHED `version` with one artifact of `digest`.
  VersionName Published(const std::string& model, const std::string& version, char digest = 'a');

  // The sequence of llama8b/stable; -1 when it cannot be read.
  int64_t Sequence();
  // The version of llama8b/stable's newest bind (read from the file, as the API shows only
  // what the tier resolves to); "<none>" when never bound.
  std::string NewestBind();
  // Binds llama8b/stable to a fresh v1 and returns {v1, v2}, both PUBLISHED; the sequence is
  // kT0.
  std::pair<VersionName, VersionName> BoundTier();

  ::modeldist::testing::ScratchDir dir_;  // declared first: outlives the catalog using it
  absl::Mutex clock_mu_;
  absl::Time now_ = absl::FromUnixMicros(kT0);
  std::unique_ptr<Catalog> catalog_;
};

// The same fixture, under the name the rollout, pin, audit and trust root tests have always
// run under.
class RolloutTest : public CatalogTest {};

}  // namespace modeldist::storage

#endif  // MODELDIST_TESTS_STORAGE_CATALOG_FIXTURE_H_
