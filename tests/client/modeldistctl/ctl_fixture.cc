#include "tests/client/modeldistctl/ctl_fixture.h"

#include <fstream>
#include <sstream>
#include <utility>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "client/modeldistctl/commands.h"
#include "common/digest.h"
#include "gmock/gmock.h"

namespace modeldist::ctl {

using ::modeldist::testing::IsOk;

std::function<std::optional<std::string>(const std::string&)> Env(
    std::map<std::string, std::string> vars) {
  return [vars](const std::string& name) -> std::optional<std::string> {
    auto it = vars.find(name);
    if (it == vars.end()) return std::nullopt;
    return it->second;
  };
}

void WriteFile(const std::string& path, const std::string& contents) {
  std::ofstream(path, std::ios::binary) << contents;
}

CtlRun RunInProcess(std::vector<std::string> args, std::map<std::string, std::string> env) {
  std::ostringstream out, err;
  Console console;
  console.out = &out;
  console.err = &err;
  console.getenv = Env(std::move(env));
  args.insert(args.begin(), "modeldistctl");
  CtlRun run;
  run.code = RunCtl(args, console);
  run.out = out.str();
  run.err = err.str();
  return run;
}

PublishSpec MacGgufSpec(const std::string& model, const std::string& version, v1::Arch arch,
                        const std::string& file) {
  PublishSpec spec;
  spec.model_id = model;
  spec.version_id = version;
  spec.tier = "llama8b";
  spec.channel = "stable";
  spec.artifacts = {{v1::PLATFORM_MACOS, arch, v1::FORMAT_GGUF, file}};
  return spec;
}

void FakeServerTest::SetUp() {
  grpc::ServerBuilder builder;
  builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port_);
  builder.RegisterService(&fake_);
  builder.RegisterService(&manifests_);
  server_ = builder.BuildAndStart();
  ASSERT_NE(server_, nullptr);
  client_ = std::make_unique<RegistryClient>(
      grpc::CreateChannel(Address(), grpc::InsecureChannelCredentials()), kToken);
  contents_ = modeldist::testing::RandomBytes(kFileSize, 7);
  path_ = dir_.Join("model.gguf");
  WriteFile(path_, contents_);
  digest_ = FormatDigest(Sha256::HexOf(contents_));
  zip_contents_ = modeldist::testing::RandomBytes(kZipSize, 9);
  zip_path_ = dir_.Join("model-coreml.zip");
  WriteFile(zip_path_, zip_contents_);
  zip_digest_ = FormatDigest(Sha256::HexOf(zip_contents_));
}

void FakeServerTest::TearDown() { server_->Shutdown(); }

std::string FakeServerTest::Address() const { return absl::StrCat("127.0.0.1:", port_); }

PublishSpec FakeServerTest::Spec(const std::string& version) const {
  return MacGgufSpec("llama", version, v1::ARCH_X86_64, path_);
}

PublishSpec FakeServerTest::TwoArtifactSpec(const std::string& version) const {
  PublishSpec spec = Spec(version);
  spec.artifacts.insert(spec.artifacts.begin(),
                        {v1::PLATFORM_MACOS, v1::ARCH_ARM64, v1::FORMAT_COREML_ZIP, zip_path_});
  return spec;
}

UploadOptions FakeServerTest::FastUpload() {
  UploadOptions options;
  options.sleep = [this](absl::Duration d) { sleeps_.push_back(d); };
  options.random = [] { return 0.0; };
  return options;
}

void FakeServerTest::DeclareDraft(const PublishSpec& spec) {
  v1::CreateModelRequest model;
  model.set_model_id(spec.model_id);
  ASSERT_THAT(client_->CreateModel(model), IsOk());
  v1::CreateVersionRequest version;
  version.set_parent(absl::StrCat("models/", spec.model_id));
  version.set_version_id(spec.version_id);
  v1::Artifact* a = version.add_artifacts();
  a->set_platform(v1::PLATFORM_MACOS);
  a->set_arch(v1::ARCH_X86_64);
  a->set_format(v1::FORMAT_GGUF);
  a->set_digest(digest_);
  a->set_size_bytes(kFileSize);
  ASSERT_THAT(client_->CreateVersion(version), IsOk());
}

HashingFileReader FakeServerTest::OpenFile() {
  absl::StatusOr<HashingFileReader> file = HashingFileReader::Open(path_);
  EXPECT_THAT(file, IsOk());
  return *std::move(file);
}

UploadOptions FakeServerTest::WithCap(int64_t cap) {
  UploadOptions options = FastUpload();
  options.max_bytes_to_send = cap;
  return options;
}

std::vector<std::string> FakeServerTest::Ctl(std::vector<std::string> args) {
  if (token_file_.empty()) {
    token_file_ = dir_.Join("token");
    WriteFile(token_file_, absl::StrCat(kToken, "\n"));
  }
  args.insert(args.begin(), {"--server", Address(), "--token-file", token_file_});
  return args;
}

std::vector<std::string> FakeServerTest::CtlAs(const std::string& name,
                                               std::vector<std::string> args) {
  const std::string token = absl::StrCat("token-of-", name);
  fake_.AddCredential(token, name);
  const std::string file = dir_.Join(absl::StrCat(name, ".token"));
  WriteFile(file, absl::StrCat(token, "\n"));
  args.insert(args.begin(), {"--server", Address(), "--token-file", file});
  return args;
}

void FakeServerTest::PublishFakeVersion(const std::string& version) {
  ASSERT_THAT(Publish(*client_, Spec(version), PublishOptions{.upload = FastUpload()}, &ignored_),
              IsOk());
}

}  // namespace modeldist::ctl
