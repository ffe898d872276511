#include "services/registry_service.h"

#include <algorithm>
#include <iostream>
#include <map>
#include <set>
#include <type_traits>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/digest.h"
#include "common/grpc_status.h"
#include "common/limits.h"
#include "common/model_check/model_check.h"
#include "common/names.h"
#include "common/status.h"
#include "services/blob_import.h"
#include "services/credential_admin.h"
#include "services/origin_admin.h"
#include "services/publish_checks.h"
#include "services/release_admin.h"
#include "services/request_validation.h"
#include "services/rollout_status.h"
#include "storage/background_appender.h"

namespace modeldist::services {
namespace {

constexpr int64_t kMaxArtifactBytes = storage::kMaxBlobBytes;  // 1 TiB
// What a device may unpack one artifact to (a zip of many small files may grow that much).
constexpr int64_t kMaxUnpackedBytes = 64 * kMaxArtifactBytes;

// Runs `body` once the call is authenticated and its caller has the scope of rpc `method`
// (pass __func__ from the rpc's method, so the name cannot drift from the rpc), and maps its
// status at the edge. A body that takes a Caller gets the caller: the audit actor.
template <typename Body>
grpc::Status Admin(const AdminAuth* auth, const grpc::ServerContext* context,
                   absl::string_view method, Body&& body) {
  absl::StatusOr<Caller> caller = auth->Authorize(*context, method);
  if (!caller.ok()) return ToGrpcStatus(caller.status());
  if constexpr (std::is_invocable_v<Body, const Caller&>) {
    return ToGrpcStatus(std::forward<Body>(body)(*caller));
  } else {
    return ToGrpcStatus(std::forward<Body>(body)());
  }
}

absl::Status ValidateArtifact(int index, const v1::Artifact& a) {
  auto field = [index](absl::string_view name) {
    return absl::StrCat("artifacts[", index, "].", name);
  };
  const v1::ArtifactConstraints& c = a.constraints();
  return RequestCheck()
      .Platform(field("platform"), a.platform())
      .ArtifactArch(field("arch"), a.arch())
      .Format(field("format"), a.format())
      .Digest(field("digest"), a.digest())
      .Range(field("size_bytes"), a.size_bytes(), 1, kMaxArtifactBytes, "INVALID_SIZE", " bytes")
      .Range(field("unpacked_size_bytes"), a.unpacked_size_bytes(), 0, kMaxUnpackedBytes,
             "INVALID_SIZE", " bytes")
      .OsVersion(field("constraints.min_os_version"), c.min_os_version())
      .NotNegative(field("constraints.min_ram_bytes"), c.min_ram_bytes(), "INVALID_SIZE")
      .Accelerators(field("constraints.required_accelerators"), c.required_accelerators(),
                    /*allow_unspecified=*/false)
      .status();
}

// The origins a model or version asks its blobs to be copied to (`field`: model.replicate_to
// or replicate_to): each must replicate on this server (`replicate: true` in its origins
// file), once, at most kMaxReplicateTo of them.
absl::StatusOr<std::vector<std::string>> CheckReplicateTo(
    const std::string& field, const google::protobuf::RepeatedPtrField<std::string>& names,
    const origin::OriginSet* origins) {
  std::vector<std::string> replicating;
  if (origins != nullptr) {
    for (const origin::ConfiguredOrigin& o : origins->origins()) {
      if (o.config.replicate()) replicating.push_back(o.config.name());
    }
  }
  if (names.size() > kMaxReplicateTo) {
    return InvalidArgument(
        field, "INVALID_REPLICATE_TO",
        absl::StrCat(field, " names ", names.size(), " origins; at most ", kMaxReplicateTo));
  }
  std::vector<std::string> out;
  for (int i = 0; i < names.size(); ++i) {
    const std::string at = absl::StrCat(field, "[", i, "]");
    if (std::find(replicating.begin(), replicating.end(), names[i]) == replicating.end()) {
      return InvalidArgument(
          at, "INVALID_REPLICATE_TO",
          absl::StrCat(at, " is \"", names[i], "\", which is not an origin with `replicate: true` ",
                       "on this server (",
                       replicating.empty()
                           ? "it has none; see modeldist-server --origins"
                           : absl::StrCat("those: ", absl::StrJoin(replicating, ", ")),
                       ")"));
    }
    if (std::find(out.begin(), out.end(), names[i]) != out.end()) {
      return InvalidArgument(at, "INVALID_REPLICATE_TO",
                             absl::StrCat(at, " names \"", names[i], "\" a second time"));
    }
    out.push_back(names[i]);
  }
  return out;
}

}  // namespace

absl::Status RegistryServiceImpl::FillStatus(v1::Version* version) const {
  for (v1::Artifact& a : *version->mutable_artifacts()) {
    auto hex = ParseDigest("digest", a.digest());
    a.set_uploaded(hex.ok() && blobs_->Contains(*hex));
    MD_ASSIGN_OR_RETURN(std::vector<v1::Replica> replicas, catalog_->ListReplicas(a.digest()));
    for (v1::Replica& r : replicas) *a.add_replicas() = std::move(r);
  }
  return absl::OkStatus();
}

void RegistryServiceImpl::Resign() {
  if (absl::Status s = manifests_->Rebuild(); !s.ok()) {
    std::cerr << "modeldist-server: re-signing manifests failed (will retry): " << s << "\n";
  }
}

grpc::Status RegistryServiceImpl::CreateModel(grpc::ServerContext* context,
                                              const v1::CreateModelRequest* request,
                                              v1::Model* response) {
  return Admin(auth_, context, __func__, [&](const Caller& caller) -> absl::Status {
    MD_RETURN_IF_ERROR(RequestCheck()
                           .Id("model_id", request->model_id())
                           .Text("model.description", request->model().description())
                           .status());
    MD_ASSIGN_OR_RETURN(
        const std::vector<std::string> replicate_to,
        CheckReplicateTo("model.replicate_to", request->model().replicate_to(), origins_));
    MD_ASSIGN_OR_RETURN(*response,
                        catalog_->CreateModel(request->model_id(), request->model().description(),
                                              caller.name, replicate_to));
    return absl::OkStatus();
  });
}

grpc::Status RegistryServiceImpl::GetModel(grpc::ServerContext* context,
                                           const v1::GetModelRequest* request,
                                           v1::Model* response) {
  return Admin(auth_, context, __func__, [&]() -> absl::Status {
    std::string model;
    MD_RETURN_IF_ERROR(RequestCheck().ModelName("name", request->name(), &model).status());
    MD_ASSIGN_OR_RETURN(*response, catalog_->GetModel(model));
    return absl::OkStatus();
  });
}

grpc::Status RegistryServiceImpl::ListModels(grpc::ServerContext* context,
                                             const v1::ListModelsRequest* request,
                                             v1::ListModelsResponse* response) {
  return Admin(auth_, context, __func__, [&]() -> absl::Status {
    MD_RETURN_IF_ERROR(RequestCheck().PageSize(request->page_size()).status());
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
  return Admin(auth_, context, __func__, [&](const Caller& caller) -> absl::Status {
    std::string model;
    const int count = request->artifacts_size();
    MD_RETURN_IF_ERROR(RequestCheck()
                           .ModelName("parent", request->parent(), &model)
                           .Id("version_id", request->version_id())
                           .That(count > 0, "artifacts", "NO_ARTIFACTS",
                                 "artifacts must list at least one artifact")
                           .Range("artifacts", count, 1, kMaxArtifactsPerVersion,
                                  "TOO_MANY_ARTIFACTS", " (artifacts in a version)")
                           .status());
    std::vector<v1::Artifact> artifacts;
    for (int i = 0; i < request->artifacts_size(); ++i) {
      MD_RETURN_IF_ERROR(ValidateArtifact(i, request->artifacts(i)));
      v1::Artifact a = request->artifacts(i);
      a.clear_uploaded();
      artifacts.push_back(std::move(a));
    }
    MD_ASSIGN_OR_RETURN(const std::vector<std::string> replicate_to,
                        CheckReplicateTo("replicate_to", request->replicate_to(), origins_));
    MD_ASSIGN_OR_RETURN(
        *response, catalog_->CreateVersion(VersionName{model, request->version_id()}, artifacts,
                                           caller.name, replicate_to));
    MD_RETURN_IF_ERROR(FillStatus(response));
    return absl::OkStatus();
  });
}

grpc::Status RegistryServiceImpl::GetVersion(grpc::ServerContext* context,
                                             const v1::GetVersionRequest* request,
                                             v1::Version* response) {
  return Admin(auth_, context, __func__, [&]() -> absl::Status {
    VersionName name;
    MD_RETURN_IF_ERROR(RequestCheck().VersionName("name", request->name(), &name).status());
    MD_ASSIGN_OR_RETURN(*response, catalog_->GetVersion(name));
    MD_RETURN_IF_ERROR(FillStatus(response));
    return absl::OkStatus();
  });
}

grpc::Status RegistryServiceImpl::ListVersions(grpc::ServerContext* context,
                                               const v1::ListVersionsRequest* request,
                                               v1::ListVersionsResponse* response) {
  return Admin(auth_, context, __func__, [&]() -> absl::Status {
    std::string model;
    MD_RETURN_IF_ERROR(RequestCheck()
                           .ModelName("parent", request->parent(), &model)
                           .PageSize(request->page_size())
                           .status());
    MD_ASSIGN_OR_RETURN(auto page,
                        catalog_->ListVersions(model, request->page_size(), request->page_token()));
    for (auto& v : page.items) {
      MD_RETURN_IF_ERROR(FillStatus(&v));
      *response->add_versions() = std::move(v);
    }
    response->set_next_page_token(page.next_page_token);
    return absl::OkStatus();
  });
}

absl::Status RegistryServiceImpl::DoWriteArtifact(
    grpc::ServerReaderInterface<v1::WriteArtifactRequest>* reader,
    v1::WriteArtifactResponse* response) {
  v1::WriteArtifactRequest request;
  if (!reader->Read(&request)) {
    return InvalidArgument("digest", "EMPTY_UPLOAD", "the upload stream carried no message");
  }
  if (!request.upload_id().empty()) return DoWriteSession(reader, request, response);
  const std::string digest = request.digest();
  MD_ASSIGN_OR_RETURN(std::string hex, ParseDigest("digest", digest));
  // Only declared artifacts may be uploaded by digest: the declaration gives the size to
  // enforce, and the store never fills with bytes nobody asked for.
  MD_ASSIGN_OR_RETURN(int64_t size, catalog_->DeclaredSize(digest));
  if (blobs_->Contains(hex)) {
    // Someone already uploaded these bytes: the write is complete (as in ByteStream).
    response->set_committed_size(size);
    response->set_digest(digest);
    return absl::OkStatus();
  }
  // The next message is received while the store writes and hashes this one.
  storage::BackgroundAppender appender([&](int64_t offset, absl::string_view data) {
    return blobs_->Append(hex, size, offset, data);
  });
  // An error of an earlier message's append comes first, as it would have inline.
  auto fail = [&appender](absl::Status status) {
    absl::Status earlier = appender.Drain();
    return earlier.ok() ? status : earlier;
  };
  do {
    if (!request.digest().empty() && request.digest() != digest) {
      return fail(InvalidArgument("digest", "DIGEST_CHANGED",
                                  "digest must be the same in every message of an upload"));
    }
    if (!request.upload_id().empty()) {
      return fail(InvalidArgument("upload_id", "UPLOAD_ID_CHANGED",
                                  "upload_id must be the same in every message of an upload, and "
                                  "this one started by digest"));
    }
    if (request.write_offset() < 0) {
      return fail(InvalidArgument("write_offset", "INVALID_OFFSET", "write_offset must be >= 0"));
    }
    if (!request.data().empty() || request.write_offset() != 0) {
      MD_RETURN_IF_ERROR(appender.Append(request.write_offset(), request.mutable_data()));
    }
    if (request.finish_write()) {
      MD_RETURN_IF_ERROR(appender.Drain());
      MD_RETURN_IF_ERROR(blobs_->Finish(hex, size));
      health_->Restored(hex);
      response->set_committed_size(size);
      response->set_digest(digest);
      return absl::OkStatus();
    }
  } while (reader->Read(&request));
  // The client closed without finishing: keep what was committed so it can resume.
  MD_RETURN_IF_ERROR(appender.Drain());
  MD_ASSIGN_OR_RETURN(int64_t committed, blobs_->UploadOffset(hex, size));
  response->set_committed_size(committed);
  return absl::OkStatus();
}

absl::Status RegistryServiceImpl::DoWriteSession(
    grpc::ServerReaderInterface<v1::WriteArtifactRequest>* reader,
    v1::WriteArtifactRequest& request, v1::WriteArtifactResponse* response) {
  const std::string id = request.upload_id();
  MD_RETURN_IF_ERROR(ValidateUploadId("upload_id", id));
  const int64_t declared_size = request.size_bytes();
  MD_RETURN_IF_ERROR(storage::ValidateDeclaredSize(declared_size));
  // The next message is received while the store writes and hashes this one.
  storage::BackgroundAppender appender([&](int64_t offset, absl::string_view data) {
    return blobs_->AppendToSession(id, declared_size, offset, data);
  });
  // An error of an earlier message's append comes first, as it would have inline.
  auto fail = [&appender](absl::Status status) {
    absl::Status earlier = appender.Drain();
    return earlier.ok() ? status : earlier;
  };
  do {
    if (!request.upload_id().empty() && request.upload_id() != id) {
      return fail(InvalidArgument("upload_id", "UPLOAD_ID_CHANGED",
                                  "upload_id must be the same in every message of an upload"));
    }
    if (request.write_offset() < 0) {
      return fail(InvalidArgument("write_offset", "INVALID_OFFSET", "write_offset must be >= 0"));
    }
    if (!request.finish_write()) {
      if (!request.digest().empty()) {
        // Accepting it early would suggest it is checked early; it can only be checked
        // against all the bytes.
        return fail(InvalidArgument("digest", "DIGEST_BEFORE_FINISH",
                                    "in an upload session, digest is sent with finish_write only"));
      }
      if (!request.data().empty() || request.write_offset() != 0) {
        MD_RETURN_IF_ERROR(appender.Append(request.write_offset(), request.mutable_data()));
      }
      continue;
    }
    MD_RETURN_IF_ERROR(appender.Drain());
    // The last message: its bytes count only with the digest that vouches for them.
    if (request.digest().empty()) {
      return InvalidArgument("digest", "MISSING_DIGEST",
                             "finish_write in an upload session must carry the digest the "
                             "client computed over the bytes it sent");
    }
    MD_ASSIGN_OR_RETURN(std::string hex, ParseDigest("digest", request.digest()));
    MD_ASSIGN_OR_RETURN(storage::UploadSessionState state, blobs_->QuerySession(id));
    // A finished session answers a repeated finish (its first answer may have been lost)
    // from its record, without taking more bytes.
    if (!state.finished()) {
      if (state.committed_size == 0 && request.write_offset() == 0 && request.data().empty()) {
        return InvalidArgument("data", "EMPTY_UPLOAD",
                               "an upload session needs at least 1 byte of data before "
                               "finish_write");
      }
      MD_RETURN_IF_ERROR(
          blobs_->AppendToSession(id, declared_size, request.write_offset(), request.data()));
    }
    MD_ASSIGN_OR_RETURN(int64_t size, blobs_->FinishSession(id, declared_size, hex));
    health_->Restored(hex);
    response->set_committed_size(size);
    response->set_digest(FormatDigest(hex));
    return absl::OkStatus();
  } while (reader->Read(&request));
  // The client closed without finishing: what was committed stays for it to resume.
  MD_RETURN_IF_ERROR(appender.Drain());
  MD_ASSIGN_OR_RETURN(storage::UploadSessionState state, blobs_->QuerySession(id));
  response->set_committed_size(state.committed_size);
  return absl::OkStatus();
}

grpc::Status RegistryServiceImpl::WriteArtifact(
    grpc::ServerContext* context, grpc::ServerReader<v1::WriteArtifactRequest>* reader,
    v1::WriteArtifactResponse* response) {
  return Admin(auth_, context, __func__, [&](const Caller& caller) -> absl::Status {
    if (uploads_ == nullptr) return DoWriteArtifact(reader, response);
    MD_ASSIGN_OR_RETURN(std::unique_ptr<UploadLimiter::Slot> slot,
                        uploads_->Admit(context, caller.name));
    TouchingReader touching(reader, slot.get());
    return DoWriteArtifact(&touching, response);
  });
}

grpc::Status RegistryServiceImpl::QueryUpload(grpc::ServerContext* context,
                                              const v1::QueryUploadRequest* request,
                                              v1::QueryUploadResponse* response) {
  return Admin(auth_, context, __func__, [&]() -> absl::Status {
    if (!request->upload_id().empty()) {
      if (!request->digest().empty()) {
        return InvalidArgument("upload_id", "TWO_TARGETS",
                               "set digest (an upload by digest) or upload_id (an upload "
                               "session), not both");
      }
      MD_ASSIGN_OR_RETURN(storage::UploadSessionState state,
                          blobs_->QuerySession(request->upload_id()));
      response->set_committed_size(state.committed_size);
      response->set_complete(state.finished());
      if (state.finished()) response->set_digest(FormatDigest(state.digest_hex));
      return absl::OkStatus();
    }
    MD_ASSIGN_OR_RETURN(std::string hex, ParseDigest("digest", request->digest()));
    MD_ASSIGN_OR_RETURN(int64_t size, catalog_->DeclaredSize(request->digest()));
    MD_ASSIGN_OR_RETURN(int64_t committed, blobs_->UploadOffset(hex, size));
    response->set_committed_size(committed);
    response->set_complete(blobs_->Contains(hex));
    if (response->complete()) response->set_digest(request->digest());
    return absl::OkStatus();
  });
}

grpc::Status RegistryServiceImpl::PublishVersion(grpc::ServerContext* context,
                                                 const v1::PublishVersionRequest* request,
                                                 v1::Version* response) {
  return Admin(auth_, context, __func__, [&](const Caller& caller) -> absl::Status {
    VersionName name;
    MD_RETURN_IF_ERROR(RequestCheck().VersionName("name", request->name(), &name).status());
    // The model checks run before the catalog's transaction, which holds the catalog while it
    // runs; what they found stays right because a draft's artifacts and a digest's bytes never
    // change. A blob that was not stored yet when they ran was not checked, so it counts as not
    // uploaded even if an upload finished it since (the client publishes again).
    std::map<std::string, v1::ModelInfo> model_infos;
    std::set<std::string> unchecked;
    if (model_checks_.has_value()) {
      MD_ASSIGN_OR_RETURN(v1::Version draft, catalog_->GetVersion(name));
      if (draft.state() == v1::Version::DRAFT) {
        MD_ASSIGN_OR_RETURN(model_infos, CheckVersionArtifacts(draft, *blobs_, *model_checks_));
        for (const v1::Artifact& a : draft.artifacts()) {
          if (model_check::HasCheck(a.format()) && model_infos.count(a.digest()) == 0) {
            unchecked.insert(a.digest());
          }
        }
      }
    }
    // Checked against the newest root; a root uploaded meanwhile applies to the next publish.
    MD_ASSIGN_OR_RETURN(std::string release,
                        ReleaseToPublish(keys_->NewestRoot().root, *request, *blobs_, *catalog_));
    auto is_uploaded = [this, &unchecked](const std::string& digest) {
      auto hex = ParseDigest("digest", digest);
      return hex.ok() && unchecked.count(digest) == 0 && blobs_->Contains(*hex);
    };
    MD_ASSIGN_OR_RETURN(
        *response, catalog_->PublishVersion(name, is_uploaded, caller.name, model_infos, release));
    MD_RETURN_IF_ERROR(FillStatus(response));
    Resign();
    if (replicator_ != nullptr) replicator_->Wake();
    return absl::OkStatus();
  });
}

grpc::Status RegistryServiceImpl::YankVersion(grpc::ServerContext* context,
                                              const v1::YankVersionRequest* request,
                                              v1::Version* response) {
  return Admin(auth_, context, __func__, [&](const Caller& caller) -> absl::Status {
    VersionName name;
    MD_RETURN_IF_ERROR(RequestCheck()
                           .VersionName("name", request->name(), &name)
                           .Text("reason", request->reason())
                           .status());
    MD_ASSIGN_OR_RETURN(*response, catalog_->YankVersion(name, request->reason(), caller.name));
    MD_RETURN_IF_ERROR(FillStatus(response));
    Resign();
    return absl::OkStatus();
  });
}

grpc::Status RegistryServiceImpl::SetTier(grpc::ServerContext* context,
                                          const v1::SetTierRequest* request,
                                          v1::TierBinding* response) {
  return Admin(auth_, context, __func__, [&](const Caller& caller) -> absl::Status {
    std::string channel;
    VersionName version;
    MD_RETURN_IF_ERROR(RequestCheck()
                           .TierChannel(request->tier(), request->channel(), &channel)
                           .VersionName("version", request->version(), &version)
                           .status());
    MD_ASSIGN_OR_RETURN(*response,
                        catalog_->SetTier(request->tier(), channel, version, caller.name));
    Resign();
    return absl::OkStatus();
  });
}

grpc::Status RegistryServiceImpl::ListTiers(grpc::ServerContext* context,
                                            const v1::ListTiersRequest* request,
                                            v1::ListTiersResponse* response) {
  return Admin(auth_, context, __func__, [&]() -> absl::Status {
    MD_RETURN_IF_ERROR(RequestCheck().PageSize(request->page_size()).status());
    MD_ASSIGN_OR_RETURN(auto page,
                        catalog_->ListTiers(request->page_size(), request->page_token()));
    for (auto& t : page.items) *response->add_tiers() = std::move(t);
    response->set_next_page_token(page.next_page_token);
    return absl::OkStatus();
  });
}

grpc::Status RegistryServiceImpl::StartRollout(grpc::ServerContext* context,
                                               const v1::StartRolloutRequest* request,
                                               v1::Rollout* response) {
  return Admin(auth_, context, __func__, [&](const Caller& caller) -> absl::Status {
    std::string channel;
    VersionName to;
    MD_RETURN_IF_ERROR(RequestCheck()
                           .TierChannel(request->tier(), request->channel(), &channel)
                           .VersionName("to_version", request->to_version(), &to)
                           .BasisPoints(request->basis_points())
                           .status());
    MD_RETURN_IF_ERROR(CheckRolloutPolicy(request->policy(), request->basis_points()));
    storage::RolloutNote note;
    if (autopilot_ != nullptr) {
      // From is what the tier resolves to now; the catalog checks it again in its transaction.
      absl::StatusOr<v1::TierBinding> binding = catalog_->GetTier(request->tier(), channel);
      note = autopilot_->NoteFor(request->tier(), channel, to.ToString(),
                                 binding.ok() ? binding->version() : "");
    }
    MD_ASSIGN_OR_RETURN(
        *response, catalog_->StartRollout(request->tier(), channel, to, request->basis_points(),
                                          caller.name, request->policy(), note));
    Resign();
    return absl::OkStatus();
  });
}

grpc::Status RegistryServiceImpl::AdvanceRollout(grpc::ServerContext* context,
                                                 const v1::AdvanceRolloutRequest* request,
                                                 v1::Rollout* response) {
  return Admin(auth_, context, __func__, [&](const Caller& caller) -> absl::Status {
    std::string channel;
    MD_RETURN_IF_ERROR(RequestCheck()
                           .TierChannel(request->tier(), request->channel(), &channel)
                           .BasisPoints(request->basis_points())
                           .status());
    MD_ASSIGN_OR_RETURN(
        *response,
        catalog_->AdvanceRollout(request->tier(), channel, request->basis_points(), caller.name,
                                 RolloutNoteNow(*catalog_, autopilot_, request->tier(), channel)));
    Resign();
    return absl::OkStatus();
  });
}

template <typename Change>
grpc::Status RegistryServiceImpl::RolloutChange(grpc::ServerContext* context,
                                                absl::string_view method,
                                                const v1::RolloutRequest& request,
                                                v1::Rollout* response, Change change) {
  return Admin(auth_, context, method, [&](const Caller& caller) -> absl::Status {
    std::string channel;
    MD_RETURN_IF_ERROR(
        RequestCheck().TierChannel(request.tier(), request.channel(), &channel).status());
    MD_ASSIGN_OR_RETURN(*response,
                        change(request.tier(), channel, caller.name,
                               RolloutNoteNow(*catalog_, autopilot_, request.tier(), channel)));
    Resign();
    return absl::OkStatus();
  });
}

grpc::Status RegistryServiceImpl::PauseRollout(grpc::ServerContext* context,
                                               const v1::RolloutRequest* request,
                                               v1::Rollout* response) {
  return RolloutChange(context, __func__, *request, response,
                       [this](auto&&... args) { return catalog_->PauseRollout(args...); });
}

grpc::Status RegistryServiceImpl::ResumeRollout(grpc::ServerContext* context,
                                                const v1::RolloutRequest* request,
                                                v1::Rollout* response) {
  return RolloutChange(context, __func__, *request, response,
                       [this](auto&&... args) { return catalog_->ResumeRollout(args...); });
}

grpc::Status RegistryServiceImpl::CompleteRollout(grpc::ServerContext* context,
                                                  const v1::RolloutRequest* request,
                                                  v1::Rollout* response) {
  return RolloutChange(context, __func__, *request, response,
                       [this](auto&&... args) { return catalog_->CompleteRollout(args...); });
}

grpc::Status RegistryServiceImpl::AbortRollout(grpc::ServerContext* context,
                                               const v1::RolloutRequest* request,
                                               v1::Rollout* response) {
  return RolloutChange(context, __func__, *request, response,
                       [this](auto&&... args) { return catalog_->AbortRollout(args...); });
}

grpc::Status RegistryServiceImpl::ListRollouts(grpc::ServerContext* context,
                                               const v1::ListRolloutsRequest* request,
                                               v1::ListRolloutsResponse* response) {
  return Admin(auth_, context, __func__, [&]() -> absl::Status {
    MD_RETURN_IF_ERROR(RequestCheck()
                           .OptionalId("tier", request->tier())
                           .That(request->channel().empty() || !request->tier().empty(), "channel",
                                 "CHANNEL_WITHOUT_TIER", "channel filters only together with tier")
                           .OptionalId("channel", request->channel())
                           .PageSize(request->page_size())
                           .status());
    MD_ASSIGN_OR_RETURN(
        auto page, catalog_->ListRollouts(request->tier(), request->channel(), request->page_size(),
                                          request->page_token()));
    for (auto& r : page.items) *response->add_rollouts() = std::move(r);
    response->set_next_page_token(page.next_page_token);
    return absl::OkStatus();
  });
}

grpc::Status RegistryServiceImpl::GetRolloutStatus(grpc::ServerContext* context,
                                                   const v1::RolloutRequest* request,
                                                   v1::RolloutStatus* response) {
  return Admin(auth_, context, __func__, [&]() {
    return services::GetRolloutStatus(*catalog_, autopilot_, *request, response);
  });
}

grpc::Status RegistryServiceImpl::PinDevices(grpc::ServerContext* context,
                                             const v1::PinDevicesRequest* request,
                                             v1::PinDevicesResponse* response) {
  return Admin(auth_, context, __func__, [&](const Caller& caller) -> absl::Status {
    std::string channel;
    VersionName version;
    MD_RETURN_IF_ERROR(RequestCheck()
                           .TierChannel(request->tier(), request->channel(), &channel)
                           .DeviceIds(request->device_ids())
                           .VersionName("version", request->version(), &version)
                           .status());
    std::vector<std::string> ids(request->device_ids().begin(), request->device_ids().end());
    MD_ASSIGN_OR_RETURN(auto change,
                        catalog_->PinDevices(request->tier(), channel, ids, version, caller.name));
    response->set_changed(change.changed);
    response->set_sequence(change.sequence);
    Resign();
    return absl::OkStatus();
  });
}

grpc::Status RegistryServiceImpl::UnpinDevices(grpc::ServerContext* context,
                                               const v1::UnpinDevicesRequest* request,
                                               v1::PinDevicesResponse* response) {
  return Admin(auth_, context, __func__, [&](const Caller& caller) -> absl::Status {
    std::string channel;
    MD_RETURN_IF_ERROR(RequestCheck()
                           .TierChannel(request->tier(), request->channel(), &channel)
                           .DeviceIds(request->device_ids())
                           .status());
    std::vector<std::string> ids(request->device_ids().begin(), request->device_ids().end());
    MD_ASSIGN_OR_RETURN(auto change,
                        catalog_->UnpinDevices(request->tier(), channel, ids, caller.name));
    response->set_changed(change.changed);
    response->set_sequence(change.sequence);
    if (change.changed > 0) Resign();
    return absl::OkStatus();
  });
}

grpc::Status RegistryServiceImpl::ListPins(grpc::ServerContext* context,
                                           const v1::ListPinsRequest* request,
                                           v1::ListPinsResponse* response) {
  return Admin(auth_, context, __func__, [&]() -> absl::Status {
    MD_RETURN_IF_ERROR(RequestCheck().PageSize(request->page_size()).status());
    MD_ASSIGN_OR_RETURN(auto page, catalog_->ListPins(request->page_size(), request->page_token()));
    for (auto& p : page.items) *response->add_pins() = std::move(p);
    response->set_next_page_token(page.next_page_token);
    return absl::OkStatus();
  });
}

grpc::Status RegistryServiceImpl::ListAuditLog(grpc::ServerContext* context,
                                               const v1::ListAuditLogRequest* request,
                                               v1::ListAuditLogResponse* response) {
  return Admin(auth_, context, __func__, [&]() -> absl::Status {
    MD_RETURN_IF_ERROR(RequestCheck().PageSize(request->page_size()).status());
    MD_ASSIGN_OR_RETURN(auto page,
                        catalog_->ListAuditLog(request->page_size(), request->page_token()));
    for (auto& e : page.items) *response->add_entries() = std::move(e);
    response->set_next_page_token(page.next_page_token);
    return absl::OkStatus();
  });
}

template <typename Change>
grpc::Status RegistryServiceImpl::KeyChange(grpc::ServerContext* context, absl::string_view method,
                                            v1::SignedTrustRoot* response, Change change) {
  return Admin(auth_, context, method, [&](const Caller& caller) -> absl::Status {
    MD_ASSIGN_OR_RETURN(KeyRing::VerifiedRoot root, change(caller.name));
    // The catalog records the new root in its audit log, with the caller as actor, in the same
    // transaction.
    *response = root.signed_root;
    Resign();
    return absl::OkStatus();
  });
}

grpc::Status RegistryServiceImpl::AddSigningKey(grpc::ServerContext* context,
                                                const v1::AddSigningKeyRequest* request,
                                                v1::SignedTrustRoot* response) {
  return KeyChange(context, __func__, response, [&](absl::string_view actor) {
    return keys_->AddKey(request->threshold(), actor);
  });
}

grpc::Status RegistryServiceImpl::RevokeSigningKey(grpc::ServerContext* context,
                                                   const v1::RevokeSigningKeyRequest* request,
                                                   v1::SignedTrustRoot* response) {
  return KeyChange(context, __func__, response, [&](absl::string_view actor) {
    return keys_->RevokeKey(request->key_id(), request->threshold(), actor);
  });
}

grpc::Status RegistryServiceImpl::RotateSigningKeys(grpc::ServerContext* context,
                                                    const v1::RotateSigningKeysRequest* request,
                                                    v1::SignedTrustRoot* response) {
  return KeyChange(context, __func__, response, [&](absl::string_view actor) {
    return keys_->RotateKeys(request->count(), request->threshold(), actor);
  });
}

grpc::Status RegistryServiceImpl::UploadTrustRoot(grpc::ServerContext* context,
                                                  const v1::UploadTrustRootRequest* request,
                                                  v1::SignedTrustRoot* response) {
  return KeyChange(context, __func__, response, [&](absl::string_view actor) {
    return keys_->UploadRoot(request->root(), actor);
  });
}

grpc::Status RegistryServiceImpl::AttachRelease(grpc::ServerContext* context,
                                                const v1::AttachReleaseRequest* request,
                                                v1::Version* response) {
  return Admin(auth_, context, __func__, [&](const Caller& caller) -> absl::Status {
    MD_ASSIGN_OR_RETURN(*response, services::AttachRelease(keys_->NewestRoot().root, *request,
                                                           caller.name, *blobs_, *catalog_));
    MD_RETURN_IF_ERROR(FillStatus(response));
    Resign();
    return absl::OkStatus();
  });
}

namespace {

v1::ScrubBlobsResponse::Outcome ToProto(ScrubOutcome outcome) {
  switch (outcome) {
    case ScrubOutcome::kOk:
      return v1::ScrubBlobsResponse::OK;
    case ScrubOutcome::kDamaged:
      return v1::ScrubBlobsResponse::DAMAGED;
    case ScrubOutcome::kMissing:
      return v1::ScrubBlobsResponse::MISSING;
    case ScrubOutcome::kRestored:
      return v1::ScrubBlobsResponse::RESTORED;
  }
  return v1::ScrubBlobsResponse::OUTCOME_UNSPECIFIED;
}

}  // namespace

grpc::Status RegistryServiceImpl::ScrubBlobs(grpc::ServerContext* context,
                                             const v1::ScrubBlobsRequest* request,
                                             grpc::ServerWriter<v1::ScrubBlobsResponse>* writer) {
  return Admin(auth_, context, __func__, [&]() -> absl::Status {
    // A client that cancels (or hangs up: a write fails) stops the pass; so does the server's
    // shutdown, which cancels the calls still running when its deadline passes.
    bool gone = false;
    ScrubOptions options;
    options.bytes_per_second = request->bytes_per_second();
    options.cancelled = [&] { return gone || context->IsCancelled(); };
    options.on_blob = [&](const ScrubProgress& p) {
      v1::ScrubBlobsResponse response;
      response.set_digest(p.digest);
      response.set_size_bytes(p.size_bytes);
      response.set_outcome(ToProto(p.outcome));
      response.set_details(p.details);
      response.set_blobs_done(p.blobs_done);
      response.set_blobs_total(p.blobs_total);
      response.set_bytes_done(p.bytes_done);
      response.set_bytes_total(p.bytes_total);
      if (!writer->Write(response)) gone = true;
    };
    return scrubber_->Run(options).status();
  });
}

grpc::Status RegistryServiceImpl::ListOrigins(grpc::ServerContext* context,
                                              const v1::ListOriginsRequest* /*request*/,
                                              v1::ListOriginsResponse* response) {
  return Admin(auth_, context, __func__, [&] {
    MD_RETURN_IF_ERROR(services::ListOrigins(origins_, response));
    return services::FillBlobStoreUsage(*blobs_, *catalog_, response->mutable_blob_store());
  });
}

grpc::Status RegistryServiceImpl::CheckOrigin(grpc::ServerContext* context,
                                              const v1::CheckOriginRequest* request,
                                              v1::CheckOriginResponse* response) {
  return Admin(auth_, context, __func__,
               [&] { return services::CheckOrigin(origins_, *request, response); });
}

grpc::Status RegistryServiceImpl::ImportArtifact(
    grpc::ServerContext* context, const v1::ImportArtifactRequest* request,
    grpc::ServerWriter<v1::ImportArtifactProgress>* writer) {
  return Admin(auth_, context, __func__, [&] {
    return services::ImportArtifact(
        origins_, blobs_, *request,
        [writer](const v1::ImportArtifactProgress& p) { return writer->Write(p); },
        [context] { return context->IsCancelled(); });
  });
}

grpc::Status RegistryServiceImpl::CreateCredential(grpc::ServerContext* context,
                                                   const v1::CreateCredentialRequest* request,
                                                   v1::CreateCredentialResponse* response) {
  return Admin(auth_, context, __func__, [&](const Caller& caller) {
    return services::CreateCredential(*catalog_, caller, *request, response);
  });
}

grpc::Status RegistryServiceImpl::ListCredentials(grpc::ServerContext* context,
                                                  const v1::ListCredentialsRequest* request,
                                                  v1::ListCredentialsResponse* response) {
  return Admin(auth_, context, __func__,
               [&] { return services::ListCredentials(*catalog_, *request, response); });
}

grpc::Status RegistryServiceImpl::RevokeCredential(grpc::ServerContext* context,
                                                   const v1::RevokeCredentialRequest* request,
                                                   v1::Credential* response) {
  return Admin(auth_, context, __func__, [&](const Caller& caller) {
    return services::RevokeCredential(*catalog_, caller, *request, response);
  });
}

}  // namespace modeldist::services
