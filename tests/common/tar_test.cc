// The streaming tar of bundles: what the writer writes the reader reads back (and GNU tar
// lists), sizes past the ustar limit go through a pax record, and every damaged or hostile
// header is refused with its reason.
#include "common/tar.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "common/status.h"
#include "gtest/gtest.h"
#include "tests/testing/test_util.h"

namespace modeldist {
namespace {

using testing::ScratchDir;

// Raw archive pieces as a hostile writer would make them (TarWriter refuses to).
// One ustar header block: `name`, the 12 bytes of the size field as given, `type`, and a
// correct checksum, so that what is refused is the field under test.
std::string Header(absl::string_view name, absl::string_view size_field, char type = '0',
                   absl::string_view prefix = "") {
  std::string block(kTarBlockBytes, '\0');
  auto put = [&block](size_t at, absl::string_view field, size_t width) {
    block.replace(at, std::min(field.size(), width), field.data(), std::min(field.size(), width));
  };
  put(0, name, 100);
  put(345, prefix, 155);
  put(100, "0000644", 7);
  put(124, size_field, 12);
  block[156] = type;
  block.replace(257, 8,
                std::string("ustar\0"
                            "00",
                            8));
  unsigned sum = 0;
  for (size_t i = 0; i < block.size(); ++i) {
    sum += (i >= 148 && i < 156) ? ' ' : static_cast<unsigned char>(block[i]);
  }
  char checksum[8];
  std::snprintf(checksum, sizeof(checksum), "%06o", sum);
  block.replace(148, 7, checksum, 7);  // six digits and a NUL
  block[155] = ' ';
  return block;
}

std::string Octal(int64_t size) {
  char field[12];
  std::snprintf(field, sizeof(field), "%011llo", static_cast<unsigned long long>(size));
  return std::string(field, 12);
}

// A GNU base-256 size field: 0x80, then the value big-endian in the remaining 11 bytes.
std::string Base256(uint64_t size) {
  std::string field(12, '\0');
  field[0] = static_cast<char>(0x80);
  for (int i = 11; i >= 4; --i, size >>= 8) field[i] = static_cast<char>(size & 0xff);
  return field;
}

std::string Padded(std::string body) {
  body.resize((body.size() + kTarBlockBytes - 1) / kTarBlockBytes * kTarBlockBytes, '\0');
  return body;
}

// "<length> <key>=<value>\n", the length counting its own digits.
std::string PaxRecord(absl::string_view key, absl::string_view value) {
  const size_t rest = key.size() + value.size() + 3;
  size_t length = rest + 1;
  while (std::to_string(length).size() + rest != length) {
    length = std::to_string(length).size() + rest;
  }
  return absl::StrCat(length, " ", key, "=", value, "\n");
}

// A pax header carrying `records`, then a regular entry `name` of `size` (octal field).
std::string WithPax(absl::string_view records, absl::string_view name = "x") {
  return Header("PaxHeaders/x", Octal(static_cast<int64_t>(records.size())), 'x') +
         Padded(std::string(records)) + Header(name, Octal(0));
}

const std::string kEnd(2 * kTarBlockBytes, '\0');

class TarTest : public ::testing::Test {
 protected:
  std::string Write(const std::vector<std::pair<std::string, std::string>>& entries) {
    ScopedFd fd(::open(path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644));
    TarWriter tar(fd.get(), path_);
    for (const auto& [name, body] : entries) {
      // In pieces, as a stream arrives.
      EXPECT_TRUE(tar.Begin(name, static_cast<int64_t>(body.size())).ok());
      for (size_t at = 0; at < body.size(); at += 1000) {
        EXPECT_TRUE(tar.Write(absl::string_view(body).substr(at, 1000)).ok());
      }
      EXPECT_TRUE(tar.End().ok());
    }
    EXPECT_TRUE(tar.Finish().ok());
    return *ReadFileToString(path_);
  }

  // Every entry of path_, or the first error.
  absl::StatusOr<std::vector<std::pair<std::string, std::string>>> ReadBack() {
    ScopedFd fd(::open(path_.c_str(), O_RDONLY));
    TarReader tar(fd.get(), path_);
    std::vector<std::pair<std::string, std::string>> entries;
    TarEntry entry;
    for (;;) {
      MD_ASSIGN_OR_RETURN(bool more, tar.Next(&entry));
      if (!more) return entries;
      std::string body;
      MD_RETURN_IF_ERROR(tar.Read(entry.size, [&](absl::string_view piece) {
        body.append(piece.data(), piece.size());
        return absl::OkStatus();
      }));
      entries.emplace_back(entry.name, std::move(body));
    }
  }

