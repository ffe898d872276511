// File: ctl_fixture.h
//
// What the modeldistctl tests share: RunInProcess (the whole CLI with captured output and a
// given environment), the admin token the tests use, and FakeServerTest, which serves the
// fakes of fake_registry.h on 127.0.0.1:0 with a model file or two to publish.
#ifndef MODELDIST_TESTS_CLIENT_MODELDISTCTL_CTL_FIXTURE_H_
#define MODELDIST_TESTS_CLIENT_MODELDISTCTL_CTL_FIXTURE_H_

#include <grpcpp/grpcpp.h>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "client/modeldistctl/hashing_file_reader.h"
#include "client/modeldistctl/publish.h"
#include "client/modeldistctl/registry_client.h"
#include "client/modeldistctl/upload.h"
#include "gtest/gtest.h"
#include "tests/client/modeldistctl/fake_registry.h"
#include "tests/testing/test_util.h"

namespace modeldist::ctl {

// The admin token of the fakes and of the servers the tests start.
inline constexpr char kToken[] = "test-admin-token-0123456789";

// A getenv over `vars` alone.
std::function<std::optional<std::string>(const std::string&)> Env(
    std::map<std::string, std::string> vars);

void WriteFile(const std::string& path, const std::string& contents);

// What one run of modeldistctl did: its exit code and what it wrote.
struct CtlRun {
  int code = -1;
  std::string out;
  std::string err;
};

// Runs RunCtl with captured output; `args` come after the program name.
CtlRun RunInProcess(std::vector<std::string> args, std::map<std::string, std::string> env = {});

// A publish of `file` as the GGUF for macOS on `arch`, as `model` `version`, binding
// llama8b/stable.
PublishSpec MacGgufSpec(const std::string& model, const std::string& version, v1::Arch arch,
                        const std::string& file);

// FakeRegistry and FakeManifests on 127.0.0.1:0, a RegistryClient with the token, and two
// model files in a scratch dir: a GGUF (path_) and a CoreML zip (zip_path_).
class FakeServerTest : public ::testing::Test {
 protected:
  static constexpr int64_t kFileSize = 5 * (1 << 20) + 123;  // Not a multiple of the chunk.
  static constexpr int64_t kZipSize = 3 * (1 << 20) + 77;

  void SetUp() override;
  void TearDown() override;

  std::string Address() const;

  PublishSpec Spec(const std::string& version = "1.0") const;

  // The macOS pair of the hosting guide: a CoreML zip for arm64 next to the GGUF for x86_64.
  PublishSpec TwoArtifactSpec(const std::string& version = "1.0") const;

  // Options whose retries do not sleep, recording the waits instead.
  UploadOptions FastUpload();

  // A DRAFT of `spec`'s model and version declaring the GGUF file alone, as another client
  // (or an older modeldistctl, which declared before uploading) could leave it.
  void DeclareDraft(const PublishSpec& spec);
  // The model file, opened for an upload as publish opens it.
  HashingFileReader OpenFile();
  UploadOptions WithCap(int64_t cap);

  // Global flags that reach the fake with the token, as a user would run modeldistctl.
  std::vector<std::string> Ctl(std::vector<std::string> args);
  // Like Ctl, with the token of a credential `name` (added to the fake): the caller the fake
  // records and audits.
  std::vector<std::string> CtlAs(const std::string& name, std::vector<std::string> args);

  // A published version of the fake to roll out or pin to.
  void PublishFakeVersion(const std::string& version);

  FakeRegistry fake_{kToken};
  FakeManifests manifests_;
  std::string token_file_;
  int port_ = 0;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<RegistryClient> client_;
  modeldist::testing::ScratchDir dir_;
  std::string path_;
  std::string contents_;
  std::string digest_;
  std::string zip_path_;
  std::string zip_contents_;
  std::string zip_digest_;
  std::vector<absl::Duration> sleeps_;
  PublishResult ignored_;
};

}  // namespace modeldist::ctl

#endif  // MODELDIST_TESTS_CLIENT_MODELDISTCTL_CTL_FIXTURE_H_
