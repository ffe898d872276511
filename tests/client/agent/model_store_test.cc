// ModelStore (client/agent/model_store.h) and UnzipSafely (client/agent/unzip.h) on a real
// file system: activation of single files and CoreML zips, previous/rollback, garbage
// collection, the leftovers of crashes at each step, and hostile zips built at test time with
// libzip (path escapes, symlinks, devices, bombs, lying sizes).
#include "client/agent/model_store.h"

#include <sys/stat.h>
#include <unistd.h>
#include <zip.h>

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <optional>
#include <ostream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "client/agent/unzip.h"
#include "common/digest.h"
#include "common/file_util.h"
#include "common/status.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/test_util.h"

namespace modeldist::agent {
namespace {

namespace fs = std::filesystem;
using ::modeldist::testing::IsOk;
using ::modeldist::testing::RandomBytes;
using ::modeldist::testing::ScratchDir;
using ::modeldist::testing::StatusIs;
using ::testing::_;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

constexpr absl::string_view kV1 = "models/llama/versions/2026.11.0";
constexpr absl::string_view kV2 = "models/llama/versions/2026.12.0";
constexpr absl::string_view kV3 = "models/llama/versions/2027.01.0";

// One entry of a zip built for a test.
struct ZipEntry {
  std::string name;
  std::string data;
  bool dir = false;
  // Full st_mode (type and permission bits) recorded as unix external attributes.
  std::optional<mode_t> unix_mode;
  bool store = false;  // no compression
};

// Entry builders (designated initializers would trip -Wmissing-field-initializers in g++ 12).
ZipEntry File(std::string name, std::string data) {
  ZipEntry entry;
  entry.name = std::move(name);
  entry.data = std::move(data);
  return entry;
}
ZipEntry StoredFile(std::string name, std::string data) {
  ZipEntry entry = File(std::move(name), std::move(data));
  entry.store = true;
  return entry;
}
ZipEntry Dir(std::string name) {
  ZipEntry entry;
  entry.name = std::move(name);
  entry.dir = true;
  return entry;
}
// An entry with unix file type and permission bits, e.g. S_IFLNK | 0777.
ZipEntry WithMode(ZipEntry entry, mode_t mode) {
  entry.unix_mode = mode;
  return entry;
}

// Builds a zip in memory with libzip. libzip writes whatever name it is given, which is what
// lets these tests produce the hostile archives an attacker would.
std::string MakeZip(const std::vector<ZipEntry>& entries) {
  zip_error_t error;
  zip_error_init(&error);
  zip_source_t* buffer = zip_source_buffer_create(nullptr, 0, 0, &error);
  EXPECT_NE(buffer, nullptr);
  zip_t* archive = zip_open_from_source(buffer, ZIP_TRUNCATE, &error);
  EXPECT_NE(archive, nullptr) << zip_error_strerror(&error);
  zip_source_keep(buffer);  // read it back after zip_close
  for (const ZipEntry& entry : entries) {
    zip_int64_t index;
    if (entry.dir) {
      index = zip_dir_add(archive, entry.name.c_str(), ZIP_FL_ENC_RAW);
    } else {
      zip_source_t* data = zip_source_buffer(archive, entry.data.data(), entry.data.size(), 0);
      index = zip_file_add(archive, entry.name.c_str(), data, ZIP_FL_ENC_RAW);
    }
    EXPECT_GE(index, 0) << entry.name << ": " << zip_strerror(archive);
    const auto i = static_cast<zip_uint64_t>(index);
    if (entry.unix_mode) {
      EXPECT_EQ(zip_file_set_external_attributes(archive, i, 0, ZIP_OPSYS_UNIX,
                                                 static_cast<zip_uint32_t>(*entry.unix_mode) << 16),
                0);
    }
    if (entry.store) {
      EXPECT_EQ(zip_set_file_compression(archive, i, ZIP_CM_STORE, 0), 0);
    }
  }
  EXPECT_EQ(zip_close(archive), 0) << zip_strerror(archive);
  zip_stat_t st;
  EXPECT_EQ(zip_source_open(buffer), 0);
  EXPECT_EQ(zip_source_stat(buffer, &st), 0);
  std::string out(static_cast<size_t>(st.size), '\0');
  EXPECT_EQ(zip_source_read(buffer, out.data(), out.size()), static_cast<zip_int64_t>(st.size));
  zip_source_close(buffer);
  zip_source_free(buffer);
  zip_error_fini(&error);
  return out;
}

void PutLe32(std::string* bytes, size_t offset, uint32_t value) {
  for (int i = 0; i < 4; ++i) (*bytes)[offset + i] = static_cast<char>((value >> (8 * i)) & 0xff);
}

// Rewrites the uncompressed size that the local header and the central directory record for
// entry `n` (0-based): a zip that lies about how much it unpacks to.
std::string WithDeclaredSize(std::string zip, int n, uint32_t size) {
  size_t local = 0, central = 0;
  for (int i = 0; i <= n; ++i) {
    local = zip.find(std::string("PK\x03\x04", 4), i == 0 ? 0 : local + 4);
    central = zip.find(std::string("PK\x01\x02", 4), i == 0 ? 0 : central + 4);
  }
  EXPECT_NE(local, std::string::npos);
  EXPECT_NE(central, std::string::npos);
  PutLe32(&zip, local + 22, size);
  PutLe32(&zip, central + 24, size);
  return zip;
}

void WriteFile(const std::string& path, const std::string& data) {
  ASSERT_THAT(WriteFileAtomically(path, data, 0600), IsOk());
}

std::string ReadFile(const std::string& path) {
  absl::StatusOr<std::string> data = ReadFileToString(path);
  EXPECT_THAT(data, IsOk());
  return data.ok() ? *data : "";
}

mode_t Mode(const std::string& path) {
  struct stat st;
  EXPECT_EQ(::lstat(path.c_str(), &st), 0) << path;
  return st.st_mode & 07777;
}

std::string LinkTarget(const std::string& path) {
  std::error_code ec;
  return fs::read_symlink(path, ec).string();
}

std::vector<std::string> Names(const std::string& dir) {
  std::vector<std::string> names;
  for (const auto& entry : fs::directory_iterator(dir)) {
    names.push_back(entry.path().filename().string());
  }
  std::sort(names.begin(), names.end());
  return names;
}

class ModelStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = scratch_.Join("store");
    absl::StatusOr<ModelStore> store = ModelStore::Open(dir_);
    ASSERT_THAT(store, IsOk());
    store_.emplace(std::move(*store));
  }

