#include "services/upstream_manifests.h"

#include <grpcpp/client_context.h>

#include <iostream>
#include <utility>

#include "absl/strings/str_cat.h"
#include "client/rpc/channel.h"
#include "client/rpc/trust_walk.h"
#include "common/file_util.h"
#include "common/grpc_status.h"
#include "common/status.h"
#include "common/trust.h"
#include "storage/blob_record.h"

namespace modeldist::services {
namespace {

absl::Status Untrusted(const std::string& name, const absl::Status& why) {
  return MakeError(absl::StatusCode::kUnavailable, "UPSTREAM_UNTRUSTED",
                   absl::StrCat("the upstream (origin ", name,
                                ") sent a manifest that its pinned trust root does not accept: ",
                                why.message(), "; check the origin's trust_root_file"));
}

}  // namespace

absl::StatusOr<std::unique_ptr<UpstreamManifests>> UpstreamManifests::Create(
    const v1::Origin& config, storage::Catalog* catalog) {
  const v1::ModeldistOrigin& upstream = config.modeldist();
  const std::string field = absl::StrCat("origin ", config.name(), ": trust_root_file");
  absl::StatusOr<std::string> bytes = ReadFileToString(upstream.trust_root_file());
  if (!bytes.ok()) return WithContext(bytes.status(), field);
  v1::SignedTrustRoot signed_root;
  if (!signed_root.ParseFromString(*bytes)) {
    return MakeError(absl::StatusCode::kInvalidArgument, "MALFORMED_ROOT",
                     absl::StrCat(field, ": ", upstream.trust_root_file(),
                                  " is not a SignedTrustRoot (`modeldistctl keys root --out "
                                  "FILE` against the upstream writes one)"));
  }
  absl::StatusOr<v1::TrustRoot> root = VerifyFirstRoot(signed_root);
  if (!root.ok()) return WithContext(root.status(), field);
  rpc::ChannelOptions channel;
  channel.target = upstream.target();
  channel.tls_ca_file = upstream.ca_file();
  MD_ASSIGN_OR_RETURN(std::shared_ptr<grpc::Channel> built, rpc::MakeChannel(channel));
  std::unique_ptr<UpstreamManifests> out(new UpstreamManifests(
      config.name(), upstream.target(), catalog, v1::ManifestService::NewStub(built)));
  absl::MutexLock lock(&out->mu_);
  out->root_ = *std::move(root);
  out->signed_root_ = std::move(signed_root);
  return out;
}

grpc::Status UpstreamManifests::Failed(const grpc::Status& status, const char* method) const {
  // The upstream's own answers carry an ErrorInfo and go on as they are; a bare UNAVAILABLE or
  // DEADLINE_EXCEEDED is gRPC saying that it could not get one.
  const bool answered = !status.error_details().empty();
  if (answered || (status.error_code() != grpc::StatusCode::UNAVAILABLE &&
                   status.error_code() != grpc::StatusCode::DEADLINE_EXCEEDED)) {
    return status;
  }
  return ToGrpcStatus(MakeError(
      absl::StatusCode::kUnavailable, "UPSTREAM_UNAVAILABLE",
      absl::StrCat("the upstream modeldist-server ", target_, " (origin ", name_,
                   ") did not answer ", method, ": ", status.error_message(), "; retry later")));
}

grpc::Status UpstreamManifests::GetManifest(const v1::GetManifestRequest& request,
                                            std::chrono::system_clock::time_point deadline,
                                            v1::SignedManifest* response) {
  grpc::ClientContext context;
  context.set_deadline(deadline);
  const grpc::Status status = stub_->GetManifest(&context, request, response);
  if (!status.ok()) return Failed(status, "GetManifest");
  absl::StatusOr<v1::Manifest> manifest = Verify(*response);
  absl::Status usable = manifest.status();
  if (usable.ok()) {
    usable = CheckManifestTarget(*manifest, request.tier(), request.channel(), request.platform(),
                                 request.arch());
  }
  if (usable.ok()) usable = CheckManifestArtifact(manifest->artifact());
  if (!usable.ok()) return ToGrpcStatus(Untrusted(name_, usable));
  RecordChain(manifest->artifact());
  // Unsigned, and pointing past this cache: devices read here.
  response->clear_mirrors();
  response->set_selection_reason(
      absl::StrCat("upstream ", target_, ": ", response->selection_reason()));
  return grpc::Status::OK;
}

grpc::Status UpstreamManifests::GetSigningKeys(std::chrono::system_clock::time_point deadline,
                                               v1::GetSigningKeysResponse* response) {
  grpc::ClientContext context;
  context.set_deadline(deadline);
  const grpc::Status status = stub_->GetSigningKeys(&context, {}, response);
  return status.ok() ? status : Failed(status, "GetSigningKeys");
}

grpc::Status UpstreamManifests::GetTrustRoot(const v1::GetTrustRootRequest& request,
                                             std::chrono::system_clock::time_point deadline,
                                             v1::SignedTrustRoot* response) {
  grpc::ClientContext context;
  context.set_deadline(deadline);
  const grpc::Status status = stub_->GetTrustRoot(&context, request, response);
  return status.ok() ? status : Failed(status, "GetTrustRoot");
}

absl::StatusOr<v1::Manifest> UpstreamManifests::Verify(const v1::SignedManifest& signed_manifest) {
  v1::TrustRoot root;
  {
    absl::MutexLock lock(&mu_);
    root = root_;
  }
  absl::StatusOr<v1::Manifest> manifest = VerifyManifest(root, signed_manifest);
  if (manifest.ok() || ErrorReason(manifest.status()) != kReasonSignatureThresholdNotMet) {
    return manifest;
  }
  // Signed by keys of a newer root, perhaps: walk to it (outside the lock, it is slow) from the
  // newest one known, which another call may have walked to meanwhile.
  const int64_t tried = root.version();
  v1::SignedTrustRoot signed_root;
  {
    absl::MutexLock lock(&mu_);
    root = root_;
    signed_root = signed_root_;
  }
  absl::StatusOr<bool> advanced = rpc::AdvanceTrustRoot(*stub_, &root, &signed_root);
  if (!advanced.ok()) return advanced.status();
  if (root.version() == tried) return manifest;
  {
    absl::MutexLock lock(&mu_);
    if (root.version() > root_.version()) {
      root_ = root;
      signed_root_ = signed_root;
    }
  }
  return VerifyManifest(root, signed_manifest);
}

void UpstreamManifests::RecordChain(const v1::ManifestArtifact& artifact) {
  {
    absl::MutexLock lock(&mu_);
    if (recorded_.count(artifact.digest())) return;
  }
  if (artifact.chunk_size() != storage::kChunkDigestBytes) {
    // Read-through checks the store's chunks; a chain of another size cannot. Devices still
    // get the manifest, and a Read here answers NOT_FOUND for the blob.
    std::cerr << "modeldist-server: the upstream's chain of " << artifact.digest() << " has "
              << artifact.chunk_size() << "-byte chunks, not " << storage::kChunkDigestBytes
              << ": it cannot be read through here\n";
    return;
  }
  storage::RecordedChain chain;
  chain.size = artifact.size_bytes();
  chain.chunk_size = artifact.chunk_size();
  for (const std::string& entry : artifact.chunk_chain()) chain.chain += entry;
  if (absl::Status s = catalog_->RecordChain(artifact.digest(), chain); !s.ok()) {
    std::cerr << "modeldist-server: cannot record the chain of " << artifact.digest() << ": " << s
              << "\n";
    return;
  }
  absl::MutexLock lock(&mu_);
  recorded_.insert(artifact.digest());
}

}  // namespace modeldist::services
