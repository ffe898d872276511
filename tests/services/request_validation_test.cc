// RequestCheck: the first failing check is the answer, it names its field, and a check after a
// failure neither runs nor writes its output.
#include "services/request_validation.h"

#include <string>

#include "common/status.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "modeldist/v1/resources.pb.h"
#include "tests/testing/test_util.h"

namespace modeldist::services {
namespace {

using ::modeldist::testing::IsOk;
using ::modeldist::testing::StatusIs;
using ::testing::HasSubstr;

void ExpectRefused(const absl::Status& status, const std::string& field,
                   const std::string& reason) {
  EXPECT_THAT(status, StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr(field)));
  EXPECT_EQ(ErrorReason(status), reason);
  EXPECT_EQ(ErrorMetadataValue(status, "field"), field);
}

TEST(RequestCheckTest, PassesAndFillsOutputs) {
  std::string channel, model;
  VersionName version;
  std::string hex;
  EXPECT_THAT(RequestCheck()
                  .TierChannel("llama8b", "", &channel)
                  .ModelName("parent", "models/m", &model)
                  .VersionName("version", "models/m/versions/1.0", &version)
                  .Digest("digest", "sha256:" + std::string(64, 'a'), &hex)
                  .Text("reason", std::string(kMaxTextBytes, 'x'))
                  .PageSize(0)
                  .BasisPoints(kMaxBasisPoints)
                  .OsVersion("os", "")
                  .status(),
              IsOk());
  EXPECT_EQ(channel, kDefaultChannel);
  EXPECT_EQ(model, "m");
  EXPECT_EQ(version.ToString(), "models/m/versions/1.0");
  EXPECT_EQ(hex, std::string(64, 'a'));
}

TEST(RequestCheckTest, TheFirstFailureIsTheAnswer) {
  std::string channel = "untouched";
  absl::Status status =
      RequestCheck().Id("tier", "").TierChannel("ok", "also-ok", &channel).BasisPoints(-1).status();
  ExpectRefused(status, "tier", "EMPTY_ID");
  EXPECT_EQ(channel, "untouched");
}

TEST(RequestCheckTest, EachCheckHasItsReason) {
  ExpectRefused(RequestCheck().Text("reason", std::string(kMaxTextBytes + 1, 'x')).status(),
                "reason", "TEXT_TOO_LONG");
  ExpectRefused(RequestCheck().PageSize(-1).status(), "page_size", "INVALID_PAGE_SIZE");
  ExpectRefused(RequestCheck().BasisPoints(kMaxBasisPoints + 1).status(), "basis_points",
                "INVALID_BASIS_POINTS");
  ExpectRefused(RequestCheck().OsVersion("device.os_version", "14..1").status(),
                "device.os_version", "INVALID_OS_VERSION");
  ExpectRefused(RequestCheck().NotNegative("offset", -1, "INVALID_OFFSET").status(), "offset",
                "INVALID_OFFSET");
  ExpectRefused(RequestCheck().Range("n", 5, 1, 4, "TOO_MANY", " things").status(), "n",
                "TOO_MANY");
  ExpectRefused(RequestCheck().Platform("platform", v1::PLATFORM_UNSPECIFIED).status(), "platform",
                "MISSING_PLATFORM");
  ExpectRefused(RequestCheck().ArtifactArch("arch", 99).status(), "arch", "MISSING_ARCH");
  EXPECT_THAT(RequestCheck().ArtifactArch("arch", v1::ARCH_ANY).status(), IsOk());
  ExpectRefused(RequestCheck().DeviceArch("arch", v1::ARCH_ANY).status(), "arch", "INVALID_ARCH");
  ExpectRefused(RequestCheck().Format("format", v1::FORMAT_UNSPECIFIED).status(), "format",
                "MISSING_FORMAT");
  ExpectRefused(RequestCheck().Digest("digest", "md5:x").status(), "digest", "INVALID_DIGEST");
  ExpectRefused(RequestCheck().That(false, "x", "SOME_RULE", "x breaks a rule").status(), "x",
                "SOME_RULE");
}

TEST(RequestCheckTest, Accelerators) {
  google::protobuf::RepeatedField<int> accelerators;
  accelerators.Add(v1::ACCELERATOR_METAL);
  accelerators.Add(v1::ACCELERATOR_UNSPECIFIED);
  EXPECT_THAT(RequestCheck().Accelerators("a", accelerators, /*allow_unspecified=*/true).status(),
              IsOk());
  ExpectRefused(
      RequestCheck().Accelerators("a", accelerators, /*allow_unspecified=*/false).status(), "a",
      "INVALID_ACCELERATOR");
  accelerators.Add(99);
  ExpectRefused(RequestCheck().Accelerators("a", accelerators, /*allow_unspecified=*/true).status(),
                "a", "INVALID_ACCELERATOR");
}

TEST(RequestCheckTest, DeviceIds) {
  google::protobuf::RepeatedPtrField<std::string> ids;
  ExpectRefused(RequestCheck().DeviceIds(ids).status(), "device_ids", "INVALID_DEVICE_IDS");
  *ids.Add() = "mac-1";
  EXPECT_THAT(RequestCheck().DeviceIds(ids).status(), IsOk());
  *ids.Add() = std::string(kMaxDeviceIdBytes + 1, 'd');
  ExpectRefused(RequestCheck().DeviceIds(ids).status(), "device_ids[1]", "INVALID_DEVICE_ID");
  ids.Clear();
  for (int i = 0; i <= kMaxDeviceIdsPerCall; ++i) *ids.Add() = "d";
  ExpectRefused(RequestCheck().DeviceIds(ids).status(), "device_ids", "INVALID_DEVICE_IDS");
}

}  // namespace
}  // namespace modeldist::services