  // Writes `data` as a downloaded artifact in staging/ and returns its path.
  std::string Artifact(const std::string& data, const std::string& name = "download.partial") {
    std::string path = absl::StrCat(store_->StagingDir(), "/", name);
    WriteFile(path, data);
    return path;
  }

  // Activates `data` as a GGUF `version`; the digest is its real SHA-256.
  absl::StatusOr<InstalledVersion> ActivateGguf(absl::string_view version,
                                                const std::string& data) {
    return store_->Activate(Artifact(data), std::string(version), DigestOf(data), v1::FORMAT_GGUF);
  }

  static std::string DigestOf(const std::string& data) { return FormatDigest(Sha256::HexOf(data)); }
  static std::string KeyOf(absl::string_view id, const std::string& data) {
    return absl::StrCat(id, "-", Sha256::HexOf(data).substr(0, 8));
  }

  ScratchDir scratch_;
  std::string dir_;
  std::optional<ModelStore> store_;
};

TEST_F(ModelStoreTest, ActivatesGgufAsCurrent) {
  const std::string data = RandomBytes(100000, 1);
  const std::string artifact = Artifact(data);
  absl::StatusOr<InstalledVersion> installed =
      store_->Activate(artifact, std::string(kV1), DigestOf(data), v1::FORMAT_GGUF);
  ASSERT_THAT(installed, IsOk());

  const std::string key = KeyOf("2026.11.0", data);
  EXPECT_EQ(installed->key, key);
  EXPECT_EQ(installed->version, kV1);
  EXPECT_EQ(installed->digest, DigestOf(data));
  EXPECT_EQ(installed->format, v1::FORMAT_GGUF);
  EXPECT_EQ(installed->path, absl::StrCat(dir_, "/versions/", key, "/model.gguf"));
  EXPECT_EQ(ReadFile(installed->path), data);
  EXPECT_EQ(Mode(installed->path), 0644);
  EXPECT_FALSE(fs::exists(artifact)) << "the artifact is moved, not copied";
  EXPECT_EQ(LinkTarget(dir_ + "/current"), "versions/" + key);
  EXPECT_TRUE(fs::exists(absl::StrCat(dir_, "/versions/", key, "/INSTALLED")));

  std::optional<InstalledVersion> current = store_->Current();
  ASSERT_TRUE(current.has_value());
  EXPECT_EQ(current->key, key);
  EXPECT_EQ(current->path, installed->path);
  EXPECT_FALSE(store_->Previous().has_value());
  EXPECT_EQ(store_->List().size(), 1u);

  // A reopened store reads the same state back from disk.
  absl::StatusOr<ModelStore> reopened = ModelStore::Open(dir_);
  ASSERT_THAT(reopened, IsOk());
  ASSERT_TRUE(reopened->Current().has_value());
  EXPECT_EQ(reopened->Current()->version, kV1);
}