  ScratchDir dir_;
  const std::string path_ = dir_.Join("a.tar");
};

TEST_F(TarTest, RoundTripsAndGnuTarAgrees) {
  const std::vector<std::pair<std::string, std::string>> entries = {
      {"INDEX", "hello\n"}, {"empty", ""}, {"blobs/one", std::string(70000, 'x')}};
  Write(entries);
  auto read = ReadBack();
  ASSERT_TRUE(read.ok()) << read.status();
  EXPECT_EQ(*read, entries);
  // An independent reader lists the same archive.
  const std::string listing = dir_.Join("list");
  ASSERT_EQ(std::system(absl::StrCat("tar -tf ", path_, " > ", listing).c_str()), 0);
  EXPECT_EQ(*ReadFileToString(listing), "INDEX\nempty\nblobs/one\n");
}

TEST_F(TarTest, ReadsWhatGnuTarWrites) {
  ASSERT_TRUE(WriteFileAtomically(dir_.Join("model.gguf"), "GGUF....", 0644).ok());
  ASSERT_EQ(std::system(
                absl::StrCat("cd ", dir_.path(), " && tar --format=pax -cf ", path_, " model.gguf")
                    .c_str()),
            0);
  auto read = ReadBack();
  ASSERT_TRUE(read.ok()) << read.status();
  ASSERT_EQ(read->size(), 1u);
  EXPECT_EQ((*read)[0].second, "GGUF....");
}

TEST_F(TarTest, SizesPastTheUstarLimitUseAPaxRecord) {
  const int64_t size = (int64_t{9} << 30) + 3;  // over 8 GiB - 1
  {
    ScopedFd fd(::open(path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644));
    TarWriter tar(fd.get(), path_);
    ASSERT_TRUE(tar.Begin("blobs/huge", size).ok());
  }
  ScopedFd fd(::open(path_.c_str(), O_RDONLY));
  TarReader tar(fd.get(), path_);
  TarEntry entry;
  auto more = tar.Next(&entry);
  ASSERT_TRUE(more.ok()) << more.status();
  EXPECT_EQ(entry.name, "blobs/huge");
  EXPECT_EQ(entry.size, size);
}

TEST_F(TarTest, RefusesDamageWithItsReason) {
  const std::string good = Write({{"INDEX", "hello\n"}, {"blob", std::string(5000, 'y')}});
  struct Case {
    const char* what;
    std::string bytes;
    const char* reason;
  };
  std::string bad_checksum = good;
  bad_checksum[10] ^= 1;  // inside the first name: the checksum no longer matches
  std::vector<Case> cases = {
      {"truncated in a body", good.substr(0, 1500), "TAR_TRUNCATED"},
      {"no end-of-archive blocks", good.substr(0, good.size() - 1024), "TAR_TRUNCATED"},
      {"one end block only", good.substr(0, good.size() - 512), "TAR_TRUNCATED"},
      {"bad checksum", bad_checksum, "TAR_BAD_HEADER"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.what);
    ASSERT_TRUE(WriteFileAtomically(path_, c.bytes, 0644).ok());
    EXPECT_EQ(ErrorReason(ReadBack().status()), c.reason);
  }
  // Links, folders and unsafe names are not regular bundle entries.
  ASSERT_TRUE(MakeDirs(dir_.Join("src/sub")).ok());
  ASSERT_EQ(::symlink("/etc/passwd", dir_.Join("src/link").c_str()), 0);
  for (const char* member : {"sub", "link"}) {
    SCOPED_TRACE(member);
    ASSERT_EQ(std::system(absl::StrCat("cd ", dir_.Join("src"), " && tar --no-recursion -cf ",
                                       path_, " ", member)
                              .c_str()),
              0);
    EXPECT_EQ(ErrorReason(ReadBack().status()), "TAR_BAD_HEADER");
  }
  ScopedFd fd(::open(path_.c_str(), O_WRONLY | O_TRUNC));
  TarWriter writer(fd.get(), path_);
  for (const std::string& name :
       {std::string("../escape"), std::string("/abs"), std::string(), std::string("."),
        std::string("a//b"), std::string("a\\b"), std::string("dir/"), std::string("a/./b"),
        std::string(101, 'n')}) {
    SCOPED_TRACE(name);
    EXPECT_EQ(ErrorReason(writer.Begin(name, 1)), "TAR_BAD_ENTRY");
  }
  EXPECT_EQ(ErrorReason(writer.Begin("huge", kMaxTarEntryBytes + 1)), "TAR_BAD_ENTRY");
  EXPECT_EQ(ErrorReason(writer.Begin("negative", -1)), "TAR_BAD_ENTRY");
  ASSERT_TRUE(writer.Begin("short", 3).ok());
  EXPECT_EQ(ErrorReason(writer.Write("four")), "TAR_BAD_ENTRY");
  EXPECT_EQ(ErrorReason(writer.End()), "TAR_BAD_ENTRY");
}

// Headers no TarWriter makes, fed to the reader: each is refused with TAR_BAD_HEADER, and never
// reaches an overflowing offset sum (UBSan in CI) or a name a caller would have to re-check.
TEST_F(TarTest, RefusesHostileHeaders) {
  const std::string at_limit(100, 'p');
  // The hand-made pieces are right: the same shapes with acceptable values read back.
  for (const std::string& bytes :
       {Header("ok", Octal(3)) + Padded("abc") + kEnd,
        Header("ok", Base256(3)) + Padded("abc") + kEnd,
        WithPax(PaxRecord("path", at_limit) + PaxRecord("mtime", "1.5")) + kEnd}) {
    ASSERT_TRUE(WriteFileAtomically(path_, bytes, 0644).ok());
    auto read = ReadBack();
    ASSERT_TRUE(read.ok()) << read.status();
    ASSERT_EQ(read->size(), 1u);
  }

  struct Case {
    std::string what;
    std::string bytes;
  };
  std::vector<Case> cases;
  for (const char* name : {"../up", "/abs", ".", "a//b", "a\\b", "dir/", "a/./b", "tab\there"}) {
    cases.push_back({absl::StrCat("unsafe name ", name), Header(name, Octal(0)) + kEnd});
  }
  // An empty name with a valid header is not an end-of-archive block.
  cases.push_back({"empty name", Header("", Octal(0)) + kEnd});
  // A ustar prefix joins the name: "../" there is as unsafe.
  cases.push_back({"prefix ..", Header("x", Octal(0), '0', "..") + kEnd});
  cases.push_back(
      {"pax path of 101 bytes", WithPax(PaxRecord("path", std::string(101, 'p'))) + kEnd});
  cases.push_back(
      {"pax path of 64 KiB", WithPax(PaxRecord("path", std::string(60000, 'p'))) + kEnd});
  cases.push_back({"pax path ../x", WithPax(PaxRecord("path", "../x")) + kEnd});
  for (const char* records : {"garbage", "5 size=1\n", "99 size=1\n", "10 noequals\n", "x size=1\n",
                              "11 size=1\nX", "12 size=-1\n", "12 size=abc\n"}) {
    cases.push_back(
        {absl::StrCat("malformed pax ", absl::CEscape(records)), WithPax(records) + kEnd});
  }
  const std::string big(64 * 1024 + 1, ' ');
  cases.push_back({"pax header over 64 KiB",
                   Header("PaxHeaders/x", Octal(static_cast<int64_t>(big.size())), 'x') +
                       Padded(big) + Header("x", Octal(0)) + kEnd});
  cases.push_back({"pax size INT64_MAX", WithPax(PaxRecord("size", "9223372036854775807")) + kEnd});
  cases.push_back({"pax size over the cap",
                   WithPax(PaxRecord("size", std::to_string(kMaxTarEntryBytes + 1))) + kEnd});
  cases.push_back({"base-256 size INT64_MAX", Header("x", Base256(INT64_MAX)) + kEnd});
  cases.push_back({"base-256 size over the cap",
                   Header("x", Base256(static_cast<uint64_t>(kMaxTarEntryBytes) + 1)) + kEnd});
  cases.push_back({"base-256 negative", Header("x", std::string("\xff\xff\xff\xff\xff\xff"
                                                                "\xff\xff\xff\xff\xff\xff",
                                                                12)) +
                                            kEnd});
  cases.push_back(
      {"a zero block followed by data",
       Header("a", Octal(0)) + std::string(kTarBlockBytes, '\0') + Header("b", Octal(0)) + kEnd});
  cases.push_back({"symlink type", Header("l", Octal(0), '2') + kEnd});
  cases.push_back({"global pax header", Header("g", Octal(0), 'g') + kEnd});
  for (const Case& c : cases) {
    SCOPED_TRACE(c.what);
    ASSERT_TRUE(WriteFileAtomically(path_, c.bytes, 0644).ok());
    absl::Status status = ReadBack().status();
    EXPECT_EQ(ErrorReason(status), "TAR_BAD_HEADER") << status;
  }
}

}  // namespace
}  // namespace modeldist
