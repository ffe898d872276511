// File: server.h
//
// Wires the catalog, blob store, manifest cache and the three services (plus health and
// reflection) into one gRPC server. Used by main.cc and by end-to-end tests.
#ifndef MODELDIST_SERVICES_SERVER_H_
#define MODELDIST_SERVICES_SERVER_H_

#include <grpcpp/grpcpp.h>
#include <grpcpp/support/client_interceptor.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/fs.h"
#include "services/request_log.h"
#include "services/transport_limits.h"
#include "services/upload_limits.h"
#include "storage/origin/origin_set.h"

namespace modeldist::services {

struct ServerConfig {
  // HOST:PORT to listen on; port 0 picks a free port (see ModeldistServer::port()).
  std::string listen = "127.0.0.1:8470";
  // Holds catalog.db, blobs/, uploads/ and (by default) keys/. Created if missing.
  std::string data_dir = "modeldist-data";
  // Required: the bearer token admin rpcs must present.
  std::string admin_token;
  // An extra Ed25519 PEM key for signing manifests (kept where it is). On first start it
  // becomes the only key of trust root 1; without it, root 1 gets a key generated into
  // <data_dir>/keys/. Keys are then managed with Add/Revoke/RotateSigningKeys.
  std::string signing_key_file;
  // PEM certificate chain and key: both set means TLS, both empty means plaintext.
  std::string tls_cert_file;
  std::string tls_key_file;
  // PEM CA certificates (--admin-client-ca): with TLS, the server asks clients for a
  // certificate (devices need none) and verifies one that is sent against these; a verified
  // certificate whose subject common name is a credential's name authenticates admin rpcs
  // with its scopes (services/admin_auth.h). Empty: client certificates are not asked for.
  std::string admin_client_ca_file;
  // Failed authentications of admin rpcs from one peer address within a minute after which
  // every call from there is refused (AUTH_RATE_LIMITED) until the minute is over; 0 turns
  // the limit off (for tests that fail on purpose).
  int max_auth_failures = 10;
  absl::Duration manifest_ttl = absl::Hours(24);
  // The most bytes of data in one ArtifactService.Read message (the --chunk-size flag;
  // StatResponse.read_message_bytes). Not the chain chunk of manifests, which is fixed. 1 MiB
  // measured fastest; see docs/benchmarks.md.
  int64_t read_message_bytes = 1024 * 1024;
  // Address devices should use for ArtifactService, put in manifests; empty = "this server".
  std::string public_address;
  // PublishVersion checks GGUF and CoreML zip artifacts (common/model_check/model_check.h) and
  // refuses broken ones (off: --no-model-checks, for harnesses that publish opaque test bytes
  // under those formats).
  bool check_models = true;
  // The files a CoreML zip must hold (--coreml-required-files); empty: a known tokenizer file.
  std::vector<std::string> coreml_required_files;
  // Largest request message accepted; bigger ones fail with RESOURCE_EXHAUSTED.
  int max_receive_message_bytes = 8 * 1024 * 1024;
  // HTTP/2 limits per connection: concurrent calls, ping policy, keepalive, idle connections.
  TransportLimits transport;
  // Upload streams at once per client address (--max-uploads-per-client) and per credential
  // (--max-uploads-per-credential), and how long one may send nothing before it is cancelled
  // (--upload-idle-timeout).
  UploadLimiter::Options uploads;
  // How often the server scrubs its blob store on its own (services/scrubber.h): re-reads
  // every blob from the disk and checks it, so damage is found before a device asks for the
  // bytes. The first pass runs one interval after the start. Zero turns it off.
  absl::Duration scrub_interval = absl::Hours(24);
  // How often the rollout autopilot judges the health gates of rollouts and takes their
  // scheduled steps (services/rollout_autopilot.h); it also runs soon after device reports.
  absl::Duration rollout_check_interval = absl::Seconds(5);
  // The most bytes per second such a pass reads, so downloads keep most of the disk; 0 reads
  // as fast as the disk allows.
  int64_t scrub_rate = 64 * 1024 * 1024;
  // The origins file (proto/modeldist/v1/origins.proto; docs/origins.md): object stores and
  // CDNs that hold copies of blobs. Empty: none. Every origin is built (credentials read) at
  // start, so a wrong one stops the server there.
  std::string origins_file;
  // Removes the local copy of a blob once every origin that replicates confirmed a copy; the
  // server reads it through from them (services/replica_eviction.h). Needs an origin with
  // `replicate: true`.
  bool evict_replicated = false;
  // HOST:PORT of the HTTP listener (services/http_routes.h: blobs for CDNs and caches, health
  // probes), with the same TLS as gRPC; empty: none. Port 0 picks one (http_port()).
  std::string http_listen;
  // Where the HTTP listener answers the seed's edge-function requests
  // (services/edge_manifest_endpoint.h).
  std::string http_manifest_path = "/functions/v1/local-llm-manifest";
  // Where devices and apps reach the HTTP listener's blobs, usually a CDN whose origin it is
  // (e.g. https://models.example.com): the base of the blob URLs the edge endpoint hands out,
  // and of a mirror put first in every GetManifest answer. Empty: no mirror, and the edge
  // endpoint hands out the listener's own URLs, as the request reached it.
  std::string http_public_url;
  // One JSON line per request (gRPC and HTTP; services/request_log.h) at this level and above,
  // to `log_file` (empty: stderr).
  LogLevel log_level = LogLevel::kInfo;
  std::string log_file;
  // When set, blob requests to the HTTP listener must carry it in the
  // X-Modeldist-Origin-Secret header (a CDN's origin custom header); others get 403.
  std::string http_origin_secret;
  // An HTTP connection that sends nothing for this long is closed (slow or stuck clients).
  absl::Duration http_idle_timeout = absl::Seconds(30);
  // Builds each origin; empty means origin::MakeOrigin. A seam for tests.
  origin::OriginFactory origin_factory;
  // The free space an upload or import must leave on the data directory's disk
  // (--min-free-space); one that would leave less is refused with RESOURCE_EXHAUSTED
  // (INSUFFICIENT_SPACE) before a byte of it is written (storage/blob_store.h). 1 GiB: room
  // for the catalog's journal and WAL, the request log and the sidecars of uploads in flight,
  // so a full disk never breaks the catalog; small next to a model artifact, and a fixed size,
  // unlike a percentage, neither wastes hundreds of GB of a large disk nor leaves too little
  // on a small one. 0: no margin.
  int64_t min_free_bytes = int64_t{1} << 30;
  // The file system the blob store writes through (common/fs.h); null: the real one. A seam
  // for tests (tests/testing/fault_fs.h).
  Fs* fs = nullptr;
};

class ModeldistServer {
 public:
  // Opens the data directory (taking an exclusive lock on it), applies migrations, signs the
  // current manifests and starts serving. Errors say which flag or file to fix.
  static absl::StatusOr<std::unique_ptr<ModeldistServer>> Start(const ServerConfig& config);
  ~ModeldistServer();

  // The port actually bound.
  int port() const { return port_; }
  // The HTTP listener's port; 0 without one.
  int http_port() const;
  // The key ids of the newest trust root, comma-separated.
  std::string signing_key_id() const;
  // A channel to this server that bypasses the network (for tests), through `interceptors`
  // when given (e.g. one that checks every answer, as tests/testing/error_contract.h does).
  std::shared_ptr<grpc::Channel> InProcessChannel(
      std::vector<std::unique_ptr<grpc::experimental::ClientInterceptorFactoryInterface>>
          interceptors = {});

  void Shutdown();
  void Wait();

 private:
  struct Parts;
  ModeldistServer() = default;
  std::unique_ptr<Parts> parts_;
  std::unique_ptr<grpc::Server> server_;
  int port_ = 0;
};

}  // namespace modeldist::services

#endif  // MODELDIST_SERVICES_SERVER_H_