TEST_F(ModelStoreTest, ActivatesCoremlZipWithNestedDirectories) {
  const std::string weights = RandomBytes(300000, 2);
  const std::string zip = MakeZip({
      WithMode(Dir("Llama.mlpackage/"), S_IFDIR | 0700),
      File("Llama.mlpackage/Manifest.json", R"({"fileFormatVersion":"1.0.0"})"),
      File("Llama.mlpackage/Data/com.apple.CoreML/model.mlmodel", "spec bytes"),
      WithMode(StoredFile("Llama.mlpackage/Data/com.apple.CoreML/weights/weight.bin", weights),
               S_IFREG | 0600),
  });
  const std::string artifact = Artifact(zip, "llama.zip.partial");
  // A restrictive umask must not leak into the layout's modes.
  const mode_t old_umask = ::umask(077);
  absl::StatusOr<InstalledVersion> installed =
      store_->Activate(artifact, std::string(kV1), DigestOf(zip), v1::FORMAT_COREML_ZIP);
  ::umask(old_umask);
  ASSERT_THAT(installed, IsOk());

  const std::string root = absl::StrCat(dir_, "/versions/", KeyOf("2026.11.0", zip));
  EXPECT_EQ(installed->path, root + "/model/Llama.mlpackage");
  EXPECT_EQ(installed->format, v1::FORMAT_COREML_ZIP);
  const std::string package = installed->path;
  EXPECT_EQ(ReadFile(package + "/Manifest.json"), R"({"fileFormatVersion":"1.0.0"})");
  EXPECT_EQ(ReadFile(package + "/Data/com.apple.CoreML/model.mlmodel"), "spec bytes");
  EXPECT_EQ(ReadFile(package + "/Data/com.apple.CoreML/weights/weight.bin"), weights);
  EXPECT_EQ(Mode(package), 0755);
  EXPECT_EQ(Mode(package + "/Data/com.apple.CoreML/weights"), 0755);
  EXPECT_EQ(Mode(package + "/Data/com.apple.CoreML/weights/weight.bin"), 0644);
  EXPECT_EQ(Mode(package + "/Manifest.json"), 0644);
  EXPECT_THAT(Names(root), ElementsAre("INSTALLED", "model"));
  EXPECT_FALSE(fs::exists(artifact)) << "the zip is removed once unpacked";
  EXPECT_THAT(Names(store_->StagingDir()), IsEmpty());
  ASSERT_TRUE(store_->Current().has_value());
  EXPECT_EQ(store_->Current()->path, package);
}

TEST_F(ModelStoreTest, ZipWithSeveralTopLevelEntriesIsUnpackedFolder) {
  const std::string zip = MakeZip({File("a.txt", "a"), File("b/c", "c")});
  absl::StatusOr<InstalledVersion> installed =
      store_->Activate(Artifact(zip), std::string(kV1), DigestOf(zip), v1::FORMAT_COREML_ZIP);
  ASSERT_THAT(installed, IsOk());
  EXPECT_EQ(installed->path, absl::StrCat(dir_, "/versions/", installed->key, "/model"));
  EXPECT_EQ(ReadFile(installed->path + "/b/c"), "c");
}

TEST_F(ModelStoreTest, SecondActivationMakesFirstPrevious) {
  const std::string one = RandomBytes(1000, 1), two = RandomBytes(1000, 2);
  ASSERT_THAT(ActivateGguf(kV1, one), IsOk());
  ASSERT_THAT(ActivateGguf(kV2, two), IsOk());

  ASSERT_TRUE(store_->Current().has_value());
  ASSERT_TRUE(store_->Previous().has_value());
  EXPECT_EQ(store_->Current()->version, kV2);
  EXPECT_EQ(store_->Previous()->version, kV1);
  EXPECT_EQ(ReadFile(store_->Current()->path), two);
  EXPECT_EQ(ReadFile(store_->Previous()->path), one);
  EXPECT_EQ(LinkTarget(dir_ + "/previous"), "versions/" + KeyOf("2026.11.0", one));
  EXPECT_EQ(store_->List().size(), 2u);
}

