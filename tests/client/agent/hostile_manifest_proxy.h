// File: hostile_manifest_proxy.h
//
// A ManifestService in front of a real server that a test turns hostile: it forwards every
// call, and lets the test rewrite GetManifest's answers and answer GetTrustRoot itself (a
// tampering network, or a stolen server's keys at work). Listens on 127.0.0.1, port 0.
#ifndef MODELDIST_TESTS_CLIENT_AGENT_HOSTILE_MANIFEST_PROXY_H_
#define MODELDIST_TESTS_CLIENT_AGENT_HOSTILE_MANIFEST_PROXY_H_

#include <grpcpp/grpcpp.h>

#include <atomic>
#include <functional>
#include <memory>
#include <optional>
#include <utility>

#include "modeldist/v1/manifest.grpc.pb.h"

namespace modeldist::testing {

// Forwards ManifestService to `upstream`, letting a test rewrite GetManifest's answer and
// answer GetTrustRoot itself. A service only: register it where the test needs it.
class ManifestForwarder final : public v1::ManifestService::Service {
 public:
  // Turns the upstream answer for `request` into what the forwarder sends.
  using Rewrite = std::function<grpc::Status(const v1::GetManifestRequest& request,
                                             v1::SignedManifest* answer)>;
  // Answers GetTrustRoot itself when it returns a status, else the call is forwarded.
  using RootRewrite = std::function<std::optional<grpc::Status>(
      const v1::GetTrustRootRequest& request, v1::SignedTrustRoot* answer)>;

  explicit ManifestForwarder(std::shared_ptr<grpc::Channel> upstream)
      : upstream_(v1::ManifestService::NewStub(std::move(upstream))) {}

  void set_rewrite(Rewrite rewrite) { rewrite_ = std::move(rewrite); }
  void set_root_rewrite(RootRewrite rewrite) { root_rewrite_ = std::move(rewrite); }
  // GetManifest calls forwarded upstream.
  int forwarded() const { return forwarded_; }

  grpc::Status GetManifest(grpc::ServerContext*, const v1::GetManifestRequest* request,
                           v1::SignedManifest* answer) override {
    grpc::ClientContext context;
    ++forwarded_;
    grpc::Status status = upstream_->GetManifest(&context, *request, answer);
    if (!status.ok() || !rewrite_) return status;
    return rewrite_(*request, answer);
  }
  grpc::Status GetTrustRoot(grpc::ServerContext*, const v1::GetTrustRootRequest* request,
                            v1::SignedTrustRoot* answer) override {
    if (root_rewrite_) {
      if (std::optional<grpc::Status> status = root_rewrite_(*request, answer)) return *status;
    }
    grpc::ClientContext context;
    return upstream_->GetTrustRoot(&context, *request, answer);
  }
  grpc::Status GetSigningKeys(grpc::ServerContext*, const v1::GetSigningKeysRequest* request,
                              v1::GetSigningKeysResponse* answer) override {
    grpc::ClientContext context;
    return upstream_->GetSigningKeys(&context, *request, answer);
  }

 private:
  std::unique_ptr<v1::ManifestService::Stub> upstream_;
  Rewrite rewrite_;
  RootRewrite root_rewrite_;
  std::atomic<int> forwarded_{0};
};

// A ManifestForwarder of its own on 127.0.0.1, port 0, in front of `upstream`.
class HostileManifestProxy {
 public:
  using Rewrite = ManifestForwarder::Rewrite;
  using RootRewrite = ManifestForwarder::RootRewrite;

  explicit HostileManifestProxy(std::shared_ptr<grpc::Channel> upstream)
      : forwarder_(std::move(upstream)) {
    grpc::ServerBuilder builder;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port_);
    builder.RegisterService(&forwarder_);
    server_ = builder.BuildAndStart();
  }
  ~HostileManifestProxy() { server_->Shutdown(); }

  int port() const { return port_; }
  void set_rewrite(Rewrite rewrite) { forwarder_.set_rewrite(std::move(rewrite)); }
  void set_root_rewrite(RootRewrite rewrite) { forwarder_.set_root_rewrite(std::move(rewrite)); }
  int forwarded() const { return forwarder_.forwarded(); }

 private:
  ManifestForwarder forwarder_;
  int port_ = 0;
  std::unique_ptr<grpc::Server> server_;
};

}  // namespace modeldist::testing

#endif  // MODELDIST_TESTS_CLIENT_AGENT_HOSTILE_MANIFEST_PROXY_H_
