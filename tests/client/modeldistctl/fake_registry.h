// File: fake_registry.h
//
// Hand-written fakes of the services modeldistctl calls, served in-process by FakeServerTest
// (ctl_fixture.h): they keep just enough state to answer as the real server would, record
// what they were sent, and fail on request.
#ifndef MODELDIST_TESTS_CLIENT_MODELDISTCTL_FAKE_REGISTRY_H_
#define MODELDIST_TESTS_CLIENT_MODELDISTCTL_FAKE_REGISTRY_H_

#include <grpcpp/grpcpp.h>

#include <cstdint>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "modeldist/v1/manifest.grpc.pb.h"
#include "modeldist/v1/registry.grpc.pb.h"

namespace modeldist::ctl {

// Just enough of RegistryService for publish (models, versions, upload sessions, tiers) and for
// the fleet commands (rollouts, pins, audit log, key changes). Faults are injected per test:
// drop the next WriteArtifact stream after N bytes, corrupt a byte on its way in, fail
// QueryUpload, or fail the Nth PinDevices.
// Every call's caller (the name of the credential its token authenticates) is recorded; the
// calls that change something also append it to the audit log, as the real server does.
class FakeRegistry final : public v1::RegistryService::Service {
 public:
  // Accepts calls that carry `authorization: Bearer <admin_token>` (caller `admin`), or the
  // token of a credential added with AddCredential.
  explicit FakeRegistry(std::string admin_token) : admin_token_(std::move(admin_token)) {}

  // Accepts `token` too, as the credential `name`.
  void AddCredential(const std::string& token, const std::string& name) {
    std::lock_guard<std::mutex> lock(mu_);
    credentials_[token] = name;
  }

  struct Blob {
    std::string data;
    int64_t size = 0;
    bool complete = false;
  };

  // The next WriteArtifact stream fails with UNAVAILABLE once it has committed `bytes`.
  void DropNextStreamAfter(int64_t bytes) {
    std::lock_guard<std::mutex> lock(mu_);
    drop_after_ = bytes;
  }
  // The next byte received is flipped, as a bad link or disk would, so the session's digest
  // cannot match.
  void CorruptNextByte() {
    std::lock_guard<std::mutex> lock(mu_);
    corrupt_next_byte_ = true;
  }
  // What the upload session `id` holds, committed (not yet finished).
  std::string session_data(const std::string& id) {
    std::lock_guard<std::mutex> lock(mu_);
    return sessions_[id].data;
  }
  // The next `n` QueryUpload calls fail with UNAVAILABLE.
  void FailQueries(int n) {
    std::lock_guard<std::mutex> lock(mu_);
    failing_queries_ = n;
  }
  Blob blob(const std::string& digest) {
    std::lock_guard<std::mutex> lock(mu_);
    return blobs_[digest];
  }
  int write_streams() {
    std::lock_guard<std::mutex> lock(mu_);
    return write_streams_;
  }
  int set_tier_calls() {
    std::lock_guard<std::mutex> lock(mu_);
    return set_tier_calls_;
  }
  int64_t bytes_received() {
    std::lock_guard<std::mutex> lock(mu_);
    return bytes_received_;
  }
  v1::Version version(const std::string& name) {
    std::lock_guard<std::mutex> lock(mu_);
    return versions_[name];
  }
  bool has_version(const std::string& name) {
    std::lock_guard<std::mutex> lock(mu_);
    return versions_.count(name) > 0;
  }
  // The caller of every call so far ("<none>" when its token was wrong or absent), in order.
  std::vector<std::string> callers() {
    std::lock_guard<std::mutex> lock(mu_);
    return callers_;
  }
  // How many calls carried `x-modeldist-actor`, which modeldistctl no longer sends.
  int actor_headers() {
    std::lock_guard<std::mutex> lock(mu_);
    return actor_headers_;
  }
  // The device_ids count of every PinDevices call so far.
  std::vector<int> pin_batches() {
    std::lock_guard<std::mutex> lock(mu_);
    return pin_batches_;
  }
  std::map<std::string, v1::DevicePin> pins() {
    std::lock_guard<std::mutex> lock(mu_);
    return pins_;
  }
  // The page_size of every ListAuditLog call so far.
  std::vector<int> audit_page_sizes() {
    std::lock_guard<std::mutex> lock(mu_);
    return audit_page_sizes_;
  }
  // PinDevices call number `n` (1-based) fails with UNAVAILABLE.
  void FailPinCall(int n) {
    std::lock_guard<std::mutex> lock(mu_);
    fail_pin_call_ = n;
  }
  // What the key-changing rpcs return.
  void SetKeyChangeResult(v1::SignedTrustRoot root) {
    std::lock_guard<std::mutex> lock(mu_);
    key_change_result_ = std::move(root);
  }
  v1::RotateSigningKeysRequest last_rotate() {
    std::lock_guard<std::mutex> lock(mu_);
    return last_rotate_;
  }

  grpc::Status CreateModel(grpc::ServerContext* context, const v1::CreateModelRequest* request,
                           v1::Model* response) override;

  grpc::Status CreateVersion(grpc::ServerContext* context, const v1::CreateVersionRequest* request,
                             v1::Version* response) override;

  grpc::Status GetVersion(grpc::ServerContext* context, const v1::GetVersionRequest* request,
                          v1::Version* response) override;

  // Upload sessions only: modeldistctl uploads nothing by digest.
  grpc::Status QueryUpload(grpc::ServerContext* context, const v1::QueryUploadRequest* request,
                           v1::QueryUploadResponse* response) override;

  grpc::Status WriteArtifact(grpc::ServerContext* context,
                             grpc::ServerReader<v1::WriteArtifactRequest>* reader,
                             v1::WriteArtifactResponse* response) override;