TEST_F(ModelStoreTest, ActivatingTheCurrentVersionAgainChangesNothing) {
  const std::string one = RandomBytes(1000, 1), two = RandomBytes(1000, 2);
  ASSERT_THAT(ActivateGguf(kV1, one), IsOk());
  ASSERT_THAT(ActivateGguf(kV2, two), IsOk());
  const std::string again = Artifact(two, "again.partial");
  absl::StatusOr<InstalledVersion> installed =
      store_->Activate(again, std::string(kV2), DigestOf(two), v1::FORMAT_GGUF);
  ASSERT_THAT(installed, IsOk());
  EXPECT_EQ(installed->key, KeyOf("2026.12.0", two));
  EXPECT_EQ(store_->Previous()->version, kV1) << "previous must not become the current too";
  EXPECT_FALSE(fs::exists(again));
  EXPECT_EQ(store_->List().size(), 2u);

  // Passing the installed file itself must not delete it.
  ASSERT_THAT(store_->Activate(installed->path, std::string(kV2), DigestOf(two), v1::FORMAT_GGUF),
              IsOk());
  EXPECT_EQ(ReadFile(installed->path), two);
}

TEST_F(ModelStoreTest, ReactivatingThePreviousVersionReusesItsFolder) {
  const std::string one = RandomBytes(1000, 1), two = RandomBytes(1000, 2);
  ASSERT_THAT(ActivateGguf(kV1, one), IsOk());
  ASSERT_THAT(ActivateGguf(kV2, two), IsOk());
  ASSERT_THAT(ActivateGguf(kV1, one), IsOk());
  EXPECT_EQ(store_->Current()->version, kV1);
  EXPECT_EQ(store_->Previous()->version, kV2);
  EXPECT_EQ(store_->List().size(), 2u);
  EXPECT_THAT(Names(store_->StagingDir()), IsEmpty());
}

TEST_F(ModelStoreTest, CollectGarbageKeepsCurrentAndPrevious) {
  const std::string one = RandomBytes(1000, 1), two = RandomBytes(2000, 2),
                    three = RandomBytes(3000, 3);
  ASSERT_THAT(ActivateGguf(kV1, one), IsOk());
  ASSERT_THAT(ActivateGguf(kV2, two), IsOk());
  ASSERT_THAT(ActivateGguf(kV3, three), IsOk());
  // An abandoned download and an abandoned activation folder in staging/.
  Artifact(std::string(500, 'x'), "old.partial");
  ASSERT_THAT(MakeDirs(store_->StagingDir() + "/activate-junk.abc123/model"), IsOk());
  WriteFile(store_->StagingDir() + "/activate-junk.abc123/model/half", std::string(70, 'y'));

  absl::StatusOr<int64_t> freed = store_->CollectGarbage();
  ASSERT_THAT(freed, IsOk());
  // v1's model and INSTALLED, plus the staging files.
  const int64_t installed_size = static_cast<int64_t>(
      fs::file_size(absl::StrCat(dir_, "/versions/", KeyOf("2027.01.0", three), "/INSTALLED")));
  EXPECT_GE(*freed, 1000 + 500 + 70);
  EXPECT_LE(*freed, 1000 + 500 + 70 + installed_size + 16);
  EXPECT_THAT(Names(dir_ + "/versions"),
              ElementsAre(KeyOf("2026.12.0", two), KeyOf("2027.01.0", three)));
  EXPECT_THAT(Names(store_->StagingDir()), IsEmpty());
  EXPECT_EQ(store_->Current()->version, kV3);
  EXPECT_EQ(store_->Previous()->version, kV2);

  absl::StatusOr<int64_t> again = store_->CollectGarbage();
  ASSERT_THAT(again, IsOk());
  EXPECT_EQ(*again, 0);
}

