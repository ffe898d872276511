// Tests of publish's arguments (publish.h, publish_command.h): PLATFORM/ARCH/FORMAT=FILE and
// the flag form, constraints, help, and the usage and local errors they exit with.
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "client/modeldistctl/errors.h"
#include "client/modeldistctl/publish.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/client/modeldistctl/ctl_fixture.h"
#include "tests/testing/test_util.h"

namespace modeldist::ctl {
namespace {

using ::modeldist::testing::IsOk;
using ::modeldist::testing::ScratchDir;
using ::modeldist::testing::StatusIs;
using ::testing::AllOf;
using ::testing::HasSubstr;
using ::testing::Not;

TEST(RunCtlTest, PublishHelpShowsBothFormsAndTheTwoArtifactExample) {
  constexpr char kExample[] =
      "macos/arm64/coreml-zip=llama-3.1-8b-instruct-coreml.zip \\\n"
      "      macos/x86_64/gguf=llama-3.1-8b-instruct-q4_0.gguf";
  CtlRun main = RunInProcess({"--help"});
  EXPECT_THAT(main.out, HasSubstr(kExample));
  CtlRun publish = RunInProcess({"publish", "--help"});
  EXPECT_THAT(publish.out, HasSubstr(kExample));
  EXPECT_THAT(publish.out, HasSubstr("PLATFORM/ARCH/FORMAT=FILE..."));
  EXPECT_THAT(publish.out, HasSubstr("--platform P --arch A"));
}

TEST(RunCtlTest, PublishUsageErrorsOfThePositionalFormExitOne) {
  const std::vector<std::string> head = {"publish", "--model", "m", "--version",
                                         "1",       "--tier",  "t"};
  auto run = [&head](std::vector<std::string> rest) {
    std::vector<std::string> args = head;
    args.insert(args.end(), rest.begin(), rest.end());
    return RunInProcess(args, {{"MODELDIST_ADMIN_TOKEN", kToken}});
  };
  CtlRun mixed = run({"--platform", "macos", "--arch", "arm64", "--format", "coreml-zip",
                      "llama.zip", "macos/x86_64/gguf=llama.gguf"});
  EXPECT_EQ(mixed.code, kExitUsage);
  EXPECT_THAT(mixed.err, HasSubstr("cannot be mixed with --platform"));
  EXPECT_THAT(mixed.err, HasSubstr("publish --help"));
  CtlRun twice = run({"macos/arm64/gguf=a.gguf", "macos/arm64/gguf=b.gguf"});
  EXPECT_EQ(twice.code, kExitUsage);
  EXPECT_THAT(twice.err, HasSubstr("given twice"));
  CtlRun no_eq = run({"macos/arm64/gguf"});
  EXPECT_EQ(no_eq.code, kExitUsage);
  EXPECT_THAT(no_eq.err, HasSubstr("missing '='"));
  CtlRun bad = run({"macos/arm64/coreml-zip=a.zip", "beos/x86_64/gguf=b.gguf"});
  EXPECT_EQ(bad.code, kExitUsage);
  EXPECT_THAT(bad.err, HasSubstr("unknown platform \"beos\""));
  EXPECT_EQ(run({}).code, kExitUsage);
}

TEST(RunCtlTest, MissingSecondFileExitsThree) {
  ScratchDir dir;
  WriteFile(dir.Join("llama.zip"), "zip bytes");
  CtlRun run = RunInProcess({"publish", "--model", "m", "--version", "1", "--tier", "t",
                             absl::StrCat("macos/arm64/coreml-zip=", dir.Join("llama.zip")),
                             absl::StrCat("macos/x86_64/gguf=", dir.Join("absent.gguf"))},
                            {{"MODELDIST_ADMIN_TOKEN", kToken}});
  EXPECT_EQ(run.code, kExitLocal);
  EXPECT_THAT(run.err, HasSubstr("absent.gguf"));
}

TEST(RunCtlTest, MissingFileExitsThree) {
  ScratchDir dir;
  CtlRun run =
      RunInProcess({"publish", "--model", "m", "--version", "1", "--platform", "macos", "--arch",
                    "arm64", "--format", "COREML_ZIP", "--tier", "t", dir.Join("absent.zip")},
                   {{"MODELDIST_ADMIN_TOKEN", kToken}});
  EXPECT_EQ(run.code, kExitLocal);
  EXPECT_THAT(run.err, HasSubstr("absent.zip"));
}

TEST(PublishArgsTest, ConstraintFlagsFillTheSpec) {
  PublishSpec spec;
  ASSERT_THAT(ParsePublishConstraints("14.4.1", "8GiB", "ane,metal", "3G", &spec), IsOk());
  EXPECT_EQ(spec.constraints.min_os_version(), "14.4.1");
  EXPECT_EQ(spec.constraints.min_ram_bytes(), int64_t{8} << 30);
  ASSERT_EQ(spec.constraints.required_accelerators_size(), 2);
  EXPECT_EQ(spec.constraints.required_accelerators(1), v1::ACCELERATOR_METAL);
  EXPECT_EQ(spec.unpacked_size_bytes, int64_t{3} << 30);

  ASSERT_THAT(ParsePublishConstraints("", "", "", "", &spec), IsOk());
  EXPECT_EQ(spec.constraints.ByteSizeLong(), 0u);
  EXPECT_EQ(spec.unpacked_size_bytes, 0);

  for (const char* os : {"14.", ".14", "14..1", "fourteen", "14.0-beta"}) {
    EXPECT_THAT(ParsePublishConstraints(os, "", "", "", &spec),
                StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("--min-os")))
        << os;
  }
  for (const char* size : {"8GB", "0", "-1", "lots"}) {
    absl::Status status = ParsePublishConstraints("", size, "", "", &spec);
    EXPECT_THAT(status, StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("--min-ram")))
        << size;
    EXPECT_EQ(ExitCodeFor(status), kExitUsage);
  }
  EXPECT_THAT(ParsePublishConstraints("", "", "", "0", &spec),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("--unpacked-size")));
  EXPECT_THAT(ParsePublishConstraints("", "", "gpu", "", &spec),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("--requires")));
}

