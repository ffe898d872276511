#include "tests/testing/test_server.h"

#include <grpcpp/generic/generic_stub.h>

#include <algorithm>
#include <future>

#include "common/digest.h"
#include "tests/testing/error_contract.h"

namespace modeldist::testing {

TestServer::TestServer(services::ServerConfig config, ModelChecks checks)
    : config_(std::move(config)) {
  config_.listen = "127.0.0.1:0";
  config_.check_models = checks == ModelChecks::kOn;
  config_.data_dir = dir_.Join("data");
  if (config_.admin_token.empty()) config_.admin_token = kTestToken;
  Start();
}

void TestServer::Restart() {
  registry_.reset();
  manifests_.reset();
  artifacts_.reset();
  channel_.reset();
  server_.reset();
  Start();
}

void TestServer::Start() {
  auto server = services::ModeldistServer::Start(config_);
  if (!server.ok()) {
    ADD_FAILURE() << "server did not start: " << server.status();
    abort();
  }
  server_ = *std::move(server);
  // Every answer a test gets through these stubs is checked against the proto's Errors lists.
  channel_ = server_->InProcessChannel(ErrorContractInterceptors());
  registry_ = v1::RegistryService::NewStub(channel_);
  manifests_ = v1::ManifestService::NewStub(channel_);
  artifacts_ = v1::ArtifactService::NewStub(channel_);
}

TestServer::~TestServer() { server_.reset(); }

grpc::Status TestServer::CallRaw(const std::string& method, const std::string& bytes, bool admin) {
  grpc::GenericStub stub(channel_);
  std::unique_ptr<grpc::ClientContext> context =
      admin ? Admin() : std::make_unique<grpc::ClientContext>();
  grpc::Slice slice(bytes);
  grpc::ByteBuffer request(&slice, 1);
  grpc::ByteBuffer response;
  std::promise<grpc::Status> done;
  stub.UnaryCall(context.get(), method, grpc::StubOptions(), &request, &response,
                 [&done](grpc::Status status) { done.set_value(std::move(status)); });
  return done.get_future().get();
}

std::unique_ptr<grpc::ClientContext> TestServer::Admin(const std::string& token) const {
  auto context = std::make_unique<grpc::ClientContext>();
  context->AddMetadata("authorization", "Bearer " + token);
  return context;
}

v1::Artifact MakeArtifact(v1::Platform platform, v1::Arch arch, v1::Format format,
                          const std::string& bytes) {
  v1::Artifact a;
  a.set_platform(platform);
  a.set_arch(arch);
  a.set_format(format);
  a.set_digest(FormatDigest(Sha256::HexOf(bytes)));
  a.set_size_bytes(static_cast<int64_t>(bytes.size()));
  return a;
}

grpc::Status TestServer::Stream(const v1::WriteArtifactRequest& first,
                                const v1::WriteArtifactRequest& last, const std::string& bytes,
                                int64_t offset, bool finish, size_t message_bytes,
                                v1::WriteArtifactResponse* response) {
  auto context = Admin();
  v1::WriteArtifactResponse ignored;
  auto writer = registry_->WriteArtifact(context.get(), response ? response : &ignored);
  size_t pos = static_cast<size_t>(offset);
  bool first_message = true;
  do {
    v1::WriteArtifactRequest request;
    if (first_message) request = first;
    first_message = false;
    request.set_write_offset(static_cast<int64_t>(pos));
    size_t n = std::min(message_bytes, bytes.size() - pos);
    request.set_data(bytes.substr(pos, n));
    pos += n;
    if (finish && pos == bytes.size()) {
      request.MergeFrom(last);
      request.set_finish_write(true);
    }
    if (!writer->Write(request)) break;
  } while (pos < bytes.size());
  writer->WritesDone();
  return writer->Finish();
}

grpc::Status TestServer::GetManifest(const std::string& tier, v1::Platform platform, v1::Arch arch,
                                     v1::SignedManifest* out, const std::string& channel) {
  v1::GetManifestRequest request;
  request.set_tier(tier);
  request.set_channel(channel);
  request.set_platform(platform);
  request.set_arch(arch);
  v1::SignedManifest ignored;
  grpc::ClientContext context;
  return manifests_->GetManifest(&context, request, out != nullptr ? out : &ignored);
}

grpc::Status TestServer::ReadBlob(const std::string& digest, std::string* out, int64_t offset,
                                  int64_t limit) {
  v1::ReadRequest request;
  request.set_digest(digest);
  request.set_offset(offset);
  request.set_limit(limit);
  grpc::ClientContext context;
  auto reader = artifacts_->Read(&context, request);
  v1::ReadResponse message;
  while (reader->Read(&message)) out->append(message.data());
  return reader->Finish();
}

grpc::Status TestServer::Upload(const std::string& digest, const std::string& bytes, int64_t offset,
                                bool finish, size_t message_bytes) {
  v1::WriteArtifactRequest first;
  first.set_digest(digest);
  return Stream(first, {}, bytes, offset, finish, message_bytes, nullptr);
}

grpc::Status TestServer::UploadSession(const SessionUpload& upload,
                                       v1::WriteArtifactResponse* response) {
  v1::WriteArtifactRequest first;
  first.set_upload_id(upload.upload_id);
  first.set_size_bytes(upload.size_bytes >= 0 ? upload.size_bytes
                                              : static_cast<int64_t>(upload.bytes.size()));
  v1::WriteArtifactRequest last;
  last.set_digest(upload.digest.value_or(FormatDigest(Sha256::HexOf(upload.bytes))));
  return Stream(first, last, upload.bytes, upload.offset, upload.finish, upload.message_bytes,
                response);
}

std::string TestServer::PublishBlob(const std::string& model, const std::string& version,
                                    v1::Platform platform, v1::Arch arch, v1::Format format,
                                    const std::string& bytes) {
  {
    v1::CreateModelRequest request;
    request.set_model_id(model);
    v1::Model response;
    grpc::Status s = registry_->CreateModel(Admin().get(), request, &response);
    EXPECT_TRUE(s.ok() || s.error_code() == grpc::StatusCode::ALREADY_EXISTS) << s.error_message();
  }
  v1::Artifact artifact = MakeArtifact(platform, arch, format, bytes);
  {
    v1::CreateVersionRequest request;
    request.set_parent("models/" + model);
    request.set_version_id(version);
    *request.add_artifacts() = artifact;
    v1::Version response;
    grpc::Status s = registry_->CreateVersion(Admin().get(), request, &response);
    EXPECT_TRUE(s.ok()) << s.error_message();
  }
  grpc::Status upload = Upload(artifact.digest(), bytes);
  EXPECT_TRUE(upload.ok()) << upload.error_message();
  {
    v1::PublishVersionRequest request;
    request.set_name("models/" + model + "/versions/" + version);
    v1::Version response;
    grpc::Status s = registry_->PublishVersion(Admin().get(), request, &response);
    EXPECT_TRUE(s.ok()) << s.error_message();
  }
  return artifact.digest();
}

v1::TierBinding TestServer::SetTier(const std::string& tier, const std::string& channel,
                                    const std::string& version) {
  v1::SetTierRequest request;
  request.set_tier(tier);
  request.set_channel(channel);
  request.set_version(version);
  v1::TierBinding response;
  grpc::Status s = registry_->SetTier(Admin().get(), request, &response);
  EXPECT_TRUE(s.ok()) << s.error_message();
  return response;
}

}  // namespace modeldist::testing
