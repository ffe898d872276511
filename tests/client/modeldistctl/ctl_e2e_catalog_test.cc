// End-to-end tests of modeldistctl against the real modeldist-server (ctl_e2e_fixture.h): the
// catalog as a user sees it through publish, list, show, set-tier and yank, one version with
// an artifact per Mac, and a wrong token.
#include <grpcpp/grpcpp.h>

#include <fstream>
#include <string>
#include <tuple>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/digest.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "modeldist/v1/manifest.grpc.pb.h"
#include "tests/client/modeldistctl/ctl_e2e_fixture.h"
#include "tests/testing/test_util.h"

namespace modeldist::ctl {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

TEST_F(CtlE2eTest, PublishListShowSetTierYank) {
  int64_t before = ClockMicros();
  CtlRun publish = Ctl(PublishArgs("1.0"));
  int64_t after = ClockMicros();
  ASSERT_EQ(publish.code, 0) << publish.err;
  const int64_t stable_sequence = SequenceIn(publish.out);
  EXPECT_GE(stable_sequence, before);
  EXPECT_LE(stable_sequence, after);
  EXPECT_EQ(publish.out,
            absl::StrCat("published models/e2e-model/versions/1.0 digest ", digest_, " size ",
                         kFileSize, " (3.15 MB) tier llama8b/stable sequence ", stable_sequence,
                         " (sent ", kFileSize, " bytes)\n"));

  CtlRun models = Ctl({"list"});
  ASSERT_EQ(models.code, 0) << models.err;
  EXPECT_THAT(models.out, HasSubstr("models/e2e-model"));

  CtlRun versions = Ctl({"list", "e2e-model"});
  ASSERT_EQ(versions.code, 0) << versions.err;
  EXPECT_THAT(versions.out, HasSubstr("models/e2e-model/versions/1.0"));
  EXPECT_THAT(versions.out, HasSubstr("PUBLISHED"));
  EXPECT_THAT(versions.out, HasSubstr(digest_));

  CtlRun json = Ctl({"--json", "list", "models/e2e-model"});
  ASSERT_EQ(json.code, 0) << json.err;
  EXPECT_THAT(json.out, HasSubstr("\"state\":\"PUBLISHED\""));
  EXPECT_THAT(json.out, HasSubstr("\"uploaded\":true"));

  CtlRun show = Ctl({"show", "e2e-model", "1.0"});
  ASSERT_EQ(show.code, 0) << show.err;
  EXPECT_THAT(show.out, HasSubstr(absl::StrCat("digest:   ", digest_)));
  EXPECT_THAT(show.out, HasSubstr(absl::StrCat("size:     ", kFileSize, " bytes")));
  EXPECT_THAT(show.out, HasSubstr("uploaded: yes"));
  EXPECT_EQ(Ctl({"show", "models/e2e-model/versions/1.0"}).out, show.out);

  before = ClockMicros();
  CtlRun set_tier = Ctl({"set-tier", "--tier", "llama8b", "--channel", "beta", "--model",
                         "e2e-model", "--version", "1.0"});
  after = ClockMicros();
  ASSERT_EQ(set_tier.code, 0) << set_tier.err;
  const int64_t beta_sequence = SequenceIn(set_tier.out);
  EXPECT_GE(beta_sequence, before);
  EXPECT_LE(beta_sequence, after);
  EXPECT_EQ(set_tier.out,
            absl::StrCat("tier llama8b/beta -> models/e2e-model/versions/1.0 sequence ",
                         beta_sequence, "\n"));

  CtlRun tiers = Ctl({"list", "--tiers"});
  ASSERT_EQ(tiers.code, 0) << tiers.err;
  EXPECT_THAT(tiers.out, HasSubstr("llama8b  beta"));
  EXPECT_THAT(tiers.out, HasSubstr("llama8b  stable"));

  CtlRun yank = Ctl({"yank", "models/e2e-model/versions/1.0", "--reason", "bad answers"});
  ASSERT_EQ(yank.code, 0) << yank.err;
  EXPECT_EQ(yank.out, "yanked models/e2e-model/versions/1.0\n");
  EXPECT_THAT(Ctl({"show", "e2e-model", "1.0"}).out, HasSubstr("reason:     bad answers"));
  EXPECT_THAT(Ctl({"list", "--tiers"}).out, HasSubstr("(none"));

  CtlRun again = Ctl({"yank", "models/e2e-model/versions/1.0"});
  EXPECT_EQ(again.code, 2);
  EXPECT_THAT(again.err, HasSubstr("FAILED_PRECONDITION"));

  CtlRun missing = Ctl({"show", "e2e-model", "9.9"});
  EXPECT_EQ(missing.code, 2);
  EXPECT_THAT(missing.err, HasSubstr("NOT_FOUND"));

  CtlRun republish = Ctl(PublishArgs("1.0"));
  EXPECT_EQ(republish.code, 2);
  EXPECT_THAT(republish.err, HasSubstr("yanked"));
}

TEST_F(CtlE2eTest, PublishesACoreMlZipAndAGgufAsOneVersion) {
  // The macOS case: Apple Silicon gets CoreML, Intel Macs the GGUF, both in version 4.0.
  const std::string zip_contents = modeldist::testing::RandomBytes((1 << 20) + 99, 43);
  const std::string zip = dir_.Join("model-coreml.zip");
  std::ofstream(zip, std::ios::binary) << zip_contents;
  const std::string zip_digest = FormatDigest(Sha256::HexOf(zip_contents));
  const std::vector<std::string> args = {"publish",
                                         "--model",
                                         "e2e-model",
                                         "--version",
                                         "4.0",
                                         "--tier",
                                         "llama8b",
                                         absl::StrCat("macos/arm64/coreml-zip=", zip),
                                         absl::StrCat("macos/x86_64/gguf=", file_)};

  const int64_t before = ClockMicros();
  CtlRun publish = Ctl(args);
  const int64_t after = ClockMicros();
  ASSERT_EQ(publish.code, 0) << publish.err;
  const int64_t sequence = SequenceIn(publish.out);
  EXPECT_GE(sequence, before);
  EXPECT_LE(sequence, after);
  EXPECT_THAT(publish.out,
              HasSubstr(absl::StrCat("published models/e2e-model/versions/4.0 with 2 artifacts "
                                     "tier llama8b/stable sequence ",
                                     sequence, "\n")));
  EXPECT_THAT(publish.out, HasSubstr(absl::StrCat("  macos/arm64/coreml-zip digest ", zip_digest,
                                                  " size ", zip_contents.size())));
  EXPECT_THAT(publish.out,
              HasSubstr(absl::StrCat("  macos/x86_64/gguf digest ", digest_, " size ", kFileSize)));

  CtlRun show = Ctl({"show", "e2e-model", "4.0"});
  ASSERT_EQ(show.code, 0) << show.err;
  EXPECT_THAT(show.out, HasSubstr("state:      PUBLISHED"));
  EXPECT_THAT(show.out, HasSubstr("artifacts:  2\n"));
  EXPECT_THAT(show.out, HasSubstr(absl::StrCat(
                            "  - macos/arm64 coreml-zip\n    digest:   ", zip_digest, "\n")));
  EXPECT_THAT(show.out,
              HasSubstr(absl::StrCat("  - macos/x86_64 gguf\n    digest:   ", digest_, "\n")));
  EXPECT_THAT(show.out, Not(HasSubstr("uploaded: no")));
  std::string::size_type first = show.out.find("uploaded: yes");
  ASSERT_NE(first, std::string::npos);
  EXPECT_NE(show.out.find("uploaded: yes", first + 1), std::string::npos);

  CtlRun list = Ctl({"list", "e2e-model"});
  ASSERT_EQ(list.code, 0) << list.err;
  EXPECT_THAT(list.out, HasSubstr("macos/arm64   coreml-zip"));
  EXPECT_THAT(list.out, HasSubstr("macos/x86_64  gguf"));

  // What the fleet sees: each Mac gets the file for its arch from the one tier binding.
  auto manifests = v1::ManifestService::NewStub(
      grpc::CreateChannel(server_->address(), grpc::InsecureChannelCredentials()));
  for (const auto& [arch, format, digest] :
       {std::tuple(v1::ARCH_ARM64, v1::FORMAT_COREML_ZIP, zip_digest),
        std::tuple(v1::ARCH_X86_64, v1::FORMAT_GGUF, digest_)}) {
    v1::GetManifestRequest request;
    request.set_tier("llama8b");
    request.set_platform(v1::PLATFORM_MACOS);
    request.set_arch(arch);
    grpc::ClientContext context;
    v1::SignedManifest signed_manifest;
    grpc::Status status = manifests->GetManifest(&context, request, &signed_manifest);
    ASSERT_TRUE(status.ok()) << status.error_message();
    v1::Manifest manifest;
    ASSERT_TRUE(manifest.ParseFromString(signed_manifest.manifest()));
    EXPECT_EQ(manifest.version(), "models/e2e-model/versions/4.0");
    EXPECT_EQ(manifest.artifact().format(), format);
    EXPECT_EQ(manifest.artifact().digest(), digest);
  }

  // Running it again changes nothing, the tier's sequence included (the tier is bound to it
  // already); a different set of files is refused.
  CtlRun again = Ctl(args);
  ASSERT_EQ(again.code, 0) << again.err;
  EXPECT_THAT(again.out, HasSubstr(absl::StrCat("already published models/e2e-model/versions/4.0 "
                                                "with 2 artifacts; tier llama8b/stable already "
                                                "bound to it (sequence ",
                                                sequence, ")")));
  CtlRun fewer = Ctl({"publish", "--model", "e2e-model", "--version", "4.0", "--tier", "llama8b",
                      absl::StrCat("macos/x86_64/gguf=", file_)});
  EXPECT_EQ(fewer.code, 2);
  EXPECT_THAT(fewer.err, HasSubstr("ALREADY_EXISTS"));
  EXPECT_THAT(fewer.err, HasSubstr("it also declares macos/arm64/coreml-zip"));

  CtlRun mixed = Ctl({"publish", "--model", "e2e-model", "--version", "5.0", "--tier", "llama8b",
                      "--platform", "macos", "--arch", "arm64", "--format", "coreml-zip", zip,
                      absl::StrCat("macos/x86_64/gguf=", file_)});
  EXPECT_EQ(mixed.code, 1);
  EXPECT_THAT(mixed.err, HasSubstr("cannot be mixed"));
}

TEST_F(CtlE2eTest, WrongTokenExitsTwoWithUnauthenticated) {
  CtlRun run = Ctl({"list"}, {{"MODELDIST_ADMIN_TOKEN", "wrong-token-but-long-enough"}},
                   /*with_token_file=*/false);
  EXPECT_EQ(run.code, 2);
  EXPECT_THAT(run.err, HasSubstr("UNAUTHENTICATED"));
  EXPECT_THAT(run.err, Not(HasSubstr("wrong-token")));

  CtlRun from_env = Ctl({"list"}, {{"MODELDIST_ADMIN_TOKEN", kToken}}, false);
  EXPECT_EQ(from_env.code, 0) << from_env.err;
}

}  // namespace
}  // namespace modeldist::ctl
