// End-to-end test of `modeldistctl import-env`: the seed's six variables pointing at valid model
// files served by a real nginx on loopback, the real modeldist-server, and the modeldistctl
// binary run as an operator would. Success publishes both artifacts under the tier devices ask
// for; every way the variables can be wrong (size, SHA-256, a broken model, a partial triple)
// stops before the first rpc, so the server holds no model afterwards.
#include <map>
#include <string>

#include "absl/strings/str_cat.h"
#include "common/digest.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/client/modeldistctl/ctl_e2e_fixture.h"
#include "tests/testing/model_files.h"
#include "tests/testing/nginx_server.h"

namespace modeldist::ctl {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

class CtlE2eImportEnvTest : public CtlE2eTest {
 protected:
  void SetUp() override {
    CtlE2eTest::SetUp();
    if (HasFatalFailure()) return;
    nginx_ = std::make_unique<modeldist::testing::NginxServer>(dir_.Join("nginx"), false);
    ASSERT_GT(nginx_->port(), 0) << nginx_->ErrorLog();
    zip_ = modeldist::testing::MakeCoreMlZip(modeldist::testing::CoreMlZipSpec());
    gguf_ = modeldist::testing::MakeGguf(modeldist::testing::GgufSpec());
    WriteFile(nginx_->www() + "/llama-coreml.zip", zip_);
    WriteFile(nginx_->www() + "/llama-q4_0.gguf", gguf_);
  }

  // The seed's secrets for the two files nginx serves.
  std::map<std::string, std::string> SeedEnv() const {
    return {{"LOCAL_LLM_MACOS_COREML_ZIP_URL", nginx_->Url("/llama-coreml.zip")},
            {"LOCAL_LLM_MACOS_COREML_ZIP_SHA256", Sha256::HexOf(zip_)},
            {"LOCAL_LLM_MACOS_COREML_ZIP_SIZE_BYTES", absl::StrCat(zip_.size())},
            {"LOCAL_LLM_MACOS_INTEL_GGUF_URL", nginx_->Url("/llama-q4_0.gguf")},
            {"LOCAL_LLM_MACOS_INTEL_GGUF_SHA256", Sha256::HexOf(gguf_)},
            {"LOCAL_LLM_MACOS_INTEL_GGUF_SIZE_BYTES", absl::StrCat(gguf_.size())}};
  }

  CtlRun ImportEnv(std::map<std::string, std::string> env, std::vector<std::string> extra = {}) {
    std::vector<std::string> args = {"import-env", "--model",   "llama-3.1-8b-instruct",
                                     "--version",  "2026.11.0", "--temp-dir",
                                     dir_.path()};
    args.insert(args.end(), extra.begin(), extra.end());
    return Ctl(args, std::move(env));
  }

  // Nothing was created: the server has no model at all.
  void ExpectNoModel() {
    absl::StatusOr<v1::ListModelsResponse> models = Client()->ListModels(v1::ListModelsRequest());
    ASSERT_TRUE(models.ok()) << models.status();
    EXPECT_EQ(models->models_size(), 0) << models->DebugString();
  }

