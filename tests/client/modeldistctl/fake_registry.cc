#include "tests/client/modeldistctl/fake_registry.h"

#include <string>

#include "absl/strings/str_cat.h"
#include "common/digest.h"

namespace modeldist::ctl {

grpc::Status FakeRegistry::CreateModel(grpc::ServerContext* context,
                                       const v1::CreateModelRequest* request, v1::Model* response) {
  std::lock_guard<std::mutex> lock(mu_);
  if (!Authorized(context)) return Unauthenticated();
  std::string name = absl::StrCat("models/", request->model_id());
  if (!models_.insert(name).second) return grpc::Status(grpc::ALREADY_EXISTS, name);
  response->set_name(name);
  return grpc::Status::OK;
}

grpc::Status FakeRegistry::CreateVersion(grpc::ServerContext* context,
                                         const v1::CreateVersionRequest* request,
                                         v1::Version* response) {
  std::lock_guard<std::mutex> lock(mu_);
  if (!Authorized(context)) return Unauthenticated();
  if (models_.count(request->parent()) == 0) return grpc::Status(grpc::NOT_FOUND, "model");
  std::string name = absl::StrCat(request->parent(), "/versions/", request->version_id());
  if (versions_.count(name) > 0) return grpc::Status(grpc::ALREADY_EXISTS, name);
  v1::Version& v = versions_[name];
  v.set_name(name);
  v.set_state(v1::Version::DRAFT);
  *v.mutable_artifacts() = request->artifacts();
  for (const v1::Artifact& a : request->artifacts()) blobs_[a.digest()].size = a.size_bytes();
  *response = v;
  return grpc::Status::OK;
}

grpc::Status FakeRegistry::GetVersion(grpc::ServerContext* context,
                                      const v1::GetVersionRequest* request, v1::Version* response) {
  std::lock_guard<std::mutex> lock(mu_);
  if (!Authorized(context)) return Unauthenticated();
  auto it = versions_.find(request->name());
  if (it == versions_.end()) return grpc::Status(grpc::NOT_FOUND, request->name());
  *response = it->second;
  for (v1::Artifact& a : *response->mutable_artifacts()) {
    a.set_uploaded(blobs_[a.digest()].complete);
  }
  return grpc::Status::OK;
}

grpc::Status FakeRegistry::QueryUpload(grpc::ServerContext* context,
                                       const v1::QueryUploadRequest* request,
                                       v1::QueryUploadResponse* response) {
  std::lock_guard<std::mutex> lock(mu_);
  if (!Authorized(context)) return Unauthenticated();
  if (failing_queries_ > 0) {
    --failing_queries_;
    return grpc::Status(grpc::UNAVAILABLE, "injected");
  }
  if (request->upload_id().empty()) return grpc::Status(grpc::INVALID_ARGUMENT, "upload_id");
  const Session& session = sessions_[request->upload_id()];
  if (!session.digest.empty()) {
    response->set_committed_size(blobs_[session.digest].size);
    response->set_complete(true);
    response->set_digest(session.digest);
  } else {
    response->set_committed_size(static_cast<int64_t>(session.data.size()));
  }
  return grpc::Status::OK;
}

grpc::Status FakeRegistry::WriteArtifact(grpc::ServerContext* context,
                                         grpc::ServerReader<v1::WriteArtifactRequest>* reader,
                                         v1::WriteArtifactResponse* response) {
  std::lock_guard<std::mutex> lock(mu_);
  if (!Authorized(context)) return Unauthenticated();
  ++write_streams_;
  v1::WriteArtifactRequest request;
  std::string id;
  int64_t declared_size = 0;
  int64_t drop_after = drop_after_;
  drop_after_ = -1;
  int64_t received = 0;
  while (reader->Read(&request)) {
    if (id.empty()) {
      id = request.upload_id();
      declared_size = request.size_bytes();
      if (id.empty()) return grpc::Status(grpc::INVALID_ARGUMENT, "upload_id is required");
    }
    Session& session = sessions_[id];
    if (!session.digest.empty()) {
      if (request.finish_write() && request.digest() == session.digest) {
        response->set_committed_size(blobs_[session.digest].size);
        return grpc::Status::OK;
      }
      return grpc::Status(grpc::ALREADY_EXISTS, "session finished");
    }
    if (request.write_offset() != static_cast<int64_t>(session.data.size())) {
      return grpc::Status(grpc::INVALID_ARGUMENT, "write_offset is not the committed size");
    }
    std::string data = request.data();
    if (corrupt_next_byte_ && !data.empty()) {
      data[0] ^= 0x01;
      corrupt_next_byte_ = false;
    }
    session.data += data;
    received += static_cast<int64_t>(data.size());
    bytes_received_ += static_cast<int64_t>(data.size());
    response->set_committed_size(static_cast<int64_t>(session.data.size()));
    if (request.finish_write()) {
      const int64_t size = static_cast<int64_t>(session.data.size());
      if ((declared_size > 0 && size != declared_size) ||
          FormatDigest(Sha256::HexOf(session.data)) != request.digest()) {
        session = Session();
        return grpc::Status(grpc::DATA_LOSS, "digest mismatch");
      }
      Blob& blob = blobs_[request.digest()];
      blob.data = std::move(session.data);
      blob.size = size;
      blob.complete = true;
      session = Session{.data = "", .digest = request.digest()};
      response->set_digest(request.digest());
      return grpc::Status::OK;
    }
    if (drop_after >= 0 && received >= drop_after) {
      return grpc::Status(grpc::UNAVAILABLE, "injected drop");
    }
  }
  return grpc::Status::OK;
}

grpc::Status FakeRegistry::PublishVersion(grpc::ServerContext* context,
                                          const v1::PublishVersionRequest* request,
                                          v1::Version* response) {
  std::lock_guard<std::mutex> lock(mu_);
  if (!Authorized(context)) return Unauthenticated();
  auto it = versions_.find(request->name());
  if (it == versions_.end()) return grpc::Status(grpc::NOT_FOUND, request->name());
  if (it->second.state() != v1::Version::DRAFT) {
    return grpc::Status(grpc::FAILED_PRECONDITION, "not a draft");
  }
  for (auto& a : *it->second.mutable_artifacts()) {
    if (!blobs_[a.digest()].complete) {
      return grpc::Status(grpc::FAILED_PRECONDITION, "not uploaded");
    }
    a.set_uploaded(true);
  }
  it->second.set_state(v1::Version::PUBLISHED);
  *response = it->second;
  return grpc::Status::OK;
}

grpc::Status FakeRegistry::SetTier(grpc::ServerContext* context, const v1::SetTierRequest* request,
                                   v1::TierBinding* response) {
  std::lock_guard<std::mutex> lock(mu_);
  if (!Authorized(context)) return Unauthenticated();
  auto it = versions_.find(request->version());
  if (it == versions_.end()) return grpc::Status(grpc::NOT_FOUND, request->version());
  if (it->second.state() != v1::Version::PUBLISHED) {
    return grpc::Status(grpc::FAILED_PRECONDITION, "not published");
  }
  response->set_tier(request->tier());
  response->set_channel(request->channel().empty() ? "stable" : request->channel());
  response->set_version(request->version());
  response->set_sequence(++sequence_);
  bound_[{response->tier(), response->channel()}] = *response;
  ++set_tier_calls_;
  return grpc::Status::OK;
}

grpc::Status FakeRegistry::ListTiers(grpc::ServerContext* context, const v1::ListTiersRequest*,
                                     v1::ListTiersResponse* response) {
  std::lock_guard<std::mutex> lock(mu_);
  if (!Authorized(context)) return Unauthenticated();
  for (const auto& [key, binding] : bound_) *response->add_tiers() = binding;
  return grpc::Status::OK;
}

grpc::Status FakeRegistry::StartRollout(grpc::ServerContext* context,
                                        const v1::StartRolloutRequest* request,
                                        v1::Rollout* response) {
  std::lock_guard<std::mutex> lock(mu_);
  if (!Authorized(context)) return Unauthenticated();
  if (request->basis_points() < 0 || request->basis_points() > 10000) {
    return grpc::Status(grpc::INVALID_ARGUMENT, "basis_points");
  }
  const std::string channel = request->channel().empty() ? "stable" : request->channel();
  if (Open(request->tier(), channel) != nullptr) {
    return grpc::Status(grpc::FAILED_PRECONDITION, "a rollout is active");
  }
  v1::Rollout& r = rollouts_.emplace_back();
  r.set_id(absl::StrCat("r-", rollouts_.size()));
  r.set_tier(request->tier());
  r.set_channel(channel);
  r.set_from_version(bound_[{request->tier(), channel}].version());
  r.set_to_version(request->to_version());
  r.set_basis_points(request->basis_points());
  r.set_state(v1::Rollout::ACTIVE);
  r.mutable_update_time()->set_seconds(1767225600 + static_cast<int64_t>(rollouts_.size()));
  Audit(context, "StartRollout", r.tier(), r.channel(), absl::StrCat(r.basis_points(), " bp"));
  *response = r;
  return grpc::Status::OK;
}

grpc::Status FakeRegistry::AdvanceRollout(grpc::ServerContext* context,
                                          const v1::AdvanceRolloutRequest* request,
                                          v1::Rollout* response) {
  std::lock_guard<std::mutex> lock(mu_);
  if (!Authorized(context)) return Unauthenticated();
  v1::Rollout* r =
      Open(request->tier(), request->channel().empty() ? "stable" : request->channel());
  if (r == nullptr) return grpc::Status(grpc::NOT_FOUND, "no rollout");
  if (request->basis_points() < r->basis_points() || request->basis_points() > 10000) {
    return grpc::Status(grpc::INVALID_ARGUMENT, "lower share than now");
  }
  r->set_basis_points(request->basis_points());
  Audit(context, "AdvanceRollout", r->tier(), r->channel(), "");
  *response = *r;
  return grpc::Status::OK;
}

grpc::Status FakeRegistry::PauseRollout(grpc::ServerContext* context,
                                        const v1::RolloutRequest* request, v1::Rollout* response) {
  return EndOrChange(context, *request, v1::Rollout::PAUSED, response);
}

grpc::Status FakeRegistry::ResumeRollout(grpc::ServerContext* context,
                                         const v1::RolloutRequest* request, v1::Rollout* response) {
  return EndOrChange(context, *request, v1::Rollout::ACTIVE, response);
}

grpc::Status FakeRegistry::CompleteRollout(grpc::ServerContext* context,
                                           const v1::RolloutRequest* request,
                                           v1::Rollout* response) {
  return EndOrChange(context, *request, v1::Rollout::COMPLETED, response);
}

grpc::Status FakeRegistry::AbortRollout(grpc::ServerContext* context,
                                        const v1::RolloutRequest* request, v1::Rollout* response) {
  return EndOrChange(context, *request, v1::Rollout::ABORTED, response);
}

grpc::Status FakeRegistry::ListRollouts(grpc::ServerContext* context,
                                        const v1::ListRolloutsRequest* request,
                                        v1::ListRolloutsResponse* response) {
  std::lock_guard<std::mutex> lock(mu_);
  if (!Authorized(context)) return Unauthenticated();
  std::vector<const v1::Rollout*> matching;
  for (auto it = rollouts_.rbegin(); it != rollouts_.rend(); ++it) {
    if (!request->tier().empty() && it->tier() != request->tier()) continue;
    if (!request->channel().empty() && it->channel() != request->channel()) continue;
    matching.push_back(&*it);
  }
  size_t begin = request->page_token().empty() ? 0 : std::stoul(request->page_token());
  for (size_t i = begin; i < matching.size() && i < begin + 2; ++i) {
    *response->add_rollouts() = *matching[i];
  }
  if (begin + 2 < matching.size()) response->set_next_page_token(std::to_string(begin + 2));
  return grpc::Status::OK;
}

grpc::Status FakeRegistry::PinDevices(grpc::ServerContext* context,
                                      const v1::PinDevicesRequest* request,
                                      v1::PinDevicesResponse* response) {
  std::lock_guard<std::mutex> lock(mu_);
  if (!Authorized(context)) return Unauthenticated();
  pin_batches_.push_back(request->device_ids_size());
  if (static_cast<int>(pin_batches_.size()) == fail_pin_call_) {
    return grpc::Status(grpc::UNAVAILABLE, "injected");
  }
  if (request->device_ids_size() < 1 || request->device_ids_size() > 1000) {
    return grpc::Status(grpc::INVALID_ARGUMENT, "1 to 1000 device_ids");
  }
  const std::string channel = request->channel().empty() ? "stable" : request->channel();
  for (const std::string& id : request->device_ids()) {
    v1::DevicePin& pin = pins_[absl::StrCat(request->tier(), "/", channel, "/", id)];
    pin.set_tier(request->tier());
    pin.set_channel(channel);
    pin.set_device_id(id);
    pin.set_version(request->version());
  }
  response->set_changed(request->device_ids_size());
  response->set_sequence(++sequence_);
  Audit(context, "PinDevices", request->tier(), channel,
        absl::StrCat(request->device_ids_size(), " devices"));
  return grpc::Status::OK;
}

grpc::Status FakeRegistry::UnpinDevices(grpc::ServerContext* context,
                                        const v1::UnpinDevicesRequest* request,
                                        v1::PinDevicesResponse* response) {
  std::lock_guard<std::mutex> lock(mu_);
  if (!Authorized(context)) return Unauthenticated();
  const std::string channel = request->channel().empty() ? "stable" : request->channel();
  int changed = 0;
  for (const std::string& id : request->device_ids()) {
    changed += static_cast<int>(pins_.erase(absl::StrCat(request->tier(), "/", channel, "/", id)));
  }
  response->set_changed(changed);
  response->set_sequence(++sequence_);
  return grpc::Status::OK;
}

grpc::Status FakeRegistry::ListPins(grpc::ServerContext* context,
                                    const v1::ListPinsRequest* request,
                                    v1::ListPinsResponse* response) {
  std::lock_guard<std::mutex> lock(mu_);
  if (!Authorized(context)) return Unauthenticated();
  for (const auto& [key, pin] : pins_) *response->add_pins() = pin;
  return grpc::Status::OK;
}

grpc::Status FakeRegistry::ListAuditLog(grpc::ServerContext* context,
                                        const v1::ListAuditLogRequest* request,
                                        v1::ListAuditLogResponse* response) {
  std::lock_guard<std::mutex> lock(mu_);
  if (!Authorized(context)) return Unauthenticated();
  audit_page_sizes_.push_back(request->page_size());
  const size_t page = request->page_size() == 0 ? 100 : request->page_size();
  size_t begin = request->page_token().empty() ? 0 : std::stoul(request->page_token());
  for (size_t i = begin; i < audit_.size() && i < begin + page; ++i) {
    *response->add_entries() = audit_[audit_.size() - 1 - i];
  }
  if (begin + page < audit_.size()) response->set_next_page_token(std::to_string(begin + page));
  return grpc::Status::OK;
}

grpc::Status FakeRegistry::AddSigningKey(grpc::ServerContext* context,
                                         const v1::AddSigningKeyRequest*,
                                         v1::SignedTrustRoot* response) {
  std::lock_guard<std::mutex> lock(mu_);
  if (!Authorized(context)) return Unauthenticated();
  *response = key_change_result_;
  return grpc::Status::OK;
}

grpc::Status FakeRegistry::RevokeSigningKey(grpc::ServerContext* context,
                                            const v1::RevokeSigningKeyRequest* request,
                                            v1::SignedTrustRoot* response) {
  std::lock_guard<std::mutex> lock(mu_);
  if (!Authorized(context)) return Unauthenticated();
  if (request->key_id() == "unknown") return grpc::Status(grpc::NOT_FOUND, "no such key");
  *response = key_change_result_;
  return grpc::Status::OK;
}

grpc::Status FakeRegistry::RotateSigningKeys(grpc::ServerContext* context,
                                             const v1::RotateSigningKeysRequest* request,
                                             v1::SignedTrustRoot* response) {
  std::lock_guard<std::mutex> lock(mu_);
  if (!Authorized(context)) return Unauthenticated();
  last_rotate_ = *request;
  *response = key_change_result_;
  return grpc::Status::OK;
}

v1::Rollout* FakeRegistry::Open(const std::string& tier, const std::string& channel) {
  for (v1::Rollout& r : rollouts_) {
    if (r.tier() == tier && r.channel() == channel &&
        (r.state() == v1::Rollout::ACTIVE || r.state() == v1::Rollout::PAUSED)) {
      return &r;
    }
  }
  return nullptr;
}

grpc::Status FakeRegistry::EndOrChange(grpc::ServerContext* context,
                                       const v1::RolloutRequest& request, v1::Rollout::State state,
                                       v1::Rollout* response) {
  std::lock_guard<std::mutex> lock(mu_);
  if (!Authorized(context)) return Unauthenticated();
  v1::Rollout* r = Open(request.tier(), request.channel().empty() ? "stable" : request.channel());
  if (r == nullptr) return grpc::Status(grpc::NOT_FOUND, "no rollout");
  r->set_state(state);
  Audit(context, v1::Rollout::State_Name(state), r->tier(), r->channel(), "");
  *response = *r;
  return grpc::Status::OK;
}

void FakeRegistry::Audit(grpc::ServerContext*, const std::string& action, const std::string& tier,
                         const std::string& channel, const std::string& details) {
  v1::AuditEntry& e = audit_.emplace_back();
  e.set_id(static_cast<int64_t>(audit_.size()));
  e.mutable_time()->set_seconds(1767225600 + e.id());
  e.set_actor(callers_.empty() ? "<none>" : callers_.back());
  e.set_action(action);
  e.set_resource(absl::StrCat("tiers/", tier, "/channels/", channel));
  e.set_details(details);
}

bool FakeRegistry::Authorized(grpc::ServerContext* context) {
  if (context->client_metadata().count("x-modeldist-actor") > 0) ++actor_headers_;
  auto [begin, end] = context->client_metadata().equal_range("authorization");
  std::string caller = "<none>";
  if (begin != end) {
    const std::string value(begin->second.data(), begin->second.size());
    if (value == absl::StrCat("Bearer ", admin_token_)) caller = "admin";
    for (const auto& [token, name] : credentials_) {
      if (value == absl::StrCat("Bearer ", token)) caller = name;
    }
  }
  callers_.push_back(caller);
  return caller != "<none>";
}

grpc::Status FakeRegistry::Unauthenticated() {
  return grpc::Status(grpc::UNAUTHENTICATED, "missing or wrong admin token");
}

grpc::Status FakeManifests::GetTrustRoot(grpc::ServerContext* context,
                                         const v1::GetTrustRootRequest* request,
                                         v1::SignedTrustRoot* response) {
  std::lock_guard<std::mutex> lock(mu_);
  if (context->client_metadata().count("authorization") > 0) saw_authorization_ = true;
  const int64_t version =
      request->version() == 0 ? static_cast<int64_t>(roots_.size()) : request->version();
  if (version < 1 || version > static_cast<int64_t>(roots_.size())) {
    return grpc::Status(grpc::NOT_FOUND, "no such root");
  }
  *response = roots_[version - 1];
  return grpc::Status::OK;
}

}  // namespace modeldist::ctl
