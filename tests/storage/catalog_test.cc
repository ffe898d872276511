#include "storage/catalog.h"

#include <sqlite3.h>

#include <algorithm>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/mutex.h"
#include "common/status.h"
#include "gmock/gmock.h"
#include "google/protobuf/util/message_differencer.h"
#include "gtest/gtest.h"
#include "tests/testing/test_util.h"

namespace modeldist::storage {
namespace {

using ::google::protobuf::util::MessageDifferencer;
using ::modeldist::testing::IsOk;
using ::modeldist::testing::IsOkAndHolds;
using ::modeldist::testing::ScratchDir;
using ::modeldist::testing::StatusIs;
using ::testing::AllOf;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

std::string Digest(char c) { return "sha256:" + std::string(64, c); }

v1::Artifact MakeArtifact(v1::Platform platform, v1::Arch arch, v1::Format format,
                          const std::string& digest, int64_t size) {
  v1::Artifact artifact;
  artifact.set_platform(platform);
  artifact.set_arch(arch);
  artifact.set_format(format);
  artifact.set_digest(digest);
  artifact.set_size_bytes(size);
  return artifact;
}

v1::Artifact MacArtifact(const std::string& digest, int64_t size) {
  return MakeArtifact(v1::PLATFORM_MACOS, v1::ARCH_ARM64, v1::FORMAT_COREML_ZIP, digest, size);
}

bool Uploaded(const std::string&) { return true; }

// The fixture's clock at the start, in microseconds since the Unix epoch: a tier's first
// sequence. While the clock stands still each change adds one; once it moves on, the next
// change takes the clock (catalog.h, "Sequences").
constexpr int64_t kT0 = 1'700'000'000'000'000;

int64_t Seconds(const google::protobuf::Timestamp& t) { return t.seconds(); }

// Runs `sql` on the catalog's file through a second connection (fault injection, inspection).
void ExecRaw(const std::string& path, const std::string& sql) {
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
  char* error = nullptr;
  EXPECT_EQ(sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &error), SQLITE_OK)
      << (error ? error : "");
  sqlite3_free(error);
  sqlite3_close(db);
}

// The integer in the first column of the first row of `sql`, through a second connection; -1
// when there is no row.
int64_t QueryInt(const std::string& path, const std::string& sql) {
  sqlite3* db = nullptr;
  EXPECT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
  sqlite3_stmt* stmt = nullptr;
  EXPECT_EQ(sqlite3_prepare_v2(db, sql.c_str(), -1, &stmt, nullptr), SQLITE_OK) << sql;
  int64_t result = -1;
  if (stmt != nullptr && sqlite3_step(stmt) == SQLITE_ROW) result = sqlite3_column_int64(stmt, 0);
  sqlite3_finalize(stmt);
  sqlite3_close(db);
  return result;
}

class CatalogTest : public ::testing::Test {
 protected:
  void SetUp() override { Reopen(); }

  void Reopen() {
    catalog_.reset();
    catalog_ = OpenWithClock(path());
  }

  // A catalog over `file` with the fixture's clock; null (and a failure) if it does not open.
  std::unique_ptr<Catalog> OpenWithClock(const std::string& file) {
    Catalog::Options options;
    options.now = [this] {
      absl::MutexLock lock(&clock_mu_);
      return now_;
    };
    absl::StatusOr<std::unique_ptr<Catalog>> opened = Catalog::Open(file, options);
    EXPECT_THAT(opened, IsOk());
    return opened.ok() ? std::move(opened).value() : nullptr;
  }

  void Advance(absl::Duration d) {
    absl::MutexLock lock(&clock_mu_);
    now_ += d;
  }
  int64_t NowSeconds() {
    absl::MutexLock lock(&clock_mu_);
    return absl::ToUnixSeconds(now_);
  }

  std::string path() const { return dir_.Join("catalog.db"); }

