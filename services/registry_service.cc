#include "services/registry_service.h"

#include <iostream>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/digest.h"
#include "common/names.h"
#include "common/status.h"
#include "services/grpc_status.h"

namespace modeldist::services {
namespace {

constexpr size_t kMaxTextBytes = 1024;
constexpr int kMaxArtifacts = 64;
constexpr int64_t kMaxArtifactBytes = int64_t{1} << 40;  // 1 TiB

// Runs `body` after the admin check and maps its status at the edge.
template <typename Body>
grpc::Status Admin(const AdminAuth* auth, const grpc::ServerContext* context, Body&& body) {
  if (absl::Status s = auth->Check(*context); !s.ok()) return ToGrpcStatus(s);
  return ToGrpcStatus(std::forward<Body>(body)());
}

absl::Status ValidateText(absl::string_view field, const std::string& text) {
  if (text.size() > kMaxTextBytes) {
    return InvalidArgument(
        field, "TEXT_TOO_LONG",
        absl::StrCat(field, " is ", text.size(), " bytes; at most ", kMaxTextBytes));
  }
  return absl::OkStatus();
}

absl::Status ValidateArtifact(int index, const v1::Artifact& a) {
  auto field = [index](absl::string_view name) {
    return absl::StrCat("artifacts[", index, "].", name);
  };
  if (a.platform() == v1::PLATFORM_UNSPECIFIED || !v1::Platform_IsValid(a.platform())) {
    return InvalidArgument(
        field("platform"), "MISSING_PLATFORM",
        absl::StrCat(field("platform"), " is required (PLATFORM_MACOS, PLATFORM_LINUX, ...)"));
  }
  if (a.arch() == v1::ARCH_UNSPECIFIED || !v1::Arch_IsValid(a.arch())) {
    return InvalidArgument(
        field("arch"), "MISSING_ARCH",
        absl::StrCat(field("arch"), " is required (ARCH_ARM64, ARCH_X86_64 or ARCH_ANY)"));
  }
  if (a.format() == v1::FORMAT_UNSPECIFIED || !v1::Format_IsValid(a.format())) {
    return InvalidArgument(
        field("format"), "MISSING_FORMAT",
        absl::StrCat(field("format"), " is required (FORMAT_COREML_ZIP, FORMAT_GGUF, ...)"));
  }
  if (auto hex = ParseDigest(field("digest"), a.digest()); !hex.ok()) return hex.status();
  if (a.size_bytes() <= 0 || a.size_bytes() > kMaxArtifactBytes) {
    return InvalidArgument(field("size_bytes"), "INVALID_SIZE",
                           absl::StrCat(field("size_bytes"), " must be 1 to ", kMaxArtifactBytes,
                                        " bytes, got ", a.size_bytes()));
  }
  return absl::OkStatus();
}

absl::Status ValidatePageSize(int32_t page_size) {
  if (page_size < 0) {
    return InvalidArgument("page_size", "INVALID_PAGE_SIZE", "page_size must not be negative");
  }
  return absl::OkStatus();
}

}  // namespace

void RegistryServiceImpl::FillUploaded(v1::Version* version) const {
  for (v1::Artifact& a : *version->mutable_artifacts()) {
    auto hex = ParseDigest("digest", a.digest());
    a.set_uploaded(hex.ok() && blobs_->Contains(*hex));
  }
}

void RegistryServiceImpl::Resign() {
  if (absl::Status s = manifests_->Rebuild(); !s.ok()) {
    std::cerr << "modeldist-server: re-signing manifests failed (will retry): " << s << "\n";
  }
}

grpc::Status RegistryServiceImpl::CreateModel(grpc::ServerContext* context,
                                              const v1::CreateModelRequest* request,
                                              v1::Model* response) {
  return Admin(auth_, context, [&]() -> absl::Status {
    MD_RETURN_IF_ERROR(ValidateId("model_id", request->model_id()));
    MD_RETURN_IF_ERROR(ValidateText("model.description", request->model().description()));
    MD_ASSIGN_OR_RETURN(*response,
                        catalog_->CreateModel(request->model_id(), request->model().description()));
    return absl::OkStatus();
  });
}

grpc::Status RegistryServiceImpl::GetModel(grpc::ServerContext* context,
                                           const v1::GetModelRequest* request,
                                           v1::Model* response) {
  return Admin(auth_, context, [&]() -> absl::Status {
    MD_ASSIGN_OR_RETURN(std::string model, ParseModelName("name", request->name()));
    MD_ASSIGN_OR_RETURN(*response, catalog_->GetModel(model));
    return absl::OkStatus();
  });
}

grpc::Status RegistryServiceImpl::ListModels(grpc::ServerContext* context,
                                             const v1::ListModelsRequest* request,
                                             v1::ListModelsResponse* response) {
  return Admin(auth_, context, [&]() -> absl::Status {
    MD_RETURN_IF_ERROR(ValidatePageSize(request->page_size()));
    MD_ASSIGN_OR_RETURN(auto page,
                        catalog_->ListModels(request->page_size(), request->page_token()));
    for (auto& m : page.items) *response->add_models() = std::move(m);
    response->set_next_page_token(page.next_page_token);
    return absl::OkStatus();
  });
}

grpc::Status RegistryServiceImpl::CreateVersion(grpc::ServerContext* context,
                                                const v1::CreateVersionRequest* request,
                                                v1::Version* response) {
  return Admin(auth_, context, [&]() -> absl::Status {
    MD_ASSIGN_OR_RETURN(std::string model, ParseModelName("parent", request->parent()));
    MD_RETURN_IF_ERROR(ValidateId("version_id", request->version_id()));
    if (request->artifacts().empty()) {
      return InvalidArgument("artifacts", "NO_ARTIFACTS",
                             "artifacts must list at least one artifact");
    }
    if (request->artifacts_size() > kMaxArtifacts) {
      return InvalidArgument("artifacts", "TOO_MANY_ARTIFACTS",
                             absl::StrCat("a version has at most ", kMaxArtifacts,
                                          " artifacts, got ", request->artifacts_size()));
    }
    std::vector<v1::Artifact> artifacts;
    for (int i = 0; i < request->artifacts_size(); ++i) {
      MD_RETURN_IF_ERROR(ValidateArtifact(i, request->artifacts(i)));
      v1::Artifact a = request->artifacts(i);
      a.clear_uploaded();
      artifacts.push_back(std::move(a));
    }
    MD_ASSIGN_OR_RETURN(
        *response, catalog_->CreateVersion(VersionName{model, request->version_id()}, artifacts));
    FillUploaded(response);
    return absl::OkStatus();
  });
}

grpc::Status RegistryServiceImpl::GetVersion(grpc::ServerContext* context,
                                             const v1::GetVersionRequest* request,
                                             v1::Version* response) {
  return Admin(auth_, context, [&]() -> absl::Status {
    MD_ASSIGN_OR_RETURN(VersionName name, ParseVersionName("name", request->name()));
    MD_ASSIGN_OR_RETURN(*response, catalog_->GetVersion(name));
    FillUploaded(response);
    return absl::OkStatus();
  });
}

grpc::Status RegistryServiceImpl::ListVersions(grpc::ServerContext* context,
                                               const v1::ListVersionsRequest* request,
                                               v1::ListVersionsResponse* response) {
  return Admin(auth_, context, [&]() -> absl::Status {
    MD_ASSIGN_OR_RETURN(std::string model, ParseModelName("parent", request->parent()));
    MD_RETURN_IF_ERROR(ValidatePageSize(request->page_size()));
    MD_ASSIGN_OR_RETURN(auto page,
                        catalog_->ListVersions(model, request->page_size(), request->page_token()));
    for (auto& v : page.items) {
      FillUploaded(&v);
      *response->add_versions() = std::move(v);
    }
    response->set_next_page_token(page.next_page_token);
    return absl::OkStatus();
  });
}

absl::Status RegistryServiceImpl::DoWriteArtifact(
    grpc::ServerReader<v1::WriteArtifactRequest>* reader, v1::WriteArtifactResponse* response) {
  v1::WriteArtifactRequest request;
  if (!reader->Read(&request)) {
    return InvalidArgument("digest", "EMPTY_UPLOAD", "the upload stream carried no message");
  }
  const std::string digest = request.digest();
  MD_ASSIGN_OR_RETURN(std::string hex, ParseDigest("digest", digest));
  // Only declared artifacts may be uploaded: the declaration gives the size to enforce, and
  // the store never fills with bytes nobody asked for.
  MD_ASSIGN_OR_RETURN(int64_t size, catalog_->DeclaredSize(digest));
  if (blobs_->Contains(hex)) {
    // Someone already uploaded these bytes: the write is complete (as in ByteStream).
    response->set_committed_size(size);
    return absl::OkStatus();
  }
  do {
    if (!request.digest().empty() && request.digest() != digest) {
      return InvalidArgument("digest", "DIGEST_CHANGED",
                             "digest must be the same in every message of an upload");
    }
    if (request.write_offset() < 0) {
      return InvalidArgument("write_offset", "INVALID_OFFSET", "write_offset must be >= 0");
    }
    if (!request.data().empty() || request.write_offset() != 0) {
      MD_RETURN_IF_ERROR(blobs_->Append(hex, size, request.write_offset(), request.data()));
    }
    if (request.finish_write()) {
      MD_RETURN_IF_ERROR(blobs_->Finish(hex, size));
      response->set_committed_size(size);
      return absl::OkStatus();
    }
  } while (reader->Read(&request));
  // The client closed without finishing: keep what was committed so it can resume.
  MD_ASSIGN_OR_RETURN(int64_t committed, blobs_->UploadOffset(hex, size));
  response->set_committed_size(committed);
  return absl::OkStatus();
}

grpc::Status RegistryServiceImpl::WriteArtifact(
    grpc::ServerContext* context, grpc::ServerReader<v1::WriteArtifactRequest>* reader,
    v1::WriteArtifactResponse* response) {
  return Admin(auth_, context, [&] { return DoWriteArtifact(reader, response); });
}

grpc::Status RegistryServiceImpl::QueryUpload(grpc::ServerContext* context,
                                              const v1::QueryUploadRequest* request,
                                              v1::QueryUploadResponse* response) {
  return Admin(auth_, context, [&]() -> absl::Status {
    MD_ASSIGN_OR_RETURN(std::string hex, ParseDigest("digest", request->digest()));
    MD_ASSIGN_OR_RETURN(int64_t size, catalog_->DeclaredSize(request->digest()));
    MD_ASSIGN_OR_RETURN(int64_t committed, blobs_->UploadOffset(hex, size));
    response->set_committed_size(committed);
    response->set_complete(blobs_->Contains(hex));
    return absl::OkStatus();
  });
}

grpc::Status RegistryServiceImpl::PublishVersion(grpc::ServerContext* context,
                                                 const v1::PublishVersionRequest* request,
                                                 v1::Version* response) {
  return Admin(auth_, context, [&]() -> absl::Status {
    MD_ASSIGN_OR_RETURN(VersionName name, ParseVersionName("name", request->name()));
    auto is_uploaded = [this](const std::string& digest) {
      auto hex = ParseDigest("digest", digest);
      return hex.ok() && blobs_->Contains(*hex);
    };
    MD_ASSIGN_OR_RETURN(*response, catalog_->PublishVersion(name, is_uploaded));
    FillUploaded(response);
    Resign();
    return absl::OkStatus();
  });
}

grpc::Status RegistryServiceImpl::YankVersion(grpc::ServerContext* context,
                                              const v1::YankVersionRequest* request,
                                              v1::Version* response) {
  return Admin(auth_, context, [&]() -> absl::Status {
    MD_ASSIGN_OR_RETURN(VersionName name, ParseVersionName("name", request->name()));
    MD_RETURN_IF_ERROR(ValidateText("reason", request->reason()));
    MD_ASSIGN_OR_RETURN(*response, catalog_->YankVersion(name, request->reason()));
    FillUploaded(response);
    Resign();
    return absl::OkStatus();
  });
}

grpc::Status RegistryServiceImpl::SetTier(grpc::ServerContext* context,
                                          const v1::SetTierRequest* request,
                                          v1::TierBinding* response) {
  return Admin(auth_, context, [&]() -> absl::Status {
    MD_RETURN_IF_ERROR(ValidateId("tier", request->tier()));
    std::string channel =
        request->channel().empty() ? std::string(kDefaultChannel) : request->channel();
    MD_RETURN_IF_ERROR(ValidateId("channel", channel));
    MD_ASSIGN_OR_RETURN(VersionName version, ParseVersionName("version", request->version()));
    MD_ASSIGN_OR_RETURN(*response, catalog_->SetTier(request->tier(), channel, version));
    Resign();
    return absl::OkStatus();
  });
}

grpc::Status RegistryServiceImpl::ListTiers(grpc::ServerContext* context,
                                            const v1::ListTiersRequest* request,
                                            v1::ListTiersResponse* response) {
  return Admin(auth_, context, [&]() -> absl::Status {
    MD_RETURN_IF_ERROR(ValidatePageSize(request->page_size()));
    MD_ASSIGN_OR_RETURN(auto page,
                        catalog_->ListTiers(request->page_size(), request->page_token()));
    for (auto& t : page.items) *response->add_tiers() = std::move(t);
    response->set_next_page_token(page.next_page_token);
    return absl::OkStatus();
  });
}

}  // namespace modeldist::services
