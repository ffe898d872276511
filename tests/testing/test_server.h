// File: test_server.h
//
// A real ModeldistServer on 127.0.0.1:0 in a scratch data dir, with stubs over an in-process
// channel, and small helpers to publish artifacts the way modeldistctl does.
#ifndef MODELDIST_TESTS_TESTING_TEST_SERVER_H_
#define MODELDIST_TESTS_TESTING_TEST_SERVER_H_

#include <memory>
#include <optional>
#include <string>

#include "absl/strings/str_cat.h"
#include "modeldist/v1/artifact.grpc.pb.h"
#include "modeldist/v1/manifest.grpc.pb.h"
#include "modeldist/v1/registry.grpc.pb.h"
#include "services/server.h"
#include "tests/testing/test_util.h"

namespace modeldist::testing {

inline constexpr char kTestToken[] = "test-admin-token-0123456789";

// One WriteArtifact stream of an upload session (TestServer::UploadSession).
struct SessionUpload {
  std::string upload_id = "";
  std::string bytes = "";  // The whole file; the stream sends it from `offset`.
  int64_t offset = 0;
  bool finish = true;  // The last message sets finish_write, with `digest`.
  // Sent with finish_write: the SHA-256 of `bytes` when unset; "" sends none.
  std::optional<std::string> digest = std::nullopt;
  int64_t size_bytes = -1;  // Declared in the first message; -1 means bytes.size().
  size_t message_bytes = 1 << 20;
};

class TestServer {
 public:
  // Whether PublishVersion runs the model checks (ServerConfig::check_models). Off by default:
  // most tests publish opaque bytes labelled GGUF or CoreML zip; tests of the checks turn them
  // on.
  enum class ModelChecks { kOff, kOn };

  explicit TestServer(services::ServerConfig config = {}, ModelChecks checks = ModelChecks::kOff);
  ~TestServer();

  services::ModeldistServer& server() { return *server_; }
  // Stops the server and starts a new one on the same data dir (a clean restart), with the
  // config as config() has it then.
  void Restart();
  services::ServerConfig& config() { return config_; }
  const std::string& data_dir() const { return dir_.path(); }
  // http://127.0.0.1:<the HTTP listener's port><path> (config().http_listen set).
  std::string HttpUrl(const std::string& path) {
    return absl::StrCat("http://127.0.0.1:", server_->http_port(), path);
  }

  v1::RegistryService::Stub& registry() { return *registry_; }
  v1::ManifestService::Stub& manifests() { return *manifests_; }
  v1::ArtifactService::Stub& artifacts() { return *artifacts_; }
  // The in-process channel the stubs use, for clients that take a channel.
  const std::shared_ptr<grpc::Channel>& channel() const { return channel_; }

  // A client context carrying the admin token (or `token` when given).
  std::unique_ptr<grpc::ClientContext> Admin(const std::string& token = kTestToken) const;

  // CreateModel (if needed) + CreateVersion with one artifact + upload + publish; returns the
  // artifact's digest. Fails the test on any error.
  std::string PublishBlob(const std::string& model, const std::string& version,
                          v1::Platform platform, v1::Arch arch, v1::Format format,
                          const std::string& bytes);
  // Uploads `bytes` of an already declared artifact in one stream (finish_write set).
  grpc::Status Upload(const std::string& digest, const std::string& bytes, int64_t offset = 0,
                      bool finish = true, size_t message_bytes = 1 << 20);
  // Uploads `upload.bytes` in an upload session, as one stream.
  grpc::Status UploadSession(const SessionUpload& upload,
                             v1::WriteArtifactResponse* response = nullptr);
  v1::TierBinding SetTier(const std::string& tier, const std::string& channel,
                          const std::string& version);
  // ManifestService.GetManifest for a device of `platform`/`arch` on `tier`/`channel` ("":
  // stable); the answer goes to `out` when given.
  grpc::Status GetManifest(const std::string& tier, v1::Platform platform, v1::Arch arch,
                           v1::SignedManifest* out = nullptr, const std::string& channel = "");
  // Sends `bytes` as they are (grpc::GenericStub) as the one request message of `method`
  // ("/pkg.Service/Method"), with the admin token when `admin`, and returns the status. A
  // streaming method is called the same way: one message, then the status.
  grpc::Status CallRaw(const std::string& method, const std::string& bytes, bool admin = false);
  // ArtifactService.Read of [offset, offset + limit) of `digest` (limit 0: to the end);
  // `out` gets every byte received, also when the stream then fails.
  grpc::Status ReadBlob(const std::string& digest, std::string* out, int64_t offset = 0,
                        int64_t limit = 0);

 private:
  void Start();
  // Streams `bytes` from `offset` in messages of `message_bytes`: the first message has the
  // fields of `first`, the last those of `last` and finish_write (when `finish`).
  grpc::Status Stream(const v1::WriteArtifactRequest& first, const v1::WriteArtifactRequest& last,
                      const std::string& bytes, int64_t offset, bool finish, size_t message_bytes,
                      v1::WriteArtifactResponse* response);

  ScratchDir dir_;
  services::ServerConfig config_;
  std::unique_ptr<services::ModeldistServer> server_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::RegistryService::Stub> registry_;
  std::unique_ptr<v1::ManifestService::Stub> manifests_;
  std::unique_ptr<v1::ArtifactService::Stub> artifacts_;
};

v1::Artifact MakeArtifact(v1::Platform platform, v1::Arch arch, v1::Format format,
                          const std::string& bytes);

}  // namespace modeldist::testing

#endif  // MODELDIST_TESTS_TESTING_TEST_SERVER_H_