  int64_t HistoryRows() { return QueryInt(path(), "SELECT COUNT(*) FROM tier_history"); }
  size_t AuditEntries() {
    absl::StatusOr<ListPage<v1::AuditEntry>> page = catalog_->ListAuditLog(1000, "");
    EXPECT_THAT(page, IsOk());
    return page.ok() ? page->items.size() : 0;
  }

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

  ScratchDir dir_;  // declared first: outlives the catalog that keeps files in it
  absl::Mutex clock_mu_;
  absl::Time now_ = absl::FromUnixMicros(kT0);
  std::unique_ptr<Catalog> catalog_;
};

// --- Models ---------------------------------------------------------------------------------

TEST_F(CatalogTest, CreateAndGetModel) {
  absl::StatusOr<v1::Model> created = catalog_->CreateModel("llama", "an 8B model");
  ASSERT_THAT(created, IsOk());
  EXPECT_EQ(created->name(), "models/llama");
  EXPECT_EQ(created->description(), "an 8B model");
  EXPECT_EQ(Seconds(created->create_time()), 1'700'000'000);

  absl::StatusOr<v1::Model> got = catalog_->GetModel("llama");
  ASSERT_THAT(got, IsOk());
  EXPECT_TRUE(MessageDifferencer::Equals(*got, *created)) << got->DebugString();
}

TEST_F(CatalogTest, GetMissingModelIsNotFound) {
  absl::StatusOr<v1::Model> got = catalog_->GetModel("nope");
  EXPECT_THAT(got, StatusIs(absl::StatusCode::kNotFound, HasSubstr("models/nope")));
  EXPECT_EQ(ErrorReason(got.status()), "MODEL_NOT_FOUND");
}

TEST_F(CatalogTest, CreateModelTwiceIsAlreadyExistsAndKeepsTheFirst) {
  ASSERT_THAT(catalog_->CreateModel("llama", "first"), IsOk());
  absl::StatusOr<v1::Model> again = catalog_->CreateModel("llama", "second");
  EXPECT_THAT(again, StatusIs(absl::StatusCode::kAlreadyExists, HasSubstr("models/llama")));
  EXPECT_EQ(ErrorReason(again.status()), "MODEL_EXISTS");
  EXPECT_EQ(catalog_->GetModel("llama")->description(), "first");
}

TEST_F(CatalogTest, ListModelsPagesInIdOrder) {
  std::vector<std::string> ids;
  for (int i = 0; i < 25; ++i) ids.push_back(absl::StrFormat("m%02d", i));
  std::vector<std::string> shuffled = ids;
  std::reverse(shuffled.begin(), shuffled.end());
  for (const std::string& id : shuffled) ASSERT_THAT(catalog_->CreateModel(id, ""), IsOk());

  std::vector<std::string> seen;
  std::vector<size_t> page_sizes;
  std::string token;
  do {
    absl::StatusOr<ListPage<v1::Model>> page = catalog_->ListModels(10, token);
    ASSERT_THAT(page, IsOk());
    page_sizes.push_back(page->items.size());
    for (const v1::Model& m : page->items) seen.push_back(m.name().substr(strlen("models/")));
    token = page->next_page_token;
  } while (!token.empty());
  EXPECT_THAT(page_sizes, ElementsAre(10, 10, 5));
  EXPECT_EQ(seen, ids);
}

TEST_F(CatalogTest, ListModelsExactMultipleHasNoEmptyLastPage) {
  for (const char* id : {"a", "b", "c", "d"}) ASSERT_THAT(catalog_->CreateModel(id, ""), IsOk());
  absl::StatusOr<ListPage<v1::Model>> first = catalog_->ListModels(2, "");
  ASSERT_THAT(first, IsOk());
  absl::StatusOr<ListPage<v1::Model>> second = catalog_->ListModels(2, first->next_page_token);
  ASSERT_THAT(second, IsOk());
  EXPECT_EQ(second->items.size(), 2u);
  EXPECT_EQ(second->next_page_token, "");
}

TEST_F(CatalogTest, PageTokenSurvivesInsertsBetweenPages) {
  for (const char* id : {"b", "d", "f"}) ASSERT_THAT(catalog_->CreateModel(id, ""), IsOk());
  absl::StatusOr<ListPage<v1::Model>> first = catalog_->ListModels(2, "");
  ASSERT_THAT(first, IsOk());
  ASSERT_EQ(first->items.size(), 2u);  // b, d
  // One model sorts before the cursor, one after: only the latter belongs to later pages.
  ASSERT_THAT(catalog_->CreateModel("a", ""), IsOk());
  ASSERT_THAT(catalog_->CreateModel("e", ""), IsOk());
  absl::StatusOr<ListPage<v1::Model>> rest = catalog_->ListModels(10, first->next_page_token);
  ASSERT_THAT(rest, IsOk());
  ASSERT_EQ(rest->items.size(), 2u);
  EXPECT_EQ(rest->items[0].name(), "models/e");
  EXPECT_EQ(rest->items[1].name(), "models/f");
  EXPECT_EQ(rest->next_page_token, "");
}

TEST_F(CatalogTest, ListModelsPageSizeRules) {
  for (int i = 0; i < 101; ++i) {
    ASSERT_THAT(catalog_->CreateModel(absl::StrFormat("m%03d", i), ""), IsOk());
  }
  absl::StatusOr<ListPage<v1::Model>> default_size = catalog_->ListModels(0, "");
  ASSERT_THAT(default_size, IsOk());
  EXPECT_EQ(default_size->items.size(), 100u);
  EXPECT_NE(default_size->next_page_token, "");

  absl::StatusOr<ListPage<v1::Model>> huge = catalog_->ListModels(1'000'000, "");
  ASSERT_THAT(huge, IsOk());
  EXPECT_EQ(huge->items.size(), 101u);
  EXPECT_EQ(huge->next_page_token, "");

  absl::StatusOr<ListPage<v1::Model>> negative = catalog_->ListModels(-1, "");
  EXPECT_THAT(negative, StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("page_size")));
  EXPECT_EQ(ErrorReason(negative.status()), "INVALID_PAGE_SIZE");
  EXPECT_EQ(ErrorMetadataValue(negative.status(), "field"), "page_size");
}

TEST_F(CatalogTest, MalformedPageTokensAreInvalidArgument) {
  ASSERT_THAT(catalog_->CreateModel("a", ""), IsOk());
  ASSERT_THAT(catalog_->CreateModel("b", ""), IsOk());
  absl::StatusOr<ListPage<v1::Model>> models = catalog_->ListModels(1, "");
  ASSERT_THAT(models, IsOk());
  const std::string models_token = models->next_page_token;
  ASSERT_NE(models_token, "");

  const std::vector<std::string> bad = {
      "!!not base64!!",
      absl::WebSafeBase64Escape("garbage"),
      absl::WebSafeBase64Escape("6:models"),       // no key
      absl::WebSafeBase64Escape("6:models99:a"),   // length beyond the end
      absl::WebSafeBase64Escape("5:tiers1:a1:b"),  // another list's kind
      models_token.substr(0, models_token.size() - 2),
  };
  for (const std::string& token : bad) {
    absl::StatusOr<ListPage<v1::Model>> page = catalog_->ListModels(10, token);
    EXPECT_THAT(page, StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("page_token")))
        << token;
    EXPECT_EQ(ErrorReason(page.status()), "INVALID_PAGE_TOKEN");
    EXPECT_EQ(ErrorMetadataValue(page.status(), "field"), "page_token");
  }
  // A models token is not a tiers token.
  EXPECT_THAT(catalog_->ListTiers(10, models_token),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("page_token")));
}

