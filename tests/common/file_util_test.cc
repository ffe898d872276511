#include "common/file_util.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <filesystem>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/status.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/test_util.h"

namespace modeldist {
namespace {

using ::modeldist::testing::IsOk;
using ::modeldist::testing::IsOkAndHolds;
using ::modeldist::testing::RandomBytes;
using ::modeldist::testing::ScratchDir;
using ::modeldist::testing::StatusIs;
using ::testing::_;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

mode_t ModeOf(const std::string& path) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) return 0;
  return st.st_mode & 07777;
}

std::vector<std::string> Names(const std::string& dir) {
  std::vector<std::string> names;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    names.push_back(entry.path().filename().string());
  }
  return names;
}

TEST(WriteFileAtomicallyTest, WritesContentsWithMode) {
  ScratchDir dir;
  const std::string path = dir.Join("f");
  const std::string data = RandomBytes(200000, 3);
  ASSERT_THAT(WriteFileAtomically(path, data, 0640), IsOk());
  auto read = ReadFileToString(path);
  ASSERT_THAT(read, IsOk());
  EXPECT_EQ(*read, data);
  EXPECT_EQ(ModeOf(path), 0640u);
  // No temp file is left next to it.
  EXPECT_THAT(Names(dir.path()), ElementsAre("f"));
}

TEST(WriteFileAtomicallyTest, ModeIsExactRegardlessOfUmask) {
  ScratchDir dir;
  mode_t old = ::umask(077);
  absl::Status status = WriteFileAtomically(dir.Join("f"), "x", 0644);
  ::umask(old);
  ASSERT_THAT(status, IsOk());
  EXPECT_EQ(ModeOf(dir.Join("f")), 0644u);
}

TEST(WriteFileAtomicallyTest, OverwriteReplaces) {
  ScratchDir dir;
  const std::string path = dir.Join("f");
  ASSERT_THAT(WriteFileAtomically(path, "old contents", 0600), IsOk());
  ASSERT_THAT(WriteFileAtomically(path, "new", 0644), IsOk());
  auto read = ReadFileToString(path);
  ASSERT_THAT(read, IsOk());
  EXPECT_EQ(*read, "new");
  EXPECT_EQ(ModeOf(path), 0644u);
  EXPECT_THAT(Names(dir.path()), ElementsAre("f"));
}

TEST(WriteFileAtomicallyTest, NoOverwriteKeepsTheOldFile) {
  ScratchDir dir;
  const std::string path = dir.Join("f");
  ASSERT_THAT(WriteFileAtomically(path, "old", 0600), IsOk());
  EXPECT_THAT(WriteFileAtomically(path, "new", 0644, /*overwrite=*/false),
              StatusIs(absl::StatusCode::kAlreadyExists, HasSubstr(path)));
  auto read = ReadFileToString(path);
  ASSERT_THAT(read, IsOk());
  EXPECT_EQ(*read, "old");
  EXPECT_EQ(ModeOf(path), 0600u);
  EXPECT_THAT(Names(dir.path()), ElementsAre("f"));
}

TEST(WriteFileAtomicallyTest, NoOverwriteCreatesWhenAbsent) {
  ScratchDir dir;
  ASSERT_THAT(WriteFileAtomically(dir.Join("f"), "v", 0600, /*overwrite=*/false), IsOk());
  auto read = ReadFileToString(dir.Join("f"));
  ASSERT_THAT(read, IsOk());
  EXPECT_EQ(*read, "v");
  EXPECT_EQ(ModeOf(dir.Join("f")), 0600u);
}

TEST(WriteFileAtomicallyTest, MissingDirectoryIsNotFound) {
  ScratchDir dir;
  EXPECT_THAT(WriteFileAtomically(dir.Join("no/such/f"), "v", 0600),
              StatusIs(absl::StatusCode::kNotFound, _));
}

TEST(WriteFileAtomicallyTest, NeverFollowsOrReusesWhatIsPlantedAtTheTempName) {
  ScratchDir dir;
  const std::string path = dir.Join("key.pem");
  const std::string victim = dir.Join("victim");
  ASSERT_THAT(WriteFileAtomically(victim, "precious", 0600), IsOk());
  // A symlink where the temp file goes: following it would overwrite the victim.
  const std::string tmp = absl::StrCat(path, ".tmp.", ::getpid());
  ASSERT_EQ(::symlink(victim.c_str(), tmp.c_str()), 0);
  // ...and a file at the next name, which must not be reused (its mode stays wide open).
  const std::string next = absl::StrCat(tmp, ".1");
  ASSERT_THAT(WriteFileAtomically(next, "planted", 0666), IsOk());
  ASSERT_EQ(::chmod(next.c_str(), 0666), 0);

  ASSERT_THAT(WriteFileAtomically(path, "secret", 0600), IsOk());
  EXPECT_THAT(ReadFileToString(path), IsOkAndHolds("secret"));
  EXPECT_EQ(ModeOf(path), 0600u);
  EXPECT_THAT(ReadFileToString(victim), IsOkAndHolds("precious"));
  struct stat st;
  ASSERT_EQ(::lstat(tmp.c_str(), &st), 0);
  EXPECT_TRUE(S_ISLNK(st.st_mode)) << "the planted symlink is someone else's: left alone";
  EXPECT_THAT(ReadFileToString(next), IsOkAndHolds("planted"));
}