TEST(PublishArgsTest, ParsesPlatformArchFormatEqualsFile) {
  absl::StatusOr<PublishArtifact> a = ParseArtifactArg("macos/arm64/coreml-zip=llama.zip");
  ASSERT_THAT(a, IsOk());
  EXPECT_EQ(a->platform, v1::PLATFORM_MACOS);
  EXPECT_EQ(a->arch, v1::ARCH_ARM64);
  EXPECT_EQ(a->format, v1::FORMAT_COREML_ZIP);
  EXPECT_EQ(a->file, "llama.zip");
  // The same names as the flags, and a file name that contains '=' and '/'.
  absl::StatusOr<PublishArtifact> b = ParseArtifactArg("MACOS/X86-64/FORMAT_GGUF=out/q=4.gguf");
  ASSERT_THAT(b, IsOk());
  EXPECT_EQ(b->arch, v1::ARCH_X86_64);
  EXPECT_EQ(b->format, v1::FORMAT_GGUF);
  EXPECT_EQ(b->file, "out/q=4.gguf");
  EXPECT_EQ(TargetName(b->platform, b->arch, b->format), "macos/x86_64/gguf");
}

TEST(PublishArgsTest, RejectsBadPartsQuotingTheArgument) {
  auto platform = ParseArtifactArg("beos/arm64/gguf=m.gguf");
  EXPECT_THAT(platform, StatusIs(absl::StatusCode::kInvalidArgument,
                                 AllOf(HasSubstr("\"beos/arm64/gguf=m.gguf\""),
                                       HasSubstr("unknown platform \"beos\""),
                                       HasSubstr("macos, ios"), Not(HasSubstr("--platform")))));
  EXPECT_EQ(ExitCodeFor(platform.status()), kExitUsage);
  EXPECT_THAT(ParseArtifactArg("macos/sparc/gguf=m"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("unknown arch \"sparc\"")));
  EXPECT_THAT(ParseArtifactArg("macos/arm64/zip=m"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("unknown format \"zip\"")));
  EXPECT_THAT(ParseArtifactArg("macos/arm64/gguf"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr("missing '='"), HasSubstr("PLATFORM/ARCH/FORMAT=FILE"))));
  EXPECT_THAT(ParseArtifactArg("llama.gguf"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("missing '='")));
  EXPECT_THAT(
      ParseArtifactArg("macos/gguf=m.gguf"),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("PLATFORM/ARCH/FORMAT before")));
  EXPECT_THAT(ParseArtifactArg("macos/arm64/gguf="),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("no FILE")));
}