// --- Versions -------------------------------------------------------------------------------

TEST_F(CatalogTest, CreateVersionStoresArtifactsOrdered) {
  ASSERT_THAT(catalog_->CreateModel("llama", ""), IsOk());
  Advance(absl::Seconds(5));
  VersionName name{"llama", "v1"};
  std::vector<v1::Artifact> artifacts = {
      MakeArtifact(v1::PLATFORM_LINUX, v1::ARCH_X86_64, v1::FORMAT_GGUF, Digest('b'), 2000),
      MakeArtifact(v1::PLATFORM_MACOS, v1::ARCH_ARM64, v1::FORMAT_COREML_ZIP, Digest('a'), 1000),
      MakeArtifact(v1::PLATFORM_MACOS, v1::ARCH_ARM64, v1::FORMAT_GGUF, Digest('b'), 2000),
  };
  absl::StatusOr<v1::Version> created = catalog_->CreateVersion(name, artifacts);
  ASSERT_THAT(created, IsOk());
  EXPECT_EQ(created->name(), "models/llama/versions/v1");
  EXPECT_EQ(created->state(), v1::Version::DRAFT);
  EXPECT_EQ(Seconds(created->create_time()), 1'700'000'005);
  EXPECT_FALSE(created->has_publish_time());
  EXPECT_FALSE(created->has_yank_time());
  ASSERT_EQ(created->artifacts_size(), 3);
  // Ordered by (platform, arch, format): MACOS=1 before LINUX=3.
  EXPECT_EQ(created->artifacts(0).format(), v1::FORMAT_COREML_ZIP);
  EXPECT_EQ(created->artifacts(0).digest(), Digest('a'));
  EXPECT_EQ(created->artifacts(0).size_bytes(), 1000);
  EXPECT_FALSE(created->artifacts(0).uploaded());
  EXPECT_EQ(created->artifacts(1).format(), v1::FORMAT_GGUF);
  EXPECT_EQ(created->artifacts(1).platform(), v1::PLATFORM_MACOS);
  EXPECT_EQ(created->artifacts(2).platform(), v1::PLATFORM_LINUX);

  absl::StatusOr<v1::Version> got = catalog_->GetVersion(name);
  ASSERT_THAT(got, IsOk());
  EXPECT_TRUE(MessageDifferencer::Equals(*got, *created)) << got->DebugString();
}

TEST_F(CatalogTest, CreateVersionErrors) {
  VersionName name{"llama", "v1"};
  absl::StatusOr<v1::Version> no_model = catalog_->CreateVersion(name, {});
  EXPECT_THAT(no_model, StatusIs(absl::StatusCode::kNotFound, HasSubstr("models/llama")));
  EXPECT_EQ(ErrorReason(no_model.status()), "MODEL_NOT_FOUND");

  ASSERT_THAT(catalog_->CreateModel("llama", ""), IsOk());
  ASSERT_THAT(catalog_->CreateVersion(name, {MacArtifact(Digest('a'), 10)}), IsOk());
  absl::StatusOr<v1::Version> again = catalog_->CreateVersion(name, {MacArtifact(Digest('c'), 1)});
  EXPECT_THAT(again,
              StatusIs(absl::StatusCode::kAlreadyExists, HasSubstr("models/llama/versions/v1")));
  EXPECT_EQ(ErrorReason(again.status()), "VERSION_EXISTS");
  EXPECT_EQ(catalog_->GetVersion(name)->artifacts(0).digest(), Digest('a'));  // untouched
}

TEST_F(CatalogTest, DuplicatePlatformArchFormatIsInvalidArgument) {
  ASSERT_THAT(catalog_->CreateModel("llama", ""), IsOk());
  VersionName name{"llama", "v1"};
  absl::StatusOr<v1::Version> dup =
      catalog_->CreateVersion(name, {MacArtifact(Digest('a'), 10), MacArtifact(Digest('b'), 20)});
  EXPECT_THAT(dup, StatusIs(absl::StatusCode::kInvalidArgument,
                            AllOf(HasSubstr("artifacts[0] and artifacts[1]"),
                                  HasSubstr("PLATFORM_MACOS/ARCH_ARM64/FORMAT_COREML_ZIP"))));
  EXPECT_EQ(ErrorReason(dup.status()), "DUPLICATE_ARTIFACT");
  EXPECT_EQ(ErrorMetadataValue(dup.status(), "field"), "artifacts");
  EXPECT_THAT(catalog_->GetVersion(name), StatusIs(absl::StatusCode::kNotFound, HasSubstr("v1")));
}

TEST_F(CatalogTest, SizeConflictWithAnotherVersionIsInvalidArgument) {
  ASSERT_THAT(catalog_->CreateModel("llama", ""), IsOk());
  ASSERT_THAT(catalog_->CreateVersion({"llama", "v1"}, {MacArtifact(Digest('a'), 100)}), IsOk());

  VersionName v2{"llama", "v2"};
  absl::StatusOr<v1::Version> conflict = catalog_->CreateVersion(
      v2,
      {MakeArtifact(v1::PLATFORM_LINUX, v1::ARCH_ANY, v1::FORMAT_GGUF, Digest('c'), 5),
       MakeArtifact(v1::PLATFORM_IOS, v1::ARCH_ARM64, v1::FORMAT_COREML_ZIP, Digest('a'), 101)});
  EXPECT_THAT(conflict,
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr("artifacts[1].size_bytes is 101"),
                             HasSubstr("models/llama/versions/v1"), HasSubstr("with size 100"))));
  EXPECT_EQ(ErrorReason(conflict.status()), "SIZE_CONFLICT");
  EXPECT_EQ(ErrorMetadataValue(conflict.status(), "field"), "artifacts[1].size_bytes");
  EXPECT_THAT(catalog_->GetVersion(v2), StatusIs(absl::StatusCode::kNotFound, HasSubstr("v2")));
  EXPECT_THAT(catalog_->DeclaredSize(Digest('c')),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr(Digest('c'))));

  // The same digest with the same size is fine in another version.
  EXPECT_THAT(catalog_->CreateVersion(v2, {MacArtifact(Digest('a'), 100)}), IsOk());
}

