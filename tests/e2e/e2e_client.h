// File: e2e_client.h
//
// A thin blocking client for the end-to-end tests: the publish steps of RegistryService and a
// whole-blob ArtifactService.Read, each returning the raw grpc::Status so a test can tell an
// acknowledged call (OK) from one that died with the server. It deliberately does not use
// modeldistctl, so the e2e tests keep working while that client changes.
#ifndef MODELDIST_TESTS_E2E_E2E_CLIENT_H_
#define MODELDIST_TESTS_E2E_E2E_CLIENT_H_

#include <grpcpp/grpcpp.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "modeldist/v1/artifact.grpc.pb.h"
#include "modeldist/v1/manifest.grpc.pb.h"
#include "modeldist/v1/registry.grpc.pb.h"

namespace modeldist::e2e {

// What one artifact of a version is: the bytes and how they are declared.
struct ArtifactSpec {
  v1::Platform platform = v1::PLATFORM_LINUX;
  v1::Arch arch = v1::ARCH_X86_64;
  v1::Format format = v1::FORMAT_GGUF;
  std::string bytes;
};

class E2eClient {
 public:
  // `address` is HOST:PORT (plaintext); `token` is the admin bearer token. Every call gets
  // `deadline` so a test never hangs on a dead server.
  E2eClient(const std::string& address, std::string token,
            std::chrono::milliseconds deadline = std::chrono::seconds(20));

  grpc::Status CreateModel(const std::string& model_id);
  // Declares `version_id` of `models/{model_id}` with one artifact.
  grpc::Status CreateVersion(const std::string& model_id, const std::string& version_id,
                             const ArtifactSpec& artifact, v1::Version* out);
  // Uploads `bytes` under `digest` in messages of `message_bytes`, finishing on the last one.
  grpc::Status WriteArtifact(const std::string& digest, const std::string& bytes,
                             size_t message_bytes = 256 * 1024);
  grpc::Status PublishVersion(const std::string& version_name, v1::Version* out);
  grpc::Status SetTier(const std::string& tier, const std::string& version_name,
                       v1::TierBinding* out);
  grpc::Status GetVersion(const std::string& version_name, v1::Version* out);
  // Reads every ListVersions page of `models/{model_id}`.
  grpc::Status ListAllVersions(const std::string& model_id, std::vector<v1::Version>* out);
  // Returns the binding of `tier` on the `stable` channel; NOT_FOUND when it has none.
  grpc::Status GetTier(const std::string& tier, v1::TierBinding* out);
  grpc::Status GetManifest(const std::string& tier, v1::SignedManifest* out);
  grpc::Status GetSigningKeys(v1::GetSigningKeysResponse* out);
  // Reads a whole blob with ArtifactService.Read, checking that the chunks' offsets are
  // contiguous; the bytes go to `out`.
  grpc::Status ReadAll(const std::string& digest, std::string* out);

 private:
  // A context with the deadline and, for admin rpcs, the bearer token.
  std::unique_ptr<grpc::ClientContext> Context(bool admin) const;

  std::string token_;
  std::chrono::milliseconds deadline_;
  std::unique_ptr<v1::RegistryService::Stub> registry_;
  std::unique_ptr<v1::ManifestService::Stub> manifests_;
  std::unique_ptr<v1::ArtifactService::Stub> artifacts_;
};

// `sha256:` + the lowercase hex SHA-256 of `bytes`.
std::string DigestOf(const std::string& bytes);

// "CODE: message" for logs and assertion messages.
std::string StatusText(const grpc::Status& status);

}  // namespace modeldist::e2e

#endif  // MODELDIST_TESTS_E2E_E2E_CLIENT_H_
