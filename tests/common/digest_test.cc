#include "common/digest.h"

#include <string>

#include "absl/strings/str_cat.h"
#include "common/status.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/test_util.h"

namespace modeldist {
namespace {

using ::modeldist::testing::IsOk;
using ::modeldist::testing::RandomBytes;
using ::modeldist::testing::ScratchDir;
using ::modeldist::testing::StatusIs;
using ::testing::_;
using ::testing::HasSubstr;

constexpr absl::string_view kAbcHex =
    "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
constexpr absl::string_view kEmptyHex =
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

TEST(ParseDigestTest, AcceptsLowercaseSha256) {
  auto hex = ParseDigest("digest", FormatDigest(kAbcHex));
  ASSERT_THAT(hex, IsOk());
  EXPECT_EQ(*hex, kAbcHex);
}

TEST(ParseDigestTest, RejectsUppercaseHex) {
  std::string upper = FormatDigest(kAbcHex);
  upper.back() = 'D';
  auto hex = ParseDigest("digest", upper);
  EXPECT_THAT(hex, StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("lowercase")));
  EXPECT_EQ(ErrorReason(hex.status()), "INVALID_DIGEST");
}

TEST(ParseDigestTest, RejectsWrongLength) {
  std::string digest = FormatDigest(kAbcHex);
  EXPECT_THAT(ParseDigest("digest", digest.substr(0, digest.size() - 1)),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("got 63")));
  EXPECT_THAT(ParseDigest("digest", digest + "0"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("got 65")));
}

TEST(ParseDigestTest, RejectsOtherAlgorithmsAndMissingPrefix) {
  EXPECT_THAT(ParseDigest("digest", absl::StrCat("sha512:", kAbcHex)),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("sha256:")));
  EXPECT_THAT(ParseDigest("digest", kAbcHex), StatusIs(absl::StatusCode::kInvalidArgument, _));
  EXPECT_THAT(ParseDigest("digest", absl::StrCat("SHA256:", kAbcHex)),
              StatusIs(absl::StatusCode::kInvalidArgument, _));
  EXPECT_THAT(ParseDigest("digest", "sha256"), StatusIs(absl::StatusCode::kInvalidArgument, _));
}

TEST(ParseDigestTest, EmptyIsMissingAndNamesTheField) {
  auto hex = ParseDigest("artifact.digest", "");
  EXPECT_THAT(hex, StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("artifact.digest")));
  EXPECT_EQ(ErrorReason(hex.status()), "MISSING_DIGEST");
  EXPECT_EQ(ErrorMetadataValue(hex.status(), "field"), "artifact.digest");
}

TEST(DigestTest, FormatAndHexEncode) {
  EXPECT_EQ(FormatDigest("ab"), "sha256:ab");
  EXPECT_EQ(HexEncode(std::string("\x00\x01\x7f\x80\xff", 5)), "00017f80ff");
  EXPECT_EQ(HexEncode(""), "");
}

TEST(Sha256Test, KnownVectors) {
  EXPECT_EQ(Sha256::HexOf("abc"), kAbcHex);
  EXPECT_EQ(Sha256::HexOf(""), kEmptyHex);
}

TEST(Sha256Test, IncrementalEqualsOneShot) {
  const std::string data = RandomBytes(1 << 20, 42);
  Sha256 hash;
  size_t off = 0;
  for (size_t chunk : {1u, 63u, 64u, 65u, 4096u, 100000u}) {
    hash.Update(absl::string_view(data).substr(off, chunk));
    off += chunk;
  }
  hash.Update(data.data() + off, data.size() - off);
  EXPECT_EQ(hash.FinishHex(), Sha256::HexOf(data));
}

TEST(Sha256Test, CopyContinuesIndependently) {
  Sha256 a;
  a.Update("ab");
  Sha256 b(a);  // both have hashed "ab"
  a.Update("c");
  b.Update("x");
  EXPECT_EQ(a.FinishHex(), kAbcHex);
  EXPECT_EQ(b.FinishHex(), Sha256::HexOf("abx"));
}

TEST(Sha256Test, CopyAssignmentReplacesState) {
  Sha256 a;
  a.Update("ab");
  Sha256 b;
  b.Update("unrelated bytes");
  b = a;
  b.Update("c");
  EXPECT_EQ(b.FinishHex(), kAbcHex);
  // The source is untouched by the copy and by updates to it.
  a.Update("c");
  EXPECT_EQ(a.FinishHex(), kAbcHex);
}

TEST(Sha256Test, FinishingACopyLeavesTheOriginalUsable) {
  Sha256 a;
  a.Update("a");
  EXPECT_EQ(Sha256(a).FinishHex(), Sha256::HexOf("a"));
  a.Update("bc");
  EXPECT_EQ(a.FinishHex(), kAbcHex);
}

TEST(DigestFileTest, HashesAFile) {
  ScratchDir dir;
  const std::string data = RandomBytes(3 * (1 << 20) + 5, 9);
  FILE* f = fopen(dir.Join("f").c_str(), "wb");
  ASSERT_NE(f, nullptr);
  ASSERT_EQ(fwrite(data.data(), 1, data.size(), f), data.size());
  fclose(f);
  auto digest = DigestFile(dir.Join("f"));
  ASSERT_THAT(digest, IsOk());
  EXPECT_EQ(digest->hex, Sha256::HexOf(data));
  EXPECT_EQ(digest->size, static_cast<int64_t>(data.size()));
}

TEST(DigestFileTest, MissingFileIsNotFound) {
  ScratchDir dir;
  EXPECT_THAT(DigestFile(dir.Join("absent")), StatusIs(absl::StatusCode::kNotFound, _));
}

}  // namespace
}  // namespace modeldist
