// Tests of enums.h: the names of platforms, archs, formats and accelerators as typed and as
// printed.
#include "client/modeldistctl/enums.h"

#include <vector>

#include "client/modeldistctl/errors.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/client/modeldistctl/ctl_fixture.h"
#include "tests/testing/test_util.h"

namespace modeldist::ctl {
namespace {

using ::modeldist::testing::IsOk;
using ::modeldist::testing::StatusIs;
using ::testing::AllOf;
using ::testing::HasSubstr;

TEST(EnumsTest, AcceptsShortAndProtoNamesInAnyCase) {
  EXPECT_EQ(*ParsePlatform("platform", "macos"), v1::PLATFORM_MACOS);
  EXPECT_EQ(*ParsePlatform("platform", "IOS"), v1::PLATFORM_IOS);
  EXPECT_EQ(*ParsePlatform("platform", "PLATFORM_ANDROID"), v1::PLATFORM_ANDROID);
  EXPECT_EQ(*ParseArch("arch", "x86_64"), v1::ARCH_X86_64);
  EXPECT_EQ(*ParseArch("arch", "X86-64"), v1::ARCH_X86_64);
  EXPECT_EQ(*ParseArch("arch", "ARCH_ARM64"), v1::ARCH_ARM64);
  EXPECT_EQ(*ParseArch("arch", "any"), v1::ARCH_ANY);
  EXPECT_EQ(*ParseFormat("format", "coreml-zip"), v1::FORMAT_COREML_ZIP);
  EXPECT_EQ(*ParseFormat("format", "COREML_ZIP"), v1::FORMAT_COREML_ZIP);
  EXPECT_EQ(*ParseFormat("format", "FORMAT_GGUF"), v1::FORMAT_GGUF);
  EXPECT_EQ(*ParseFormat("format", "tflite"), v1::FORMAT_TFLITE);
}

TEST(EnumsTest, RejectsUnknownAndUnspecifiedAsUsageErrors) {
  auto bad = ParsePlatform("platform", "beos");
  EXPECT_THAT(bad, StatusIs(absl::StatusCode::kInvalidArgument,
                            AllOf(HasSubstr("--platform"), HasSubstr("beos"),
                                  HasSubstr("macos, ios, linux, windows, android"))));
  EXPECT_EQ(ExitCodeFor(bad.status()), kExitUsage);
  EXPECT_FALSE(ParsePlatform("platform", "PLATFORM_UNSPECIFIED").ok());
  EXPECT_FALSE(ParseArch("arch", "").ok());
  EXPECT_FALSE(ParseFormat("format", "zip").ok());
}

TEST(EnumsTest, NamesRoundTrip) {
  for (v1::Format f : {v1::FORMAT_COREML_ZIP, v1::FORMAT_GGUF, v1::FORMAT_SAFETENSORS,
                       v1::FORMAT_ONNX, v1::FORMAT_TFLITE}) {
    EXPECT_EQ(*ParseFormat("format", FormatName(f)), f);
  }
  EXPECT_EQ(PlatformName(v1::PLATFORM_MACOS), "macos");
  EXPECT_EQ(ArchName(v1::ARCH_X86_64), "x86_64");
  EXPECT_EQ(FormatName(v1::FORMAT_UNSPECIFIED), "unspecified");
  EXPECT_EQ(StateName(v1::Version::PUBLISHED), "PUBLISHED");
}

TEST(EnumsTest, AcceleratorListsAreDeduplicatedAndStrict) {
  auto list = ParseAccelerators("requires", "ane,METAL, cuda,ACCELERATOR_VULKAN,ane");
  ASSERT_THAT(list, IsOk());
  EXPECT_EQ(*list, (std::vector<v1::Accelerator>{v1::ACCELERATOR_ANE, v1::ACCELERATOR_METAL,
                                                 v1::ACCELERATOR_CUDA, v1::ACCELERATOR_VULKAN}));
  EXPECT_THAT(ParseAccelerators("requires", "ane,tpu"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr("--requires"), HasSubstr("\"tpu\""), HasSubstr("metal"))));
  EXPECT_THAT(ParseAccelerators("requires", "ane,"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("empty item")));
  EXPECT_EQ(AcceleratorName(v1::ACCELERATOR_METAL), "metal");
  EXPECT_EQ(RolloutStateName(v1::Rollout::PAUSED), "PAUSED");
}

}  // namespace
}  // namespace modeldist::ctl