TEST_F(ModelStoreTest, RollbackSwapsCurrentAndPrevious) {
  const std::string one = RandomBytes(1000, 1), two = RandomBytes(1000, 2);
  EXPECT_THAT(store_->Rollback(), StatusIs(absl::StatusCode::kFailedPrecondition, _));
  ASSERT_THAT(ActivateGguf(kV1, one), IsOk());
  absl::Status no_previous = store_->Rollback();
  EXPECT_THAT(no_previous, StatusIs(absl::StatusCode::kFailedPrecondition, _));
  EXPECT_EQ(ErrorReason(no_previous), "NO_PREVIOUS_VERSION");
  ASSERT_THAT(ActivateGguf(kV2, two), IsOk());

  ASSERT_THAT(store_->Rollback(), IsOk());
  EXPECT_EQ(store_->Current()->version, kV1);
  EXPECT_EQ(store_->Previous()->version, kV2);
  EXPECT_EQ(ReadFile(store_->Current()->path), one);

  ASSERT_THAT(store_->Rollback(), IsOk());
  EXPECT_EQ(store_->Current()->version, kV2);
  EXPECT_EQ(store_->Previous()->version, kV1);

  // GC after a rollback keeps both.
  ASSERT_THAT(store_->CollectGarbage(), IsOk());
  EXPECT_EQ(store_->List().size(), 2u);
}

// A crash can stop an activation anywhere. Leave what each point would leave, all at once:
// a half-unpacked work folder, a version folder renamed in before its INSTALLED, and the new
// `current.new` symlink (pointing at that folder) not yet renamed over `current`.
TEST_F(ModelStoreTest, ReopenAfterCrashKeepsOldCurrentAndCleansLeftovers) {
  const std::string one = RandomBytes(1000, 1);
  ASSERT_THAT(ActivateGguf(kV1, one), IsOk());
  const std::string old_key = KeyOf("2026.11.0", one);

  const std::string staging = store_->StagingDir();
  ASSERT_THAT(MakeDirs(staging + "/activate-2026.12.0-0badc0de.Xy12Ab/model/Llama.mlpackage"),
              IsOk());
  WriteFile(staging + "/activate-2026.12.0-0badc0de.Xy12Ab/model/Llama.mlpackage/half", "hal");
  const std::string incomplete = dir_ + "/versions/2026.12.0-0badc0de";
  ASSERT_THAT(MakeDirs(incomplete), IsOk());
  WriteFile(incomplete + "/model.gguf", "new model, never finished");
  ASSERT_EQ(::symlink("versions/2026.12.0-0badc0de", (dir_ + "/current.new").c_str()), 0);
  // A download being resumed lives in staging/ too and must survive the reopen.
  Artifact("resumable bytes", "next.partial");

  // Before the reopen, `current` already names only the complete version.
  ASSERT_TRUE(store_->Current().has_value());
  EXPECT_EQ(store_->Current()->key, old_key);

  absl::StatusOr<ModelStore> reopened = ModelStore::Open(dir_);
  ASSERT_THAT(reopened, IsOk());
  ASSERT_TRUE(reopened->Current().has_value());
  EXPECT_EQ(reopened->Current()->key, old_key);
  EXPECT_EQ(ReadFile(reopened->Current()->path), one);
  EXPECT_EQ(LinkTarget(dir_ + "/current"), "versions/" + old_key);
  EXPECT_FALSE(fs::exists(fs::symlink_status(dir_ + "/current.new")));
  EXPECT_FALSE(fs::exists(incomplete));
  EXPECT_THAT(Names(staging), ElementsAre("next.partial"));
  EXPECT_THAT(Names(dir_ + "/versions"), ElementsAre(old_key));

  // And the store carries on normally.
  const std::string two = RandomBytes(1000, 2);
  ASSERT_THAT(reopened->Activate(Artifact(two), std::string(kV2), DigestOf(two), v1::FORMAT_GGUF),
              IsOk());
  EXPECT_EQ(reopened->Current()->version, kV2);
  EXPECT_EQ(reopened->Previous()->version, kV1);
}

TEST_F(ModelStoreTest, LinksToIncompleteOrForeignFoldersAreNotVersions) {
  const std::string one = RandomBytes(1000, 1);
  ASSERT_THAT(ActivateGguf(kV1, one), IsOk());
  ASSERT_THAT(MakeDirs(dir_ + "/versions/x-00000000"), IsOk());
  const std::string current = dir_ + "/current";

  ASSERT_EQ(::unlink(current.c_str()), 0);
  ASSERT_EQ(::symlink("versions/x-00000000", current.c_str()), 0);
  EXPECT_FALSE(store_->Current().has_value()) << "no INSTALLED: incomplete";

  ASSERT_EQ(::unlink(current.c_str()), 0);
  ASSERT_EQ(::symlink("versions/../../elsewhere", current.c_str()), 0);
  EXPECT_FALSE(store_->Current().has_value());

  ASSERT_EQ(::unlink(current.c_str()), 0);
  ASSERT_EQ(::symlink((dir_ + "/versions/" + KeyOf("2026.11.0", one)).c_str(), current.c_str()), 0);
  EXPECT_FALSE(store_->Current().has_value()) << "only links the store made count";
  EXPECT_EQ(store_->List().size(), 1u);
}

