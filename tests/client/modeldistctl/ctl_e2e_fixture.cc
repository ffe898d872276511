#include "tests/client/modeldistctl/ctl_e2e_fixture.h"

#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <iostream>
#include <optional>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "common/digest.h"
#include "common/file_util.h"
#include "common/trust.h"
#include "gmock/gmock.h"
#include "grpcpp/create_channel.h"
#include "modeldist/v1/artifact.grpc.pb.h"
#include "modeldist/v1/manifest.grpc.pb.h"

namespace modeldist::ctl {
using ::modeldist::testing::IsOk;

int64_t ClockMicros() { return absl::ToUnixMicros(absl::Now()); }

int64_t SequenceIn(absl::string_view out) {
  const size_t at = out.find("sequence ");
  if (at == absl::string_view::npos) return -1;
  absl::string_view digits = out.substr(at + std::strlen("sequence "));
  digits = digits.substr(0, digits.find_first_not_of("0123456789"));
  int64_t value = -1;
  return absl::SimpleAtoi(digits, &value) ? value : -1;
}

void CtlE2eTest::SetUp() {
  WriteFile(Token(), absl::StrCat(kToken, "\n"));
  ASSERT_EQ(::mkdir(dir_.Join("data").c_str(), 0755), 0);
  server_ = std::make_unique<modeldist::testing::ServerProcess>(ServerBinary(), dir_.Join("data"),
                                                                dir_.Join("token"), dir_.path());
  ASSERT_TRUE(server_->Start());
  contents_ = modeldist::testing::RandomBytes(kFileSize, 42);
  file_ = dir_.Join("model.gguf");
  WriteFile(file_, contents_);
  digest_ = FormatDigest(Sha256::HexOf(contents_));
}

void CtlE2eTest::TearDown() {
  if (server_ && HasFailure()) std::cerr << "server log:\n" << server_->LogTail();
  server_.reset();  // Kills and reaps by PID.
}

std::string CtlE2eTest::ServerBinary() {
  return modeldist::testing::BuildDir() + "/services/modeldist-server";
}

std::string CtlE2eTest::CtlBinary() {
  return modeldist::testing::BuildDir() + "/client/modeldistctl/modeldistctl";
}

CtlRun CtlE2eTest::Ctl(std::vector<std::string> args, std::map<std::string, std::string> env,
                       bool with_token_file) {
  if (!StartCtl(std::move(args), std::move(env), with_token_file)) return CtlRun();
  return WaitCtl();
}

::testing::AssertionResult CtlE2eTest::StartCtl(std::vector<std::string> args,
                                                std::map<std::string, std::string> env,
                                                bool with_token_file) {
  std::vector<std::string> argv = {CtlBinary(), "--server", server_->address()};
  if (with_token_file) argv.insert(argv.end(), {"--token-file", Token()});
  argv.insert(argv.end(), args.begin(), args.end());
  modeldist::testing::SpawnOptions options = {
      .stdout_path = OutPath(),
      .stderr_path = ErrPath(),
      .env = {env.begin(), env.end()},
      .unset = {"MODELDIST_ADMIN_TOKEN", "MODELDIST_SERVER"}};
  return ctl_.Start(argv, options);
}

CtlRun CtlE2eTest::WaitCtl() {
  CtlRun run;
  // No command of these tests takes minutes; one that does has hung.
  std::optional<int> status = ctl_.Wait(std::chrono::minutes(5));
  if (!status.has_value()) {
    ADD_FAILURE() << "modeldistctl did not finish within 5 minutes";
    return run;
  }
  run.code = WIFEXITED(*status) ? WEXITSTATUS(*status) : 128 + WTERMSIG(*status);
  run.out = ReadFileToString(OutPath()).value_or("");
  run.err = ReadFileToString(ErrPath()).value_or("");
  return run;
}

std::string CtlE2eTest::OutPath() const { return dir_.Join("ctl.out"); }

std::string CtlE2eTest::ErrPath() const { return dir_.Join("ctl.err"); }

std::vector<std::string> CtlE2eTest::PublishArgs(const std::string& version) const {
  return {"publish", "--model", "e2e-model", "--version", version,  "--platform", "macos",
          "--arch",  "arm64",   "--format",  "gguf",      "--tier", "llama8b",    file_};
}

std::string CtlE2eTest::Token() const { return dir_.Join("token"); }

void CtlE2eTest::ExpectDeviceGets(const std::string& tier, v1::Platform platform, v1::Arch arch,
                                  const std::string& digest, const std::string& contents) {
  auto channel = grpc::CreateChannel(server_->address(), grpc::InsecureChannelCredentials());
  absl::StatusOr<v1::SignedTrustRoot> signed_root = FetchTrustRoot(channel, 1);
  ASSERT_THAT(signed_root, IsOk());
  absl::StatusOr<v1::TrustRoot> root = VerifyFirstRoot(*signed_root);
  ASSERT_THAT(root, IsOk());
  v1::GetManifestRequest request;
  request.set_tier(tier);
  request.set_platform(platform);
  request.set_arch(arch);
  grpc::ClientContext context;
  v1::SignedManifest signed_manifest;
  grpc::Status status =
      v1::ManifestService::NewStub(channel)->GetManifest(&context, request, &signed_manifest);
  ASSERT_TRUE(status.ok()) << status.error_message();
  absl::StatusOr<v1::Manifest> manifest = VerifyManifest(*root, signed_manifest);
  ASSERT_THAT(manifest, IsOk());
  EXPECT_EQ(manifest->artifact().digest(), digest);
  EXPECT_EQ(manifest->artifact().size_bytes(), static_cast<int64_t>(contents.size()));

  v1::ReadRequest read;
  read.set_digest(digest);
  grpc::ClientContext read_context;
  auto reader = v1::ArtifactService::NewStub(channel)->Read(&read_context, read);
  Sha256 hash;
  std::string got;
  v1::ReadResponse chunk;
  while (reader->Read(&chunk)) {
    hash.Update(chunk.data());
    got += chunk.data();
  }
  ASSERT_TRUE(reader->Finish().ok());
  EXPECT_EQ(FormatDigest(hash.FinishHex()), digest);
  EXPECT_TRUE(got == contents) << "the served bytes differ from the published ones";
}

std::unique_ptr<RegistryClient> CtlE2eTest::Client() const {
  return std::make_unique<RegistryClient>(
      grpc::CreateChannel(server_->address(), grpc::InsecureChannelCredentials()), kToken);
}

PublishSpec CtlE2eTest::Spec(const std::string& version) const {
  return MacGgufSpec("e2e-model", version, v1::ARCH_ARM64, file_);
}

}  // namespace modeldist::ctl
