#include "tests/storage/catalog_fixture.h"

#include "absl/strings/numbers.h"

namespace modeldist::storage {

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

int64_t Seconds(const google::protobuf::Timestamp& t) { return t.seconds(); }

int ExecRaw(const std::string& path, const std::string& sql) {
  sqlite3* db = nullptr;
  EXPECT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
  sqlite3_extended_result_codes(db, 1);
  int rc = sqlite3_exec(db, sql.c_str(), nullptr, nullptr, nullptr);
  sqlite3_close(db);
  return rc;
}

std::string QueryText(sqlite3* db, const std::string& sql) {
  sqlite3_stmt* stmt = nullptr;
  EXPECT_EQ(sqlite3_prepare_v2(db, sql.c_str(), -1, &stmt, nullptr), SQLITE_OK) << sql;
  std::string result = "<none>";
  if (stmt != nullptr && sqlite3_step(stmt) == SQLITE_ROW) {
    const unsigned char* text = sqlite3_column_text(stmt, 0);
    result = text ? reinterpret_cast<const char*>(text) : "<null>";
  }
  sqlite3_finalize(stmt);
  return result;
}

std::string QueryRaw(const std::string& path, const std::string& sql) {
  sqlite3* db = nullptr;
  EXPECT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
  std::string result = QueryText(db, sql);
  sqlite3_close(db);
  return result;
}

void CatalogTest::Reopen() {
  catalog_.reset();
  catalog_ = OpenWithClock(path());
  ASSERT_NE(catalog_, nullptr);
}

std::unique_ptr<Catalog> CatalogTest::OpenWithClock(const std::string& file) {
  Catalog::Options options;
  options.now = [this] {
    absl::MutexLock lock(&clock_mu_);
    return now_;
  };
  absl::StatusOr<std::unique_ptr<Catalog>> opened = Catalog::Open(file, options);
  EXPECT_THAT(opened, IsOk());
  return opened.ok() ? std::move(opened).value() : nullptr;
}

void CatalogTest::Advance(absl::Duration d) {
  absl::MutexLock lock(&clock_mu_);
  now_ += d;
}

int64_t CatalogTest::HistoryRows() {
  int64_t rows = -1;
  EXPECT_TRUE(absl::SimpleAtoi(QueryRaw(path(), "SELECT COUNT(*) FROM tier_history"), &rows));
  return rows;
}

std::vector<v1::AuditEntry> CatalogTest::Audit() {
  absl::StatusOr<ListPage<v1::AuditEntry>> page = catalog_->ListAuditLog(1000, "");
  EXPECT_THAT(page, IsOk());
  return page.ok() ? page->items : std::vector<v1::AuditEntry>{};
}

VersionName CatalogTest::Published(const std::string& model, const std::string& version,
                                   char digest) {
  if (!catalog_->GetModel(model).ok()) {
    EXPECT_THAT(catalog_->CreateModel(model, ""), IsOk());
  }
  VersionName name{model, version};
  EXPECT_THAT(catalog_->CreateVersion(name, {MacArtifact(Digest(digest), 100)}), IsOk());
  EXPECT_THAT(catalog_->PublishVersion(name, Uploaded), IsOk());
  return name;
}

int64_t CatalogTest::Sequence() {
  absl::StatusOr<v1::TierBinding> binding = catalog_->GetTier(kTier, kStable);
  EXPECT_THAT(binding, IsOk());
  return binding.ok() ? binding->sequence() : -1;
}

std::string CatalogTest::NewestBind() {
  return QueryRaw(path(),
                  "SELECT 'models/' || model_id || '/versions/' || version_id FROM tier_history"
                  " WHERE tier = 'llama8b' AND channel = 'stable' ORDER BY sequence DESC LIMIT 1");
}

std::pair<VersionName, VersionName> CatalogTest::BoundTier() {
  VersionName v1 = Published("llama", "v1", 'a');
  VersionName v2 = Published("llama", "v2", 'b');
  EXPECT_THAT(catalog_->SetTier(kTier, kStable, v1), IsOk());
  return {v1, v2};
}

}  // namespace modeldist::storage