TEST(PublishArgsTest, SeveralTargetsInOrder) {
  auto artifacts = ParsePublishArtifacts(
      "", "", "", {"macos/arm64/coreml-zip=llama.zip", "macos/x86_64/gguf=llama.gguf"});
  ASSERT_THAT(artifacts, IsOk());
  ASSERT_EQ(artifacts->size(), 2u);
  EXPECT_EQ((*artifacts)[0].format, v1::FORMAT_COREML_ZIP);
  EXPECT_EQ((*artifacts)[0].file, "llama.zip");
  EXPECT_EQ((*artifacts)[1].arch, v1::ARCH_X86_64);
  EXPECT_EQ((*artifacts)[1].file, "llama.gguf");
}

TEST(PublishArgsTest, TheSameTargetTwiceIsAUsageError) {
  auto twice =
      ParsePublishArtifacts("", "", "", {"macos/arm64/gguf=a.gguf", "MACOS/ARM64/GGUF=b.gguf"});
  EXPECT_THAT(twice, StatusIs(absl::StatusCode::kInvalidArgument,
                              AllOf(HasSubstr("macos/arm64/gguf is given twice"),
                                    HasSubstr("a.gguf"), HasSubstr("b.gguf"))));
  EXPECT_EQ(ExitCodeFor(twice.status()), kExitUsage);
  // Other arch, other format: both fine.
  EXPECT_THAT(
      ParsePublishArtifacts(
          "", "", "", {"macos/arm64/gguf=a", "macos/x86_64/gguf=b", "macos/arm64/coreml-zip=c"}),
      IsOk());

  PublishSpec spec;
  spec.model_id = "m";
  spec.version_id = "1";
  spec.tier = "t";
  spec.artifacts = {{v1::PLATFORM_IOS, v1::ARCH_ARM64, v1::FORMAT_ONNX, "a"},
                    {v1::PLATFORM_IOS, v1::ARCH_ARM64, v1::FORMAT_ONNX, "b"}};
  EXPECT_THAT(ValidatePublishSpec(spec), StatusIs(absl::StatusCode::kInvalidArgument,
                                                  HasSubstr("ios/arm64/onnx is given twice")));
}

TEST(PublishArgsTest, FlagFormTakesExactlyOneFile) {
  auto one = ParsePublishArtifacts("macos", "arm64", "coreml-zip", {"out/a=b.zip"});
  ASSERT_THAT(one, IsOk());
  ASSERT_EQ(one->size(), 1u);
  EXPECT_EQ((*one)[0].platform, v1::PLATFORM_MACOS);
  EXPECT_EQ((*one)[0].file, "out/a=b.zip");  // Not a PLATFORM/ARCH/FORMAT=FILE argument.
  EXPECT_THAT(
      ParsePublishArtifacts("macos", "arm64", "gguf", {"a", "b"}),
      StatusIs(absl::StatusCode::kInvalidArgument,
               AllOf(HasSubstr("exactly one FILE"), HasSubstr("PLATFORM/ARCH/FORMAT=FILE"))));
  EXPECT_THAT(ParsePublishArtifacts("macos", "arm64", "gguf", {}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("exactly one FILE")));
  EXPECT_THAT(ParsePublishArtifacts("macos", "", "gguf", {"a"}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("--arch is required")));
  EXPECT_THAT(ParsePublishArtifacts("beos", "arm64", "gguf", {"a"}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("--platform: unknown")));
}

TEST(PublishArgsTest, MixingTheFormsIsAUsageErrorThatSaysSo) {
  for (const auto& [platform, args] : std::vector<std::pair<std::string, std::vector<std::string>>>{
           {"macos", {"macos/x86_64/gguf=llama.gguf"}},
           {"macos", {"llama.zip", "macos/x86_64/gguf=llama.gguf"}},
           {"", {"macos/x86_64/gguf=llama.gguf"}}}) {
    // The last case gives only --arch: still the flag form.
    auto mixed =
        ParsePublishArtifacts(platform, "arm64", platform.empty() ? "" : "coreml-zip", args);
    EXPECT_THAT(mixed, StatusIs(absl::StatusCode::kInvalidArgument,
                                AllOf(HasSubstr("cannot be mixed with --platform"),
                                      HasSubstr("macos/x86_64/gguf=llama.gguf"))))
        << platform;
    EXPECT_EQ(ExitCodeFor(mixed.status()), kExitUsage);
  }
  // Without any of the flags, a bare FILE is the error instead.
  EXPECT_THAT(ParsePublishArtifacts("", "", "", {"macos/arm64/gguf=a", "llama.gguf"}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr("\"llama.gguf\""), HasSubstr("missing '='"))));
  EXPECT_THAT(ParsePublishArtifacts("", "", "", {}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("PLATFORM/ARCH/FORMAT=FILE")));
}

}  // namespace
}  // namespace modeldist::ctl