TEST_F(CatalogTest, SizeConflictWithinOneRequestIsInvalidArgument) {
  ASSERT_THAT(catalog_->CreateModel("llama", ""), IsOk());
  absl::StatusOr<v1::Version> conflict = catalog_->CreateVersion(
      {"llama", "v1"},
      {MacArtifact(Digest('a'), 100),
       MakeArtifact(v1::PLATFORM_IOS, v1::ARCH_ARM64, v1::FORMAT_COREML_ZIP, Digest('a'), 7)});
  EXPECT_THAT(conflict,
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("artifacts[1].size_bytes")));
  EXPECT_EQ(ErrorReason(conflict.status()), "SIZE_CONFLICT");
}

TEST_F(CatalogTest, GetVersionNotFoundNamesWhatIsMissing) {
  absl::StatusOr<v1::Version> no_model = catalog_->GetVersion({"llama", "v1"});
  EXPECT_THAT(no_model, StatusIs(absl::StatusCode::kNotFound, HasSubstr("models/llama")));
  EXPECT_EQ(ErrorReason(no_model.status()), "MODEL_NOT_FOUND");
  ASSERT_THAT(catalog_->CreateModel("llama", ""), IsOk());
  absl::StatusOr<v1::Version> no_version = catalog_->GetVersion({"llama", "v1"});
  EXPECT_THAT(no_version,
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("models/llama/versions/v1")));
  EXPECT_EQ(ErrorReason(no_version.status()), "VERSION_NOT_FOUND");
}