  grpc::Status PublishVersion(grpc::ServerContext* context,
                              const v1::PublishVersionRequest* request,
                              v1::Version* response) override;

  grpc::Status SetTier(grpc::ServerContext* context, const v1::SetTierRequest* request,
                       v1::TierBinding* response) override;

  // Every binding in one page, in (tier, channel) order as the real server lists them.
  grpc::Status ListTiers(grpc::ServerContext* context, const v1::ListTiersRequest*,
                         v1::ListTiersResponse* response) override;

  grpc::Status StartRollout(grpc::ServerContext* context, const v1::StartRolloutRequest* request,
                            v1::Rollout* response) override;

  grpc::Status AdvanceRollout(grpc::ServerContext* context,
                              const v1::AdvanceRolloutRequest* request,
                              v1::Rollout* response) override;

  grpc::Status PauseRollout(grpc::ServerContext* context, const v1::RolloutRequest* request,
                            v1::Rollout* response) override;
  grpc::Status ResumeRollout(grpc::ServerContext* context, const v1::RolloutRequest* request,
                             v1::Rollout* response) override;
  grpc::Status CompleteRollout(grpc::ServerContext* context, const v1::RolloutRequest* request,
                               v1::Rollout* response) override;
  grpc::Status AbortRollout(grpc::ServerContext* context, const v1::RolloutRequest* request,
                            v1::Rollout* response) override;

  // Newest first, two per page, so that the client has to follow the page token.
  grpc::Status ListRollouts(grpc::ServerContext* context, const v1::ListRolloutsRequest* request,
                            v1::ListRolloutsResponse* response) override;

  grpc::Status PinDevices(grpc::ServerContext* context, const v1::PinDevicesRequest* request,
                          v1::PinDevicesResponse* response) override;

  grpc::Status UnpinDevices(grpc::ServerContext* context, const v1::UnpinDevicesRequest* request,
                            v1::PinDevicesResponse* response) override;

  grpc::Status ListPins(grpc::ServerContext* context, const v1::ListPinsRequest* request,
                        v1::ListPinsResponse* response) override;

  // Newest first, honouring page_size, so that --limit and paging can be checked.
  grpc::Status ListAuditLog(grpc::ServerContext* context, const v1::ListAuditLogRequest* request,
                            v1::ListAuditLogResponse* response) override;

  grpc::Status AddSigningKey(grpc::ServerContext* context, const v1::AddSigningKeyRequest*,
                             v1::SignedTrustRoot* response) override;

  grpc::Status RevokeSigningKey(grpc::ServerContext* context,
                                const v1::RevokeSigningKeyRequest* request,
                                v1::SignedTrustRoot* response) override;

  grpc::Status RotateSigningKeys(grpc::ServerContext* context,
                                 const v1::RotateSigningKeysRequest* request,
                                 v1::SignedTrustRoot* response) override;

 private:
  // The ACTIVE or PAUSED rollout of tier/channel, or null.
  v1::Rollout* Open(const std::string& tier, const std::string& channel);

  grpc::Status EndOrChange(grpc::ServerContext* context, const v1::RolloutRequest& request,
                           v1::Rollout::State state, v1::Rollout* response);

  void Audit(grpc::ServerContext*, const std::string& action, const std::string& tier,
             const std::string& channel, const std::string& details);
  // Called with mu_ held by every rpc, so it also records the caller.
  bool Authorized(grpc::ServerContext* context);
  static grpc::Status Unauthenticated();

  const std::string admin_token_;
  std::mutex mu_;
  std::set<std::string> models_;
  std::map<std::string, v1::Version> versions_;
  std::map<std::string, Blob> blobs_;
  struct Session {
    std::string data;    // Committed bytes, until finished.
    std::string digest;  // Set once finished: the blob it became.
  };
  std::map<std::string, Session> sessions_;
  bool corrupt_next_byte_ = false;
  int64_t drop_after_ = -1;
  int failing_queries_ = 0;
  int write_streams_ = 0;
  int64_t bytes_received_ = 0;
  int64_t sequence_ = 0;
  std::map<std::string, std::string> credentials_;  // token -> name
  std::vector<std::string> callers_;
  int actor_headers_ = 0;
  std::map<std::pair<std::string, std::string>, v1::TierBinding> bound_;  // By (tier, channel).
  int set_tier_calls_ = 0;
  std::vector<v1::Rollout> rollouts_;          // Oldest first.
  std::map<std::string, v1::DevicePin> pins_;  // By "tier/channel/device".
  std::vector<int> pin_batches_;
  int fail_pin_call_ = 0;
  std::vector<v1::AuditEntry> audit_;  // Oldest first.
  std::vector<int> audit_page_sizes_;
  v1::SignedTrustRoot key_change_result_;
  v1::RotateSigningKeysRequest last_rotate_;
};

// ManifestService.GetTrustRoot over a list of signed roots (version N at index N-1).
class FakeManifests final : public v1::ManifestService::Service {
 public:
  void AddRoot(v1::SignedTrustRoot root) {
    std::lock_guard<std::mutex> lock(mu_);
    roots_.push_back(std::move(root));
  }
  // Whether any GetTrustRoot call carried an authorization header (it must not need one).
  bool saw_authorization() {
    std::lock_guard<std::mutex> lock(mu_);
    return saw_authorization_;
  }

  grpc::Status GetTrustRoot(grpc::ServerContext* context, const v1::GetTrustRootRequest* request,
                            v1::SignedTrustRoot* response) override;

 private:
  std::mutex mu_;
  std::vector<v1::SignedTrustRoot> roots_;
  bool saw_authorization_ = false;
};

}  // namespace modeldist::ctl

#endif  // MODELDIST_TESTS_CLIENT_MODELDISTCTL_FAKE_REGISTRY_H_