TEST_F(ModelStoreTest, VersionKeyIsSanitized) {
  const std::string data = RandomBytes(100, 1);
  absl::StatusOr<InstalledVersion> installed = ActivateGguf("../../outside", data);
  ASSERT_THAT(installed, IsOk());
  EXPECT_EQ(installed->key, KeyOf("_._.._outside", data));
  EXPECT_EQ(installed->version, "../../outside");
  EXPECT_FALSE(fs::exists(scratch_.Join("outside")));

  installed = ActivateGguf("models/m/versions/v1 beta", data);  // not a valid resource name
  ASSERT_THAT(installed, IsOk());
  EXPECT_EQ(installed->key, KeyOf("models_m_versions_v1_beta", data));

  // Two versions that map to the same key both get a folder.
  installed = ActivateGguf("models/m/versions/v1?beta", data);
  ASSERT_THAT(installed, IsOk());
  EXPECT_EQ(installed->key, KeyOf("models_m_versions_v1_beta", data) + "-2");
  EXPECT_EQ(store_->Current()->version, "models/m/versions/v1?beta");
  EXPECT_EQ(store_->Previous()->version, "models/m/versions/v1 beta");
}

TEST_F(ModelStoreTest, RefusesBadArguments) {
  const std::string data = "gguf";
  const std::string artifact = Artifact(data);
  EXPECT_THAT(store_->Activate(artifact, "", DigestOf(data), v1::FORMAT_GGUF),
              StatusIs(absl::StatusCode::kInvalidArgument, _));
  EXPECT_THAT(store_->Activate(artifact, "v1\nversion evil", DigestOf(data), v1::FORMAT_GGUF),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("control")));
  EXPECT_THAT(store_->Activate(artifact, std::string(kV1), "sha256:XYZ", v1::FORMAT_GGUF),
              StatusIs(absl::StatusCode::kInvalidArgument, _));
  absl::StatusOr<InstalledVersion> unspecified =
      store_->Activate(artifact, std::string(kV1), DigestOf(data), v1::FORMAT_UNSPECIFIED);
  EXPECT_THAT(unspecified, StatusIs(absl::StatusCode::kInvalidArgument, _));
  EXPECT_EQ(ErrorReason(unspecified.status()), "UNSUPPORTED_FORMAT");
  EXPECT_THAT(
      store_->Activate(artifact + ".missing", std::string(kV1), DigestOf(data), v1::FORMAT_GGUF),
      StatusIs(absl::StatusCode::kNotFound, _));
  const std::string link = store_->StagingDir() + "/link.gguf";
  ASSERT_EQ(::symlink(artifact.c_str(), link.c_str()), 0);
  absl::StatusOr<InstalledVersion> via_link =
      store_->Activate(link, std::string(kV1), DigestOf(data), v1::FORMAT_GGUF);
  EXPECT_THAT(via_link, StatusIs(absl::StatusCode::kInvalidArgument, _));
  EXPECT_EQ(ErrorReason(via_link.status()), "ARTIFACT_NOT_A_FILE");

  EXPECT_TRUE(fs::exists(artifact));
  EXPECT_FALSE(store_->Current().has_value());
  EXPECT_THAT(Names(dir_ + "/versions"), IsEmpty());
}

// A hostile or broken zip, the limits to unpack it with, and what the store must answer.
struct HostileZip {
  std::string test_name;
  std::string zip;
  UnzipLimits limits;
  absl::StatusCode code;
  std::string reason;
};

// Keeps gtest from printing the whole archive as bytes in test names.
void PrintTo(const HostileZip& param, std::ostream* os) { *os << param.test_name; }

