// The operator's day of issue 13, end to end with the real binaries, as the closing note shows
// it: the seed's objects served by nginx are imported into a fresh server with its model checks
// on (`import-env`), inspected, exported as a bundle, and installed from it on a new device dir,
// which ends with the GGUF verified and active.
#include <sys/stat.h>
#include <sys/wait.h>

#include <chrono>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/digest.h"
#include "common/file_util.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/client/modeldistctl/ctl_e2e_fixture.h"
#include "tests/testing/child_process.h"
#include "tests/testing/model_files.h"
#include "tests/testing/nginx_server.h"

namespace modeldist::ctl {
namespace {

using ::testing::HasSubstr;

class CtlE2eOperatorDayTest : public CtlE2eTest {
 protected:
  void SetUp() override {
    CtlE2eTest::SetUp();
    if (HasFatalFailure()) return;
    // A fresh data dir and the server as deployed: model checks on.
    server_.reset();
    ASSERT_EQ(::mkdir(dir_.Join("fresh").c_str(), 0755), 0);
    server_ = std::make_unique<modeldist::testing::ServerProcess>(
        ServerBinary(), dir_.Join("fresh"), dir_.Join("token"), dir_.path());
    server_->EnableModelChecks();
    ASSERT_TRUE(server_->Start());

    nginx_ = std::make_unique<modeldist::testing::NginxServer>(dir_.Join("nginx"), false);
    ASSERT_GT(nginx_->port(), 0) << nginx_->ErrorLog();
    zip_ = modeldist::testing::MakeCoreMlZip(modeldist::testing::CoreMlZipSpec());
    gguf_ = modeldist::testing::MakeGguf(modeldist::testing::GgufSpec());
    WriteFile(nginx_->www() + "/llama-3.1-8b-instruct-coreml.zip", zip_);
    WriteFile(nginx_->www() + "/llama-3.1-8b-instruct-q4_k_m.gguf", gguf_);
  }

  // The seed's .env, as its setup guide has the operator write it.
  std::string SeedEnvFile() {
    const std::string path = dir_.Join("seed.env");
    WriteFile(path, absl::StrCat("# from the seed's manual setup\n"
                                 "LOCAL_LLM_MACOS_COREML_ZIP_URL=",
                                 nginx_->Url("/llama-3.1-8b-instruct-coreml.zip"),
                                 "\nLOCAL_LLM_MACOS_COREML_ZIP_SHA256=", Sha256::HexOf(zip_),
                                 "\nLOCAL_LLM_MACOS_COREML_ZIP_SIZE_BYTES=", zip_.size(),
                                 "\nLOCAL_LLM_MACOS_INTEL_GGUF_URL=",
                                 nginx_->Url("/llama-3.1-8b-instruct-q4_k_m.gguf"),
                                 "\nLOCAL_LLM_MACOS_INTEL_GGUF_SHA256=", Sha256::HexOf(gguf_),
                                 "\nLOCAL_LLM_MACOS_INTEL_GGUF_SIZE_BYTES=", gguf_.size(), "\n"));
    return path;
  }

  // The modeldist-agent binary; its exit code and output.
  CtlRun Agent(const std::vector<std::string>& args) {
    std::vector<std::string> argv = {modeldist::testing::BuildDir() +
                                     "/client/agent/modeldist-agent"};
    argv.insert(argv.end(), args.begin(), args.end());
    modeldist::testing::ChildProcess agent;
    const std::string out = dir_.Join("agent.out");
    const std::string err = dir_.Join("agent.err");
    CtlRun run;
    if (!agent.Start(argv, {.stdout_path = out, .stderr_path = err})) return run;
    std::optional<int> status = agent.Wait(std::chrono::seconds(120));
    if (!status.has_value() || !WIFEXITED(*status)) return run;
    run.code = WEXITSTATUS(*status);
    run.out = ReadFileToString(out).value_or("");
    run.err = ReadFileToString(err).value_or("");
    return run;
  }

  std::unique_ptr<modeldist::testing::NginxServer> nginx_;
  std::string zip_;
  std::string gguf_;
};

TEST_F(CtlE2eOperatorDayTest, ImportInspectBundleInstall) {
  const std::string env_file = SeedEnvFile();
  CtlRun dry = Ctl({"import-env", "--env-file", env_file, "--model", "llama-3.1-8b-instruct",
                    "--version", "2026.12.0", "--dry-run"});
  ASSERT_EQ(dry.code, 0) << dry.err;
  CtlRun imported = Ctl({"import-env", "--env-file", env_file, "--model", "llama-3.1-8b-instruct",
                         "--version", "2026.12.0", "--temp-dir", dir_.path()});
  ASSERT_EQ(imported.code, 0) << imported.err;
  EXPECT_THAT(imported.out, HasSubstr("tier llama8b/stable bound"));

  // What the server read from each file at publish.
  CtlRun show = Ctl({"show", "models/llama-3.1-8b-instruct/versions/2026.12.0"});
  ASSERT_EQ(show.code, 0) << show.err;
  EXPECT_THAT(show.out, HasSubstr("quantization: Q4_K_M"));
  EXPECT_THAT(show.out, HasSubstr("container: mlpackage"));

  CtlRun inspect = Ctl({"inspect", nginx_->www() + "/llama-3.1-8b-instruct-q4_k_m.gguf",
                        nginx_->www() + "/llama-3.1-8b-instruct-coreml.zip"});
  EXPECT_EQ(inspect.code, 0) << inspect.err;
  EXPECT_THAT(inspect.out, HasSubstr("gguf ok"));
  EXPECT_THAT(inspect.out, HasSubstr("coreml-zip ok"));

  const std::string root = dir_.Join("trust-root.pb");
  CtlRun keys = Ctl({"keys", "root", "--out", root}, {}, /*with_token_file=*/false);
  ASSERT_EQ(keys.code, 0) << keys.err;
  const std::string bundle = dir_.Join("llama8b-intel.mdbundle");
  CtlRun exported = Ctl({"bundle", "export", "--tier", "llama8b", "--platform", "macos", "--arch",
                         "x86_64", "--output", bundle});
  ASSERT_EQ(exported.code, 0) << exported.err;

  // A new device, which has never talked to the server: only the pinned root and the bundle.
  const std::string device = dir_.Join("device");
  CtlRun installed = Agent({"install-bundle", bundle, "--dir", device, "--trust-root", root,
                            "--platform", "macos", "--arch", "x86_64"});
  ASSERT_EQ(installed.code, 0) << installed.out << installed.err;
  EXPECT_THAT(installed.out,
              HasSubstr("activated models/llama-3.1-8b-instruct/versions/2026.12.0"));
  CtlRun status = Agent({"status", "--dir", device});
  ASSERT_EQ(status.code, 0) << status.err;
  EXPECT_THAT(status.out, HasSubstr("2026.12.0"));
  // The active file is the GGUF nginx served, byte for byte.
  absl::StatusOr<std::string> active = ReadFileToString(device + "/current/model.gguf");
  ASSERT_TRUE(active.ok()) << active.status();
  EXPECT_TRUE(*active == gguf_);
}

}  // namespace
}  // namespace modeldist::ctl
