// Tests of models, versions and their artifacts (storage/catalog_models.cc), with the paging
// rules every List method shares.
#include <sqlite3.h>

#include <algorithm>
#include <cstring>
#include <string>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/str_format.h"
#include "common/status.h"
#include "gtest/gtest.h"
#include "tests/storage/catalog_fixture.h"

namespace modeldist::storage {
namespace {

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

// --- Publish and yank -----------------------------------------------------------------------

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

// --- Declared digests -----------------------------------------------------------------------

TEST_F(CatalogTest, DeclaredSize) {
  Published("llama", "v1", 'a');
  absl::StatusOr<int64_t> size = catalog_->DeclaredSize(Digest('a'));
  ASSERT_THAT(size, IsOk());
  EXPECT_EQ(*size, 100);
  absl::StatusOr<int64_t> unknown = catalog_->DeclaredSize(Digest('f'));
  EXPECT_THAT(unknown, StatusIs(absl::StatusCode::kNotFound, HasSubstr(Digest('f'))));
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