std::vector<HostileZip> HostileZips() {
  const std::string ok_entry_data = RandomBytes(5000, 7);
  // Every archive starts with good entries so that a checker that only looked while
  // extracting would already have written files; nothing may remain of them.
  auto with_good = [&](std::vector<ZipEntry> bad) {
    std::vector<ZipEntry> entries = {
        File("Llama.mlpackage/Manifest.json", "{}"),
        File("Llama.mlpackage/Data/weight.bin", ok_entry_data),
    };
    entries.insert(entries.end(), bad.begin(), bad.end());
    return MakeZip(entries);
  };
  constexpr auto kInvalid = absl::StatusCode::kInvalidArgument;
  constexpr auto kExhausted = absl::StatusCode::kResourceExhausted;
  UnzipLimits defaults;
  UnzipLimits few_entries;
  few_entries.max_entries = 4;
  UnzipLimits small_total;
  small_total.max_total_bytes = 8000;
  UnzipLimits low_ratio;
  low_ratio.max_ratio = 100;

  std::vector<HostileZip> cases = {
      {"DotDot", with_good({File("../evil", "x")}), defaults, kInvalid, "ZIP_UNSAFE_PATH"},
      {"AbsolutePath", with_good({File("/abs/path", "x")}), defaults, kInvalid, "ZIP_UNSAFE_PATH"},
      {"DotDotInside", with_good({File("a/../../x", "x")}), defaults, kInvalid, "ZIP_UNSAFE_PATH"},
      {"DotComponent", with_good({File("a/./x", "x")}), defaults, kInvalid, "ZIP_UNSAFE_PATH"},
      {"DriveLetter", with_good({File("C:/Windows/evil", "x")}), defaults, kInvalid,
       "ZIP_UNSAFE_PATH"},
      {"Backslash", with_good({File("a\\..\\..\\evil", "x")}), defaults, kInvalid,
       "ZIP_UNSAFE_PATH"},
      {"EmptyComponent", with_good({File("a//b", "x")}), defaults, kInvalid, "ZIP_UNSAFE_PATH"},
      {"ControlCharacter", with_good({File("a\nb", "x")}), defaults, kInvalid, "ZIP_UNSAFE_PATH"},
      {"Symlink",
       with_good({WithMode(File("Llama.mlpackage/link", "/etc/passwd"), S_IFLNK | 0777)}), defaults,
       kInvalid, "ZIP_UNSUPPORTED_ENTRY_TYPE"},
      {"Fifo", with_good({WithMode(File("fifo", ""), S_IFIFO | 0644)}), defaults, kInvalid,
       "ZIP_UNSUPPORTED_ENTRY_TYPE"},
      {"CharDevice", with_good({WithMode(File("null", ""), S_IFCHR | 0666)}), defaults, kInvalid,
       "ZIP_UNSUPPORTED_ENTRY_TYPE"},
      {"BlockDevice", with_good({WithMode(File("sda", ""), S_IFBLK | 0666)}), defaults, kInvalid,
       "ZIP_UNSUPPORTED_ENTRY_TYPE"},
      {"FileIsAlsoDirectory", with_good({File("Llama.mlpackage/Data/weight.bin/x", "x")}), defaults,
       kInvalid, "ZIP_DUPLICATE_ENTRY"},
      {"TooManyEntries", with_good({File("c", "c"), File("d", "d"), File("e", "")}), few_entries,
       kExhausted, "ZIP_TOO_MANY_ENTRIES"},
      {"TooLarge", with_good({File("more.bin", RandomBytes(5000, 8))}), small_total, kExhausted,
       "ZIP_TOO_LARGE"},
      // A name that is not UTF-8 must not cost the refusal its reason (see the test below).
      {"TooLargeNotUtf8Name", with_good({File("more\xff\xfe.bin", RandomBytes(5000, 8))}),
       small_total, kExhausted, "ZIP_TOO_LARGE"},
      {"Bomb", with_good({File("zeros.bin", std::string(4 << 20, '\0'))}), low_ratio, kExhausted,
       "ZIP_RATIO_EXCEEDED"},
      // The third entry (index 2) claims fewer bytes than it unpacks to, so it passes the size
      // limits; extraction must stop at the declared size.
      {"DeclaresLessThanItHolds",
       WithDeclaredSize(with_good({File("liar.bin", std::string(100000, 'a'))}), 2, 1000), defaults,
       kInvalid, "ZIP_CORRUPT"},
      {"DeclaresMoreThanItHolds",
       WithDeclaredSize(with_good({StoredFile("liar.bin", RandomBytes(1000, 9))}), 2, 2000),
       defaults, kInvalid, "ZIP_CORRUPT"},
      {"NotAZip", "PK but not really a zip file at all", defaults, kInvalid, "ZIP_UNREADABLE"},
  };
  return cases;
}

class HostileZipTest : public ModelStoreTest, public ::testing::WithParamInterface<HostileZip> {};

