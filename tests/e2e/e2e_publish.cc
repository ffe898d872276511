// e2e_publish: publishes one file as a model version and binds a tier to it, the way an admin
// would, so the shell-level e2e tests (buf curl, openssl) have something real to query.
// Prints the artifact's digest on stdout. Exits 0 on success, 1 on an rpc failure (the
// status goes to stderr), 2 on bad usage.
#include <iostream>
#include <string>

#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "common/flags.h"
#include "tests/e2e/e2e_client.h"

namespace {

constexpr char kUsage[] =
    "Usage: e2e_publish --server HOST:PORT --token-file FILE --model ID --version ID\n"
    "                   --tier TIER --file PATH [--platform P] [--arch A] [--format F]\n";

int Usage(const std::string& message) {
  std::cerr << "e2e_publish: " << message << "\n" << kUsage;
  return 2;
}

int RpcFailed(const std::string& what, const grpc::Status& status) {
  std::cerr << "e2e_publish: " << what << " failed: " << modeldist::e2e::StatusText(status)
            << "\n";
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  namespace v1 = modeldist::v1;
  modeldist::Flags flags;
  flags.Add("server", "HOST:PORT", "", "the modeldist-server to publish to");
  flags.Add("token-file", "FILE", "", "file whose first line is the admin token");
  flags.Add("model", "ID", "", "model id; created when missing");
  flags.Add("version", "ID", "", "version id to create and publish");
  flags.Add("tier", "TIER", "", "tier to bind on the stable channel");
  flags.Add("file", "PATH", "", "the artifact's bytes");
  flags.Add("platform", "ENUM", "PLATFORM_LINUX", "modeldist.v1.Platform value name");
  flags.Add("arch", "ENUM", "ARCH_X86_64", "modeldist.v1.Arch value name");
  flags.Add("format", "ENUM", "FORMAT_GGUF", "modeldist.v1.Format value name");
  if (absl::Status s = flags.Parse(argc, argv); !s.ok()) return Usage(std::string(s.message()));
  for (const char* required : {"server", "token-file", "model", "version", "tier", "file"}) {
    if (flags.Get(required).empty()) return Usage(absl::StrCat("--", required, " is required"));
  }
  modeldist::e2e::ArtifactSpec artifact;
  if (!v1::Platform_Parse(flags.Get("platform"), &artifact.platform) ||
      !v1::Arch_Parse(flags.Get("arch"), &artifact.arch) ||
      !v1::Format_Parse(flags.Get("format"), &artifact.format)) {
    return Usage("--platform/--arch/--format take enum value names, e.g. PLATFORM_LINUX");
  }
  auto token = modeldist::ReadFileToString(flags.Get("token-file"));
  if (!token.ok()) return Usage(std::string(token.status().message()));
  auto bytes = modeldist::ReadFileToString(flags.Get("file"));
  if (!bytes.ok()) return Usage(std::string(bytes.status().message()));
  artifact.bytes = *std::move(bytes);

  modeldist::e2e::E2eClient client(flags.Get("server"), token->substr(0, token->find('\n')));
  const std::string model = flags.Get("model");
  grpc::Status status = client.CreateModel(model);
  // Publishing a second version of an existing model is normal.
  if (!status.ok() && status.error_code() != grpc::StatusCode::ALREADY_EXISTS) {
    return RpcFailed("CreateModel", status);
  }
  v1::Version version;
  status = client.CreateVersion(model, flags.Get("version"), artifact, &version);
  if (!status.ok()) return RpcFailed("CreateVersion", status);
  const std::string digest = modeldist::e2e::DigestOf(artifact.bytes);
  status = client.WriteArtifact(digest, artifact.bytes);
  if (!status.ok()) return RpcFailed("WriteArtifact", status);
  status = client.PublishVersion(version.name(), &version);
  if (!status.ok()) return RpcFailed("PublishVersion", status);
  v1::TierBinding binding;
  status = client.SetTier(flags.Get("tier"), version.name(), &binding);
  if (!status.ok()) return RpcFailed("SetTier", status);
  std::cout << digest << "\n";
  return 0;
}
