#include "common/names.h"

#include <string>

#include "common/status.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/test_util.h"

namespace modeldist {
namespace {

using ::modeldist::testing::IsOk;
using ::modeldist::testing::StatusIs;
using ::testing::HasSubstr;

TEST(ValidateIdTest, AcceptsLettersDigitsDotsUnderscoresDashes) {
  EXPECT_THAT(ValidateId("model_id", "ok-1.2_x"), IsOk());
  EXPECT_THAT(ValidateId("model_id", "a"), IsOk());
  EXPECT_THAT(ValidateId("model_id", "7B"), IsOk());
  EXPECT_THAT(ValidateId("model_id", std::string(kMaxIdLength, 'a')), IsOk());
}

TEST(ValidateIdTest, EmptyIsRequired) {
  absl::Status status = ValidateId("model_id", "");
  EXPECT_THAT(status, StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("model_id")));
  EXPECT_EQ(ErrorReason(status), "EMPTY_ID");
  EXPECT_EQ(ErrorMetadataValue(status, "field"), "model_id");
}

TEST(ValidateIdTest, TooLong) {
  absl::Status status = ValidateId("model_id", std::string(kMaxIdLength + 1, 'a'));
  EXPECT_THAT(status, StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("129")));
  EXPECT_EQ(ErrorReason(status), "ID_TOO_LONG");
}

TEST(ValidateIdTest, RejectsPathTricks) {
  for (const std::string& id :
       {std::string(".."), std::string("."), std::string("a/b"), std::string("a..b"),
        std::string(".hidden"), std::string("-dash"), std::string("_under"), std::string("a\\b"),
        std::string("a b"), std::string("a\0b", 3), std::string("caf\xc3\xa9")}) {
    SCOPED_TRACE(id);
    absl::Status status = ValidateId("version_id", id);
    EXPECT_THAT(status, StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("version_id")));
    EXPECT_EQ(ErrorReason(status), "INVALID_ID");
  }
}

TEST(ValidateUploadIdTest, AcceptsSixteenToSixtyFourLettersDigitsDashesUnderscores) {
  EXPECT_THAT(ValidateUploadId("upload_id", "ctl-0123456789abcdef"), IsOk());
  EXPECT_THAT(ValidateUploadId("upload_id", std::string(kMinUploadIdLength, '_')), IsOk());
  EXPECT_THAT(ValidateUploadId("upload_id", std::string(kMaxUploadIdLength, 'Z')), IsOk());
}

TEST(ValidateUploadIdTest, RejectsOtherLengthsAndCharactersWithoutEchoingThem) {
  for (const std::string& id :
       {std::string(""), std::string(kMinUploadIdLength - 1, 'a'),
        std::string(kMaxUploadIdLength + 1, 'a'), std::string("aaaaaaaaaaaaaaa.b"),
        std::string("../../etc/passwd0"), std::string("aaaaaaaa/aaaaaaaa"),
        std::string("aaaaaaaa\0aaaaaaaa", 17), std::string("aaaaaaaa\x1b[2Jaaaaaa")}) {
    SCOPED_TRACE(id);
    absl::Status status = ValidateUploadId("upload_id", id);
    EXPECT_THAT(status, StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("upload_id")));
    EXPECT_EQ(ErrorReason(status), "INVALID_UPLOAD_ID");
    EXPECT_EQ(ErrorMetadataValue(status, "field"), "upload_id");
    if (!id.empty()) {
      EXPECT_THAT(std::string(status.message()), ::testing::Not(HasSubstr(id)));
    }
  }
}

TEST(ParseModelNameTest, ParsesModelsSlashId) {
  auto model = ParseModelName("name", "models/llama-3");
  ASSERT_THAT(model, IsOk());
  EXPECT_EQ(*model, "llama-3");
  EXPECT_EQ(ModelName("llama-3"), "models/llama-3");
}

TEST(ParseModelNameTest, RejectsOtherShapes) {
  for (const char* name : {"", "models", "models/", "model/x", "models/x/", "x/models/y",
                           "models/x/versions/1", "/models/x"}) {
    SCOPED_TRACE(name);
    auto model = ParseModelName("name", name);
    EXPECT_THAT(model, StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("name")));
  }
  EXPECT_EQ(ErrorReason(ParseModelName("name", "model/x").status()), "INVALID_NAME");
  EXPECT_EQ(ErrorReason(ParseModelName("name", "models/..").status()), "INVALID_ID");
}

TEST(IsDottedVersionTest, DottedNumbersOnly) {
  for (const char* ok : {"14", "14.0", "14.4.1", "0.0.0.1"}) {
    EXPECT_TRUE(IsDottedVersion(ok)) << ok;
  }
  EXPECT_TRUE(IsDottedVersion(std::string(kMaxOsVersionBytes, '1')));
  for (const char* bad : {"", ".", "14.", ".14", "14..0", "14.a", "v14", "14 .0", "-1"}) {
    EXPECT_FALSE(IsDottedVersion(bad)) << bad;
  }
  EXPECT_FALSE(IsDottedVersion(std::string(kMaxOsVersionBytes + 1, '1')));
  static_assert(IsDottedVersion("1.2"), "usable in constant expressions");
}

TEST(ParseVersionNameTest, ParsesAndRoundTrips) {
  auto name = ParseVersionName("name", "models/m1/versions/2024.06.01");
  ASSERT_THAT(name, IsOk());
  EXPECT_EQ(name->model, "m1");
  EXPECT_EQ(name->version, "2024.06.01");
  EXPECT_EQ(name->ToString(), "models/m1/versions/2024.06.01");
}

TEST(ParseVersionNameTest, RejectsOtherShapesAndBadIds) {
  for (const char* name :
       {"models/m1", "models/m1/versions", "models/m1/versions/", "models/m1/version/2",
        "models/m1/versions/2/extra", "models/../versions/2", "models/m1/versions/.."}) {
    SCOPED_TRACE(name);
    EXPECT_THAT(ParseVersionName("name", name),
                StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("name")));
  }
}

}  // namespace
}  // namespace modeldist