TEST_F(CatalogTest, ListVersionsPagesWithArtifacts) {
  EXPECT_THAT(catalog_->ListVersions("llama", 10, ""),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("models/llama")));
  ASSERT_THAT(catalog_->CreateModel("llama", ""), IsOk());
  ASSERT_THAT(catalog_->CreateModel("other", ""), IsOk());
  for (const char* v : {"v3", "v1", "v2"}) {
    ASSERT_THAT(catalog_->CreateVersion({"llama", v}, {MacArtifact(Digest('a'), 10)}), IsOk());
  }
  ASSERT_THAT(catalog_->CreateVersion({"other", "v0"}, {}), IsOk());

  absl::StatusOr<ListPage<v1::Version>> first = catalog_->ListVersions("llama", 2, "");
  ASSERT_THAT(first, IsOk());
  ASSERT_EQ(first->items.size(), 2u);
  EXPECT_EQ(first->items[0].name(), "models/llama/versions/v1");
  EXPECT_EQ(first->items[1].name(), "models/llama/versions/v2");
  EXPECT_EQ(first->items[1].artifacts_size(), 1);

  // A token is bound to its model.
  EXPECT_THAT(catalog_->ListVersions("other", 2, first->next_page_token),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("page_token")));

  absl::StatusOr<ListPage<v1::Version>> second =
      catalog_->ListVersions("llama", 2, first->next_page_token);
  ASSERT_THAT(second, IsOk());
  ASSERT_EQ(second->items.size(), 1u);
  EXPECT_EQ(second->items[0].name(), "models/llama/versions/v3");
  EXPECT_EQ(second->items[0].artifacts(0).digest(), Digest('a'));
  EXPECT_EQ(second->next_page_token, "");

  EXPECT_THAT(catalog_->ListVersions("llama", -5, ""),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("page_size")));
}

