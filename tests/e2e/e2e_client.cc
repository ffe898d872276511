#include "tests/e2e/e2e_client.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/digest.h"

namespace modeldist::e2e {

E2eClient::E2eClient(const std::string& address, std::string token,
                     std::chrono::milliseconds deadline)
    : token_(std::move(token)), deadline_(deadline) {
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(-1);
  // Each test server is new and may have just been killed: reconnect at once instead of
  // waiting out gRPC's default backoff after a failed connection.
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 50);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 200);
  auto channel =
      grpc::CreateCustomChannel(address, grpc::InsecureChannelCredentials(), args);
  registry_ = v1::RegistryService::NewStub(channel);
  manifests_ = v1::ManifestService::NewStub(channel);
  artifacts_ = v1::ArtifactService::NewStub(channel);
}

std::unique_ptr<grpc::ClientContext> E2eClient::Context(bool admin) const {
  auto context = std::make_unique<grpc::ClientContext>();
  context->set_deadline(std::chrono::system_clock::now() + deadline_);
  if (admin) context->AddMetadata("authorization", absl::StrCat("Bearer ", token_));
  return context;
}

grpc::Status E2eClient::CreateModel(const std::string& model_id) {
  v1::CreateModelRequest request;
  request.set_model_id(model_id);
  v1::Model response;
  return registry_->CreateModel(Context(true).get(), request, &response);
}

grpc::Status E2eClient::CreateVersion(const std::string& model_id, const std::string& version_id,
                                      const ArtifactSpec& artifact, v1::Version* out) {
  v1::CreateVersionRequest request;
  request.set_parent(absl::StrCat("models/", model_id));
  request.set_version_id(version_id);
  v1::Artifact* a = request.add_artifacts();
  a->set_platform(artifact.platform);
  a->set_arch(artifact.arch);
  a->set_format(artifact.format);
  a->set_digest(DigestOf(artifact.bytes));
  a->set_size_bytes(static_cast<int64_t>(artifact.bytes.size()));
  return registry_->CreateVersion(Context(true).get(), request, out);
}

grpc::Status E2eClient::WriteArtifact(const std::string& digest, const std::string& bytes,
                                      size_t message_bytes) {
  auto context = Context(true);
  v1::WriteArtifactResponse response;
  auto writer = registry_->WriteArtifact(context.get(), &response);
  size_t offset = 0;
  do {
    const size_t n = std::min(message_bytes, bytes.size() - offset);
    v1::WriteArtifactRequest request;
    request.set_digest(digest);
    request.set_write_offset(static_cast<int64_t>(offset));
    request.set_data(bytes.substr(offset, n));
    offset += n;
    request.set_finish_write(offset == bytes.size());
    // A failed Write means the stream is broken; Finish below says why.
    if (!writer->Write(request)) break;
  } while (offset < bytes.size());
  writer->WritesDone();
  grpc::Status status = writer->Finish();
  if (status.ok() && response.committed_size() != static_cast<int64_t>(bytes.size())) {
    return grpc::Status(grpc::StatusCode::INTERNAL,
                        absl::StrCat("WriteArtifact committed ", response.committed_size(),
                                     " of ", bytes.size(), " bytes"));
  }
  return status;
}

grpc::Status E2eClient::PublishVersion(const std::string& version_name, v1::Version* out) {
  v1::PublishVersionRequest request;
  request.set_name(version_name);
  return registry_->PublishVersion(Context(true).get(), request, out);
}

grpc::Status E2eClient::SetTier(const std::string& tier, const std::string& version_name,
                                v1::TierBinding* out) {
  v1::SetTierRequest request;
  request.set_tier(tier);
  request.set_version(version_name);
  return registry_->SetTier(Context(true).get(), request, out);
}

grpc::Status E2eClient::GetVersion(const std::string& version_name, v1::Version* out) {
  v1::GetVersionRequest request;
  request.set_name(version_name);
  return registry_->GetVersion(Context(true).get(), request, out);
}

grpc::Status E2eClient::ListAllVersions(const std::string& model_id,
                                        std::vector<v1::Version>* out) {
  out->clear();
  v1::ListVersionsRequest request;
  request.set_parent(absl::StrCat("models/", model_id));
  request.set_page_size(1000);
  do {
    v1::ListVersionsResponse response;
    grpc::Status status = registry_->ListVersions(Context(true).get(), request, &response);
    if (!status.ok()) return status;
    for (v1::Version& v : *response.mutable_versions()) out->push_back(std::move(v));
    request.set_page_token(response.next_page_token());
  } while (!request.page_token().empty());
  return grpc::Status::OK;
}

grpc::Status E2eClient::GetTier(const std::string& tier, v1::TierBinding* out) {
  v1::ListTiersRequest request;
  request.set_page_size(1000);
  do {
    v1::ListTiersResponse response;
    grpc::Status status = registry_->ListTiers(Context(true).get(), request, &response);
    if (!status.ok()) return status;
    for (const v1::TierBinding& t : response.tiers()) {
      if (t.tier() == tier && t.channel() == "stable") {
        *out = t;
        return grpc::Status::OK;
      }
    }
    request.set_page_token(response.next_page_token());
  } while (!request.page_token().empty());
  return grpc::Status(grpc::StatusCode::NOT_FOUND, absl::StrCat("no binding for tier ", tier));
}

grpc::Status E2eClient::GetManifest(const std::string& tier, v1::SignedManifest* out) {
  v1::GetManifestRequest request;
  request.set_tier(tier);
  request.set_platform(v1::PLATFORM_LINUX);
  request.set_arch(v1::ARCH_X86_64);
  return manifests_->GetManifest(Context(false).get(), request, out);
}

grpc::Status E2eClient::GetSigningKeys(v1::GetSigningKeysResponse* out) {
  return manifests_->GetSigningKeys(Context(false).get(), v1::GetSigningKeysRequest(), out);
}

grpc::Status E2eClient::ReadAll(const std::string& digest, std::string* out) {
  out->clear();
  auto context = Context(false);
  v1::ReadRequest request;
  request.set_digest(digest);
  auto reader = artifacts_->Read(context.get(), request);
  v1::ReadResponse chunk;
  while (reader->Read(&chunk)) {
    if (chunk.offset() != static_cast<int64_t>(out->size())) {
      context->TryCancel();
      reader->Finish();  // the DATA_LOSS below is the finding
      return grpc::Status(grpc::StatusCode::DATA_LOSS,
                          absl::StrCat("chunk at offset ", chunk.offset(), " after ",
                                       out->size(), " bytes"));
    }
    out->append(chunk.data());
  }
  return reader->Finish();
}

std::string DigestOf(const std::string& bytes) { return FormatDigest(Sha256::HexOf(bytes)); }

std::string StatusText(const grpc::Status& status) {
  static constexpr const char* kNames[] = {
      "OK",          "CANCELLED",         "UNKNOWN",           "INVALID_ARGUMENT",
      "DEADLINE_EXCEEDED", "NOT_FOUND",   "ALREADY_EXISTS",    "PERMISSION_DENIED",
      "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION", "ABORTED",  "OUT_OF_RANGE",
      "UNIMPLEMENTED", "INTERNAL",        "UNAVAILABLE",       "DATA_LOSS",
      "UNAUTHENTICATED"};
  const int code = static_cast<int>(status.error_code());
  const char* name = code >= 0 && code <= 16 ? kNames[code] : "CODE";
  return absl::StrCat(name, "(", code, "): ", status.error_message());
}

}  // namespace modeldist::e2e