TEST(ReadFileToStringTest, MissingIsNotFound) {
  ScratchDir dir;
  EXPECT_THAT(ReadFileToString(dir.Join("absent")),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("absent")));
}

TEST(ReadFileToStringTest, EmptyAndBinary) {
  ScratchDir dir;
  ASSERT_THAT(WriteFileAtomically(dir.Join("empty"), "", 0600), IsOk());
  auto empty = ReadFileToString(dir.Join("empty"));
  ASSERT_THAT(empty, IsOk());
  EXPECT_EQ(*empty, "");
  const std::string binary("a\0b\xff", 4);
  ASSERT_THAT(WriteFileAtomically(dir.Join("bin"), binary, 0600), IsOk());
  auto read = ReadFileToString(dir.Join("bin"));
  ASSERT_THAT(read, IsOk());
  EXPECT_EQ(*read, binary);
}

TEST(MakeDirsTest, CreatesNestedDirectoriesWithMode) {
  ScratchDir dir;
  const std::string nested = dir.Join("a/b/c");
  ASSERT_THAT(MakeDirs(nested, 0700), IsOk());
  EXPECT_TRUE(std::filesystem::is_directory(nested));
  EXPECT_EQ(ModeOf(dir.Join("a")), 0700u);
  EXPECT_EQ(ModeOf(nested), 0700u);
  // Existing directories are fine, and their mode is left alone.
  ASSERT_THAT(MakeDirs(nested, 0755), IsOk());
  EXPECT_EQ(ModeOf(nested), 0700u);
}

TEST(MakeDirsTest, TrailingSlashAndRelativeParts) {
  ScratchDir dir;
  ASSERT_THAT(MakeDirs(dir.Join("x//y/./z/")), IsOk());
  EXPECT_TRUE(std::filesystem::is_directory(dir.Join("x/y/z")));
}

TEST(MakeDirsTest, FileInTheWayIsAnError) {
  ScratchDir dir;
  ASSERT_THAT(WriteFileAtomically(dir.Join("file"), "x", 0600), IsOk());
  absl::Status status = MakeDirs(dir.Join("file/sub"));
  EXPECT_FALSE(status.ok());
  EXPECT_THAT(status.message(), HasSubstr("file"));
  EXPECT_FALSE(MakeDirs(dir.Join("file")).ok());
}

TEST(FsyncDirTest, ExistingAndMissing) {
  ScratchDir dir;
  EXPECT_THAT(FsyncDir(dir.path()), IsOk());
  EXPECT_THAT(FsyncDir(dir.Join("absent")), StatusIs(absl::StatusCode::kNotFound, _));
}

TEST(WriteAllTest, WritesEverything) {
  ScratchDir dir;
  const std::string path = dir.Join("f");
  const std::string data = RandomBytes(3 << 20, 5);
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
  ASSERT_GE(fd, 0);
  EXPECT_THAT(WriteAll(fd, data.data(), data.size()), IsOk());
  ::close(fd);
  auto read = ReadFileToString(path);
  ASSERT_THAT(read, IsOk());
  EXPECT_EQ(*read, data);
}

TEST(WriteAllTest, BadFdIsAnError) { EXPECT_FALSE(WriteAll(-1, "x", 1).ok()); }

TEST(ErrnoStatusTest, MapsCommonErrors) {
  EXPECT_THAT(ErrnoStatus(ENOENT, "open x"),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("open x: ")));
  EXPECT_THAT(ErrnoStatus(EEXIST, "w"), StatusIs(absl::StatusCode::kAlreadyExists, _));
  EXPECT_THAT(ErrnoStatus(EACCES, "w"), StatusIs(absl::StatusCode::kPermissionDenied, _));
  EXPECT_THAT(ErrnoStatus(EPERM, "w"), StatusIs(absl::StatusCode::kPermissionDenied, _));
  EXPECT_THAT(ErrnoStatus(ENOSPC, "w"), StatusIs(absl::StatusCode::kResourceExhausted, _));
  EXPECT_THAT(ErrnoStatus(EIO, "w"), StatusIs(absl::StatusCode::kUnavailable, _));
}

TEST(ErrnoStatusTest, CarriesAReasonAndTheErrno) {
  EXPECT_EQ(ErrorReason(ErrnoStatus(ENOENT, "w")), "FILE_NOT_FOUND");
  EXPECT_EQ(ErrorReason(ErrnoStatus(EEXIST, "w")), "FILE_EXISTS");
  EXPECT_EQ(ErrorReason(ErrnoStatus(EACCES, "w")), "FILE_PERMISSION_DENIED");
  EXPECT_EQ(ErrorReason(ErrnoStatus(EDQUOT, "w")), "DISK_FULL");
  const absl::Status io = ErrnoStatus(EIO, "w");
  EXPECT_EQ(ErrorReason(io), "IO_ERROR");
  EXPECT_EQ(ErrorMetadataValue(io, "errno"), std::to_string(EIO));
}

}  // namespace
}  // namespace modeldist