// --- Publish --------------------------------------------------------------------------------

TEST_F(CatalogTest, PublishRefusesWhileAnArtifactIsNotUploadedAndChangesNothing) {
  ASSERT_THAT(catalog_->CreateModel("llama", ""), IsOk());
  VersionName name{"llama", "v1"};
  ASSERT_THAT(catalog_->CreateVersion(name, {MacArtifact(Digest('a'), 10),
                                             MakeArtifact(v1::PLATFORM_LINUX, v1::ARCH_X86_64,
                                                          v1::FORMAT_GGUF, Digest('b'), 20)}),
              IsOk());

  std::vector<std::string> asked;
  auto only_a = [&](const std::string& digest) {
    asked.push_back(digest);
    return digest == Digest('a');
  };
  absl::StatusOr<v1::Version> refused = catalog_->PublishVersion(name, only_a);
  EXPECT_THAT(refused, StatusIs(absl::StatusCode::kFailedPrecondition,
                                AllOf(HasSubstr("models/llama/versions/v1"), HasSubstr(Digest('b')),
                                      HasSubstr("PLATFORM_LINUX/ARCH_X86_64/FORMAT_GGUF"))));
  EXPECT_EQ(ErrorReason(refused.status()), "ARTIFACT_NOT_UPLOADED");
  EXPECT_EQ(ErrorMetadataValue(refused.status(), "digest"), Digest('b'));
  EXPECT_THAT(asked, ElementsAre(Digest('a'), Digest('b')));

  absl::StatusOr<v1::Version> still = catalog_->GetVersion(name);
  ASSERT_THAT(still, IsOk());
  EXPECT_EQ(still->state(), v1::Version::DRAFT);
  EXPECT_FALSE(still->has_publish_time());

  Advance(absl::Seconds(60));
  absl::StatusOr<v1::Version> published = catalog_->PublishVersion(name, Uploaded);
  ASSERT_THAT(published, IsOk());
  EXPECT_EQ(published->state(), v1::Version::PUBLISHED);
  EXPECT_EQ(Seconds(published->publish_time()), 1'700'000'060);
  EXPECT_EQ(catalog_->GetVersion(name)->state(), v1::Version::PUBLISHED);
}

TEST_F(CatalogTest, PublishTwiceIsFailedPrecondition) {
  VersionName name = Published("llama", "v1");
  absl::StatusOr<v1::Version> again = catalog_->PublishVersion(name, Uploaded);
  EXPECT_THAT(again,
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       AllOf(HasSubstr("models/llama/versions/v1"), HasSubstr("PUBLISHED"))));
  EXPECT_EQ(ErrorReason(again.status()), "VERSION_NOT_DRAFT");
  EXPECT_THAT(catalog_->PublishVersion({"llama", "v9"}, Uploaded),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("models/llama/versions/v9")));
}

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