TEST_P(HostileZipTest, IsRefusedAndLeavesNothingBehind) {
  const std::string good = RandomBytes(1000, 1);
  ASSERT_THAT(ActivateGguf(kV1, good), IsOk());
  const std::string good_key = KeyOf("2026.11.0", good);

  const HostileZip& param = GetParam();
  const std::string artifact = Artifact(param.zip, "hostile.zip.partial");
  absl::StatusOr<InstalledVersion> installed = store_->Activate(
      artifact, std::string(kV2), DigestOf(param.zip), v1::FORMAT_COREML_ZIP, param.limits);
  EXPECT_THAT(installed, StatusIs(param.code, _));
  EXPECT_EQ(ErrorReason(installed.status()), param.reason) << installed.status();
  RecordProperty("refusal", installed.status().ToString());

  EXPECT_EQ(store_->Current()->key, good_key);
  EXPECT_FALSE(store_->Previous().has_value());
  EXPECT_THAT(Names(dir_ + "/versions"), ElementsAre(good_key));
  EXPECT_THAT(Names(store_->StagingDir()), ElementsAre("hostile.zip.partial"))
      << "the artifact stays, no work folder does";
  EXPECT_THAT(Names(dir_), ElementsAre("current", "staging", "versions"));
  EXPECT_THAT(Names(scratch_.path()), ElementsAre("store")) << "nothing escaped";
}

INSTANTIATE_TEST_SUITE_P(Zips, HostileZipTest, ::testing::ValuesIn(HostileZips()),
                         [](const ::testing::TestParamInfo<HostileZip>& param_info) {
                           return param_info.param.test_name;
                         });

TEST(UnzipSafelyTest, RefusesAnExistingDestination) {
  ScratchDir scratch;
  const std::string zip_path = scratch.Join("a.zip");
  ASSERT_THAT(WriteFileAtomically(zip_path, MakeZip({File("a", "a")}), 0644), IsOk());
  const std::string dest = scratch.Join("out");
  ASSERT_THAT(MakeDirs(dest), IsOk());
  EXPECT_THAT(UnzipSafely(zip_path, dest, {}), StatusIs(absl::StatusCode::kAlreadyExists, _));
  EXPECT_TRUE(fs::is_directory(dest)) << "a folder it did not create is not removed";
  EXPECT_THAT(UnzipSafely(scratch.Join("missing.zip"), scratch.Join("out2"), {}),
              StatusIs(absl::StatusCode::kNotFound, _));
}

// ErrorInfo's metadata is proto3 strings: a raw name that is not UTF-8 would make the whole
// ErrorInfo unparseable, reason included. Every entry error escapes the name.
TEST(UnzipSafelyTest, EntryErrorsKeepTheirReasonWhateverTheName) {
  ScratchDir scratch;
  const std::string zip_path = scratch.Join("a.zip");
  ASSERT_THAT(WriteFileAtomically(zip_path,
                                  MakeZip({File("a.bin", RandomBytes(600, 1)),
                                           File("b\xff\xfe.bin", RandomBytes(600, 2))}),
                                  0644),
              IsOk());
  UnzipLimits limits;
  limits.max_total_bytes = 1000;
  const absl::Status status = UnzipSafely(zip_path, scratch.Join("out"), limits);
  EXPECT_THAT(status, StatusIs(absl::StatusCode::kResourceExhausted, HasSubstr("b\\xff")));
  EXPECT_EQ(ErrorReason(status), "ZIP_TOO_LARGE") << status;
  EXPECT_EQ(ErrorMetadataValue(status, "entry"), "b\\xff\\xfe.bin");
  EXPECT_FALSE(fs::exists(scratch.Join("out")));
}

TEST(UnzipSafelyTest, EmptyDirectoriesAndEmptyFilesAreKept) {
  ScratchDir scratch;
  const std::string zip_path = scratch.Join("a.zip");
  ASSERT_THAT(
      WriteFileAtomically(zip_path, MakeZip({Dir("empty/"), File("x/empty.txt", "")}), 0644),
      IsOk());
  ASSERT_THAT(UnzipSafely(zip_path, scratch.Join("out"), {}), IsOk());
  EXPECT_TRUE(fs::is_directory(scratch.Join("out/empty")));
  EXPECT_EQ(fs::file_size(scratch.Join("out/x/empty.txt")), 0u);
}

}  // namespace
}  // namespace modeldist::agent