  std::unique_ptr<modeldist::testing::NginxServer> nginx_;
  std::string zip_;
  std::string gguf_;
};

TEST_F(CtlE2eImportEnvTest, PublishesBothObjectsAndBindsTheSeedsTier) {
  CtlRun run = ImportEnv(SeedEnv());
  ASSERT_EQ(run.code, 0) << run.err;
  EXPECT_THAT(run.out, HasSubstr("published models/llama-3.1-8b-instruct/versions/2026.11.0 "
                                 "with 2 artifacts (new model); tier llama8b/stable bound"));
  const std::string zip_digest = FormatDigest(Sha256::HexOf(zip_));
  const std::string gguf_digest = FormatDigest(Sha256::HexOf(gguf_));
  EXPECT_THAT(run.out, HasSubstr(absl::StrCat("macos/arm64/coreml-zip digest ", zip_digest)));
  EXPECT_THAT(run.out, HasSubstr(absl::StrCat("macos/x86_64/gguf digest ", gguf_digest)));
  EXPECT_THAT(run.err, HasSubstr("a valid gguf file"));
  ExpectDeviceGets("llama8b", v1::PLATFORM_MACOS, v1::ARCH_ARM64, zip_digest, zip_);
  ExpectDeviceGets("llama8b", v1::PLATFORM_MACOS, v1::ARCH_X86_64, gguf_digest, gguf_);

  // The temp files are gone, and a rerun changes nothing.
  CtlRun again = ImportEnv(SeedEnv());
  ASSERT_EQ(again.code, 0) << again.err;
  EXPECT_THAT(again.out, HasSubstr("already published"));
  EXPECT_THAT(again.out, HasSubstr("already bound"));
}

TEST_F(CtlE2eImportEnvTest, ASizeMismatchShowsBothSizesAndCreatesNothing) {
  std::map<std::string, std::string> env = SeedEnv();
  env["LOCAL_LLM_MACOS_INTEL_GGUF_SIZE_BYTES"] = absl::StrCat(gguf_.size() + 1);
  CtlRun run = ImportEnv(env);
  EXPECT_EQ(run.code, 4) << run.err;  // found a problem
  EXPECT_THAT(run.err, HasSubstr(absl::StrCat("LOCAL_LLM_MACOS_INTEL_GGUF_SIZE_BYTES says ",
                                              gguf_.size() + 1, " bytes")));
  EXPECT_THAT(run.err, HasSubstr(absl::StrCat("is ", gguf_.size(), " bytes")));
  ExpectNoModel();

  // Declared smaller than it is: the HEAD says so before a byte is fetched.
  env = SeedEnv();
  env["LOCAL_LLM_MACOS_COREML_ZIP_SIZE_BYTES"] = absl::StrCat(zip_.size() - 10);
  run = ImportEnv(env);
  EXPECT_EQ(run.code, 4) << run.err;
  EXPECT_THAT(run.err, HasSubstr(absl::StrCat("says ", zip_.size() - 10, " bytes")));
  EXPECT_THAT(run.err, HasSubstr(absl::StrCat("is ", zip_.size(), " bytes")));
  ExpectNoModel();
}

TEST_F(CtlE2eImportEnvTest, AShaMismatchShowsBothDigestsAndCreatesNothing) {
  std::map<std::string, std::string> env = SeedEnv();
  const std::string wrong(64, 'e');
  env["LOCAL_LLM_MACOS_INTEL_GGUF_SHA256"] = wrong;
  CtlRun run = ImportEnv(env);
  EXPECT_EQ(run.code, 4) << run.err;
  EXPECT_THAT(run.err, HasSubstr(absl::StrCat("LOCAL_LLM_MACOS_INTEL_GGUF_SHA256 says ", wrong)));
  EXPECT_THAT(run.err, HasSubstr(absl::StrCat("hash to ", Sha256::HexOf(gguf_))));
  ExpectNoModel();
}

TEST_F(CtlE2eImportEnvTest, ABrokenModelFileIsRefusedBeforeAnyRpc) {
  // The seed's "model doesn't load": a GGUF without its tokenizer, whose secrets are right
  // (size and digest match), so only the model checks can tell.
  modeldist::testing::GgufSpec spec;
  spec.omit_tokenizer_model = true;
  const std::string broken = modeldist::testing::MakeGguf(spec);
  WriteFile(nginx_->www() + "/broken.gguf", broken);
  std::map<std::string, std::string> env = SeedEnv();
  env["LOCAL_LLM_MACOS_INTEL_GGUF_URL"] = nginx_->Url("/broken.gguf");
  env["LOCAL_LLM_MACOS_INTEL_GGUF_SHA256"] = Sha256::HexOf(broken);
  env["LOCAL_LLM_MACOS_INTEL_GGUF_SIZE_BYTES"] = absl::StrCat(broken.size());
  CtlRun run = ImportEnv(env);
  EXPECT_EQ(run.code, 4) << run.err;
  EXPECT_THAT(run.err, HasSubstr("(LOCAL_LLM_MACOS_INTEL_GGUF) is not a valid gguf file"));
  EXPECT_THAT(run.err, HasSubstr("tokenizer"));
  ExpectNoModel();
}

TEST_F(CtlE2eImportEnvTest, APartialTripleIsAUsageErrorNamingTheMissingVariable) {
  std::map<std::string, std::string> env = SeedEnv();
  env.erase("LOCAL_LLM_MACOS_INTEL_GGUF_SHA256");
  CtlRun run = ImportEnv(env);
  EXPECT_EQ(run.code, 1) << run.err;
  EXPECT_THAT(run.err, HasSubstr("LOCAL_LLM_MACOS_INTEL_GGUF_SHA256 is not set"));
  ExpectNoModel();

  CtlRun none = ImportEnv({});
  EXPECT_EQ(none.code, 1) << none.err;
  EXPECT_THAT(none.err, HasSubstr("no seed object in the environment"));
}

TEST_F(CtlE2eImportEnvTest, DryRunPrintsThePlanAndCreatesNothing) {
  CtlRun run = ImportEnv(SeedEnv(), {"--dry-run"});
  ASSERT_EQ(run.code, 0) << run.err;
  EXPECT_THAT(run.out, HasSubstr("model models/llama-3.1-8b-instruct version 2026.11.0 tier "
                                 "llama8b/stable"));
  EXPECT_THAT(run.out,
              HasSubstr(absl::StrCat("macos/arm64/coreml-zip from LOCAL_LLM_MACOS_COREML_ZIP_URL ",
                                     nginx_->Url("/llama-coreml.zip"), " size ", zip_.size())));
  EXPECT_THAT(run.out, HasSubstr(FormatDigest(Sha256::HexOf(gguf_))));
  EXPECT_THAT(run.out, HasSubstr(absl::StrCat("HEAD macos/x86_64/gguf: reachable; ", gguf_.size(),
                                              " bytes, as declared")));
  EXPECT_THAT(run.out, HasSubstr("nothing was fetched or created"));
  ExpectNoModel();

  // A size the HEAD contradicts is reported, still without creating anything.
  std::map<std::string, std::string> env = SeedEnv();
  env["LOCAL_LLM_MACOS_COREML_ZIP_SIZE_BYTES"] = "5";
  CtlRun wrong = ImportEnv(env, {"--dry-run"});
  EXPECT_EQ(wrong.code, 4) << wrong.err;
  EXPECT_THAT(wrong.out, HasSubstr(absl::StrCat("it is ", zip_.size(), " bytes, not the 5")));
  ExpectNoModel();
}

TEST_F(CtlE2eImportEnvTest, AnEnvFileWithQuotesCommentsAndExportWinsOverTheEnvironment) {
  const std::map<std::string, std::string> seed = SeedEnv();
  const std::string env_file = dir_.Join("seed.env");
  WriteFile(env_file, absl::StrCat("# exported from `supabase secrets list`\n\n",
                                   "export LOCAL_LLM_MACOS_COREML_ZIP_URL=\"",
                                   seed.at("LOCAL_LLM_MACOS_COREML_ZIP_URL"), "\"  # the zip\n",
                                   "LOCAL_LLM_MACOS_COREML_ZIP_SHA256='",
                                   seed.at("LOCAL_LLM_MACOS_COREML_ZIP_SHA256"), "'\n",
                                   "LOCAL_LLM_MACOS_COREML_ZIP_SIZE_BYTES = ",
                                   seed.at("LOCAL_LLM_MACOS_COREML_ZIP_SIZE_BYTES"), " # bytes\n"));
  // The environment's (wrong) GGUF triple is not read when --env-file is given.
  std::map<std::string, std::string> env = seed;
  env["LOCAL_LLM_MACOS_COREML_ZIP_SHA256"] = std::string(64, 'f');
  env["LOCAL_LLM_MACOS_INTEL_GGUF_SIZE_BYTES"] = "1";
  CtlRun run = ImportEnv(env, {"--env-file", env_file});
  ASSERT_EQ(run.code, 0) << run.err;
  EXPECT_THAT(run.out, HasSubstr("with 1 artifact (new model)"));
  const std::string zip_digest = FormatDigest(Sha256::HexOf(zip_));
  ExpectDeviceGets("llama8b", v1::PLATFORM_MACOS, v1::ARCH_ARM64, zip_digest, zip_);
  EXPECT_THAT(run.out, Not(HasSubstr("gguf")));

  WriteFile(env_file, "LOCAL_LLM_MACOS_COREML_ZIP_URL=\"unclosed\n");
  CtlRun bad = ImportEnv(env, {"--env-file", env_file});
  EXPECT_EQ(bad.code, 1) << bad.err;
  EXPECT_THAT(bad.err, HasSubstr(absl::StrCat(env_file, ":1:")));
}

}  // namespace
}  // namespace modeldist::ctl