TEST_F(CatalogTest, YankRequiresPublished) {
  ASSERT_THAT(catalog_->CreateModel("llama", ""), IsOk());
  VersionName draft{"llama", "draft"};
  ASSERT_THAT(catalog_->CreateVersion(draft, {}), IsOk());
  absl::StatusOr<v1::Version> on_draft = catalog_->YankVersion(draft, "x");
  EXPECT_THAT(on_draft,
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       AllOf(HasSubstr("models/llama/versions/draft"), HasSubstr("DRAFT"))));
  EXPECT_EQ(ErrorReason(on_draft.status()), "VERSION_NOT_PUBLISHED");

  VersionName v1 = Published("llama", "v1");
  ASSERT_THAT(catalog_->YankVersion(v1, "first"), IsOk());
  EXPECT_THAT(catalog_->YankVersion(v1, "second"),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("YANKED")));
  EXPECT_EQ(catalog_->GetVersion(v1)->yank_reason(), "first");
  EXPECT_THAT(catalog_->YankVersion({"llama", "nope"}, ""),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("models/llama/versions/nope")));
}

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
  ExecRaw(path(), absl::StrCat("VACUUM INTO '", backup, "'"));

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
  ExecRaw(path(), "UPDATE tiers SET sequence = 9223372036854775807");
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

// --- Misc -----------------------------------------------------------------------------------

TEST_F(CatalogTest, DeclaredSize) {
  Published("llama", "v1", 'a');
  absl::StatusOr<int64_t> size = catalog_->DeclaredSize(Digest('a'));
  ASSERT_THAT(size, IsOk());
  EXPECT_EQ(*size, 100);
  absl::StatusOr<int64_t> unknown = catalog_->DeclaredSize(Digest('f'));
  EXPECT_THAT(unknown, StatusIs(absl::StatusCode::kNotFound, HasSubstr(Digest('f'))));
}

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
  ExecRaw(path(), absl::StrCat("CREATE TRIGGER fail_artifact BEFORE INSERT ON artifacts WHEN "
                               "NEW.digest = '",
                               Digest('f'), "' BEGIN SELECT RAISE(ABORT, 'injected'); END"));
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
  ExecRaw(path(),
          "CREATE TRIGGER fail_history BEFORE INSERT ON tier_history "
          "BEGIN SELECT RAISE(ABORT, 'injected'); END");
  EXPECT_THAT(catalog_->SetTier("t", "stable", v3),
              StatusIs(absl::StatusCode::kInternal, HasSubstr("injected")));
  EXPECT_EQ(catalog_->GetTier("t", "stable")->sequence(), kT0);
  EXPECT_EQ(catalog_->GetTier("t", "stable")->version(), "models/llama/versions/v2");

  // The connection is usable afterwards.
  ExecRaw(path(), "DROP TRIGGER fail_history");
  absl::StatusOr<v1::TierBinding> bound = catalog_->SetTier("t", "stable", v3);
  ASSERT_THAT(bound, IsOk());
  EXPECT_EQ(bound->sequence(), kT0 + 1);
}

// --- Damaged blobs ---------------------------------------------------------------------------

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

TEST_F(CatalogTest, PublishedDigestsAreThoseOfPublishedVersionsOnly) {
  Published("m", "1", 'a');
  Published("m", "2", 'b');
  ASSERT_THAT(catalog_->CreateVersion({"m", "3"}, {MacArtifact(Digest('c'), 100)}), IsOk());
  ASSERT_THAT(catalog_->YankVersion({"m", "2"}, "bad"), IsOk());
  EXPECT_THAT(catalog_->ListPublishedDigests(),
              IsOkAndHolds(std::vector<std::string>{Digest('a')}));
  EXPECT_THAT(catalog_->IsDigestPublished(Digest('a')), IsOkAndHolds(true));
  EXPECT_THAT(catalog_->IsDigestPublished(Digest('b')), IsOkAndHolds(false)) << "yanked";
  EXPECT_THAT(catalog_->IsDigestPublished(Digest('c')), IsOkAndHolds(false)) << "draft";
}

}  // namespace
}  // namespace modeldist::storage
