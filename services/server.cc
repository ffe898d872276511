#include "services/server.h"

#include <fcntl.h>
#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/health_check_service_interface.h>
#include <sys/file.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <iostream>
#include <optional>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/ed25519.h"
#include "common/file_util.h"
#include "common/status.h"
#include "grpc/health/v1/health.pb.h"
#include "services/admin_auth.h"
#include "services/artifact_service.h"
#include "services/blob_health.h"
#include "services/call_observer.h"
#include "services/fleet_service.h"
#include "services/fleet_stats.h"
#include "services/key_ring.h"
#include "services/malformed_request.h"
#include "services/manifest_cache.h"
#include "services/manifest_service.h"
#include "services/mirror_urls.h"
#include "services/origin_repair.h"
#include "services/read_through.h"
#include "services/registry_service.h"
#include "services/replica_eviction.h"
#include "services/replicator.h"
#include "services/rollout_autopilot.h"
#include "services/scrubber.h"
#include "services/server_http.h"
#include "services/server_metrics.h"
#include "services/upstream_manifests.h"
#include "services/wakeable_loop.h"
#include "storage/blob_store.h"
#include "storage/catalog.h"
#include "storage/origin/origin_config.h"
#include "storage/origin/origin_factory.h"

namespace modeldist::services {
namespace {

// Holds an flock on <data_dir>/LOCK so two servers never share a catalog and blob store.
class DataDirLock {
 public:
  static absl::StatusOr<std::unique_ptr<DataDirLock>> Acquire(const std::string& dir) {
    std::string path = dir + "/LOCK";
    int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) return ErrnoStatus(errno, path);
    if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
      ::close(fd);
      return MakeError(absl::StatusCode::kFailedPrecondition, "DATA_DIR_IN_USE",
                       absl::StrCat("--data-dir ", dir, " is in use by another modeldist-server"));
    }
    return std::unique_ptr<DataDirLock>(new DataDirLock(fd));
  }
  ~DataDirLock() { ::close(fd_); }

 private:
  explicit DataDirLock(int fd) : fd_(fd) {}
  int fd_;
};

// Keeps the trust root chain in the catalog, so roots share its durability and backups.
class CatalogTrustRootStore : public TrustRootStore {
 public:
  explicit CatalogTrustRootStore(storage::Catalog* catalog) : catalog_(catalog) {}
  absl::Status Append(int64_t version, absl::string_view signed_root,
                      absl::string_view actor) override {
    return catalog_->AppendTrustRoot(version, signed_root, actor);
  }
  absl::StatusOr<std::string> Get(int64_t version) override {
    return catalog_->GetTrustRoot(version);
  }

 private:
  storage::Catalog* catalog_;
};

absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> Credentials(const ServerConfig& c) {
  if (c.tls_cert_file.empty() != c.tls_key_file.empty()) {
    return InvalidArgument("tls_key_file", "INVALID_FLAG",
                           "--tls-cert and --tls-key must be given together");
  }
  if (c.tls_cert_file.empty() && !c.admin_client_ca_file.empty()) {
    return InvalidArgument("admin_client_ca_file", "INVALID_FLAG",
                           "--admin-client-ca needs TLS: give --tls-cert and --tls-key too");
  }
  if (c.tls_cert_file.empty()) return grpc::InsecureServerCredentials();
  MD_ASSIGN_OR_RETURN(std::string cert, ReadFileToString(c.tls_cert_file));
  MD_ASSIGN_OR_RETURN(std::string key, ReadFileToString(c.tls_key_file));
  grpc::SslServerCredentialsOptions options;
  options.pem_key_cert_pairs.push_back({key, cert});
  if (!c.admin_client_ca_file.empty()) {
    MD_ASSIGN_OR_RETURN(options.pem_root_certs, ReadFileToString(c.admin_client_ca_file));
    // Requested, not required: devices and token-carrying admins have no certificate. One
    // that is sent must verify, or the handshake fails.
    options.client_certificate_request = GRPC_SSL_REQUEST_CLIENT_CERTIFICATE_AND_VERIFY;
  }
  return grpc::SslServerCredentials(options);
}

// How often reports counted in memory are written to the catalog: what a crash can lose.
constexpr absl::Duration kFleetFlushInterval = absl::Seconds(1);

// --evict-replicated evicts only what has confirmed copies on the origins that replicate.
absl::Status NoReplicaToEvictFor() {
  return InvalidArgument("evict_replicated", "INVALID_FLAG",
                         "--evict-replicated needs an origin with `replicate: true` in the "
                         "--origins file: a local copy is evicted only once those hold it");
}

// What PublishVersion checks model files with; nullopt when the checks are off.
std::optional<model_check::CheckOptions> ModelChecks(const ServerConfig& config) {
  if (!config.check_models) return std::nullopt;
  model_check::CheckOptions options;
  options.required_files = config.coreml_required_files;
  return options;
}

}  // namespace

struct ModeldistServer::Parts {
  // First, so they outlive everything that counts or logs.
  std::unique_ptr<ServerMetrics> metrics;
  std::unique_ptr<RequestLog> log;
  std::unique_ptr<DataDirLock> lock;
  std::unique_ptr<storage::Catalog> catalog;
  std::unique_ptr<storage::BlobStore> blobs;
  std::unique_ptr<BlobHealth> health;
  std::unique_ptr<Scrubber> scrubber;
  std::unique_ptr<AdminAuth> auth;
  std::unique_ptr<UploadLimiter> uploads;
  std::unique_ptr<origin::OriginSet> origins;   // nullptr without --origins
  std::unique_ptr<MirrorUrls> mirrors;          // nullptr without --origins
  std::unique_ptr<UpstreamManifests> upstream;  // nullptr unless an origin forwards manifests
  std::unique_ptr<CatalogTrustRootStore> root_store;
  std::unique_ptr<KeyRing> keys;
  std::unique_ptr<ManifestCache> manifests;
  std::unique_ptr<FleetStats> fleet;
  std::unique_ptr<RegistryServiceImpl> registry;
  std::unique_ptr<ManifestServiceImpl> manifest_service;
  std::unique_ptr<ArtifactServiceImpl> artifact_service;
  std::unique_ptr<FleetServiceImpl> fleet_service;
  // Last, so they are destroyed (stopped) first, before anything their threads use.
  std::unique_ptr<ReadThrough> read_through;  // nullptr without --origins
  std::unique_ptr<ReplicaEviction> eviction;  // nullptr without --evict-replicated
  std::unique_ptr<Replicator> replicator;     // nullptr unless an origin replicates
  std::unique_ptr<OriginRepair> repair;       // nullptr without --origins
  std::unique_ptr<BackgroundScrub> background_scrub;
  std::unique_ptr<WakeableLoop> upload_sweeper;  // cancels idle upload streams
  std::unique_ptr<WakeableLoop> fleet_flusher;   // writes fleet reports to the catalog
  std::unique_ptr<RolloutAutopilot> autopilot;   // judges rollout gates, takes scheduled steps
  std::atomic<bool> stopping{false};             // /readyz says so
  // The very last: its connections call into everything above.
  std::unique_ptr<HttpSide> http;  // nullptr without --http-listen
};

absl::StatusOr<std::unique_ptr<ModeldistServer>> ModeldistServer::Start(
    const ServerConfig& config) {
  if (config.admin_token.empty()) {
    return InvalidArgument("admin_token", "INVALID_FLAG", "an admin token is required");
  }
  if (config.read_message_bytes < 4096 || config.read_message_bytes > 4 * 1024 * 1024) {
    return InvalidArgument("read_message_bytes", "INVALID_FLAG",
                           "--chunk-size must be between 4 KiB and 4 MiB");
  }
  if (config.scrub_interval < absl::ZeroDuration()) {
    return InvalidArgument("scrub_interval", "INVALID_FLAG",
                           "--scrub-interval must not be negative (0 turns it off)");
  }
  if (config.min_free_bytes < 0) {
    return InvalidArgument("min_free_bytes", "INVALID_FLAG",
                           "--min-free-space must not be negative (0 turns the margin off)");
  }
  if (config.scrub_rate < 0) {
    return InvalidArgument("scrub_rate", "INVALID_FLAG",
                           "--scrub-rate must not be negative (0 is unlimited)");
  }
  MD_RETURN_IF_ERROR(HttpSide::Validate(config));
  auto parts = std::make_unique<Parts>();
  parts->metrics = std::make_unique<ServerMetrics>();
  MD_ASSIGN_OR_RETURN(parts->log, RequestLog::Open(config.log_file, config.log_level));
  // Before the data directory is touched: a wrong origins file changes nothing.
  if (!config.origins_file.empty()) {
    MD_ASSIGN_OR_RETURN(v1::OriginsConfig origins, origin::LoadOriginsConfig(config.origins_file));
    absl::StatusOr<std::unique_ptr<origin::OriginSet>> built = origin::OriginSet::Build(
        origins, config.origin_factory ? config.origin_factory : origin::MakeOrigin);
    if (!built.ok()) return WithContext(built.status(), config.origins_file);
    parts->origins = *std::move(built);
  }
  MD_RETURN_IF_ERROR(MakeDirs(config.data_dir, 0750));
  MD_ASSIGN_OR_RETURN(parts->lock, DataDirLock::Acquire(config.data_dir));
  MD_ASSIGN_OR_RETURN(parts->catalog, storage::Catalog::Open(config.data_dir + "/catalog.db"));
  storage::BlobStore::Options blob_options;
  // A session's blob is unwanted once no version declares it (see storage/blob_store.h).
  blob_options.is_referenced =
      [catalog = parts->catalog.get()](absl::string_view hex) -> absl::StatusOr<bool> {
    absl::StatusOr<int64_t> size = catalog->DeclaredSize(absl::StrCat("sha256:", hex));
    if (size.ok()) return true;
    if (absl::IsNotFound(size.status())) return false;
    return size.status();
  };
  blob_options.fs = config.fs;
  blob_options.min_free_bytes = config.min_free_bytes;
  MD_ASSIGN_OR_RETURN(parts->blobs, storage::BlobStore::Open(config.data_dir, blob_options));
  parts->metrics->WatchStores(parts->blobs.get(), parts->catalog.get());
  MD_ASSIGN_OR_RETURN(parts->fleet, FleetStats::Load(parts->catalog.get()));
  parts->metrics->WatchFleet(parts->fleet.get());
  parts->root_store = std::make_unique<CatalogTrustRootStore>(parts->catalog.get());
  KeyRing::Options key_options;
  key_options.signing_key_file = config.signing_key_file;
  MD_ASSIGN_OR_RETURN(
      parts->keys, KeyRing::Open(config.data_dir + "/keys", parts->root_store.get(), key_options));
  MD_ASSIGN_OR_RETURN(auto credentials, Credentials(config));

  parts->health = std::make_unique<BlobHealth>(parts->catalog.get(), parts->blobs.get());
  ManifestCache::Options cache_options;
  cache_options.ttl = config.manifest_ttl;
  cache_options.public_address = config.public_address;
  cache_options.rebuilds = parts->metrics->manifest_rebuilds();
  cache_options.on_damage = [health = parts->health.get()](const std::string& hex,
                                                           const absl::Status& problem) {
    health->Report(hex, problem);
  };
  // The chains read-through checks fetched blobs against (with origins only).
  const ChainLookup recorded_chains =
      parts->origins != nullptr ? RecordedChainLookup(parts->catalog.get()) : nullptr;
  if (recorded_chains) {
    // A blob whose chain is recorded is read through from the origins when it is not stored
    // here (services/read_through.h): its manifests are signed from that chain, and its
    // absence is not damage.
    cache_options.remote_chain =
        [lookup =
             recorded_chains](const std::string& hex) -> absl::StatusOr<std::vector<std::string>> {
      MD_ASSIGN_OR_RETURN(RemoteBlob remote, lookup(hex));
      std::vector<std::string> entries;
      for (size_t at = 0; at < remote.chain.size(); at += storage::kChainEntryBytes) {
        entries.push_back(remote.chain.substr(at, storage::kChainEntryBytes));
      }
      return entries;
    };
    parts->health->set_fetchable(
        [lookup = recorded_chains](const std::string& hex) { return lookup(hex).ok(); });
  }
  parts->manifests = std::make_unique<ManifestCache>(parts->catalog.get(), parts->blobs.get(),
                                                     parts->keys.get(), cache_options);
  parts->health->set_on_change([manifests = parts->manifests.get()] {
    // A failure keeps the previous answers; the refresher retries.
    absl::Status rebuilt = manifests->Rebuild();
    if (!rebuilt.ok()) std::cerr << "modeldist-server: re-signing failed: " << rebuilt << std::endl;
  });
  MD_RETURN_IF_ERROR(parts->manifests->Rebuild());

  parts->scrubber =
      std::make_unique<Scrubber>(parts->catalog.get(), parts->blobs.get(), parts->health.get());

  if (parts->origins != nullptr) {
    parts->mirrors = std::make_unique<MirrorUrls>(parts->catalog.get(), parts->origins.get());
    MD_RETURN_IF_ERROR(parts->mirrors->Refresh());
    // Every blob with a confirmed replica can be read through once its local copy is gone,
    // so its chain is recorded then (and at start for replicas confirmed before there was
    // a record).
    MD_RETURN_IF_ERROR(RecordChainsOfConfirmedReplicas(parts->catalog.get(), parts->blobs.get()));
    ReadThroughOptions read_through;
    read_through.fetches_started = parts->metrics->origin_fetches();
    read_through.on_stored = [health = parts->health.get()](const std::string& hex) {
      health->Restored(hex);
    };
    parts->read_through = std::make_unique<ReadThrough>(parts->blobs.get(), parts->origins.get(),
                                                        recorded_chains, std::move(read_through));
    ReplicatorOptions replication;
    replication.on_confirmed = [p = parts.get()](const std::string& digest,
                                                 const std::string& origin) {
      p->mirrors->Confirmed(digest, origin);
      const absl::Status recorded = RecordChain(p->catalog.get(), p->blobs.get(), digest);
      if (!recorded.ok()) {
        std::cerr << "modeldist-server: the chunk chain of " << digest
                  << " was not recorded; it cannot be read through: " << recorded << "\n";
      }
      if (p->eviction == nullptr) return;
      const absl::StatusOr<bool> evicted = p->eviction->MaybeEvict(digest);
      if (!evicted.ok()) {
        std::cerr << "modeldist-server: evicting the local copy of " << digest
                  << " failed (it stays): " << evicted.status() << "\n";
      }
    };
    replication.restore = [read_through = parts->read_through.get()](const std::string& hex) {
      return read_through->Restore(hex);
    };
    auto replicator =
        std::make_unique<Replicator>(parts->catalog.get(), parts->blobs.get(), parts->health.get(),
                                     parts->origins.get(), std::move(replication));
    if (!replicator->origin_names().empty()) parts->replicator = std::move(replicator);
    if (config.evict_replicated) {
      if (parts->replicator == nullptr) return NoReplicaToEvictFor();
      parts->eviction = std::make_unique<ReplicaEviction>(parts->catalog.get(), parts->blobs.get(),
                                                          parts->replicator->origin_names());
      MD_ASSIGN_OR_RETURN(const int evicted, parts->eviction->Sweep());
      if (evicted > 0) {
        std::cerr << "modeldist-server: evicted the local copies of " << evicted
                  << " blobs whose copies on the origins are all confirmed\n";
      }
    }
    parts->repair = std::make_unique<OriginRepair>(parts->catalog.get(), parts->blobs.get(),
                                                   parts->health.get(), parts->origins.get());
    parts->health->set_on_damage(
        [repair = parts->repair.get()](const std::string& hex) { repair->Damaged(hex); });
  } else if (config.evict_replicated) {
    return NoReplicaToEvictFor();
  }

  if (parts->origins != nullptr) {
    for (const origin::ConfiguredOrigin& entry : parts->origins->origins()) {
      if (!entry.config.modeldist().forward_manifests()) continue;
      absl::StatusOr<std::unique_ptr<UpstreamManifests>> upstream =
          UpstreamManifests::Create(entry.config, parts->catalog.get());
      if (!upstream.ok()) return WithContext(upstream.status(), config.origins_file);
      parts->upstream = *std::move(upstream);
      std::cerr << "modeldist-server: a pull-through cache: manifests come from "
                << entry.config.modeldist().target() << " (origin " << entry.config.name()
                << "), checked against " << entry.config.modeldist().trust_root_file() << "\n";
    }
  }

  AdminAuth::Options auth_options;
  auth_options.catalog = parts->catalog.get();
  auth_options.client_certificates = !config.admin_client_ca_file.empty();
  auth_options.failures = parts->metrics->auth_failures();
  auth_options.limiter.max_failures = config.max_auth_failures;
  parts->uploads = std::make_unique<UploadLimiter>(config.uploads);
  parts->auth = std::make_unique<AdminAuth>(config.admin_token, std::move(auth_options));
  parts->registry = std::make_unique<RegistryServiceImpl>(
      parts->catalog.get(), parts->blobs.get(), parts->manifests.get(), parts->keys.get(),
      parts->auth.get(), parts->health.get(), parts->scrubber.get(), parts->origins.get(),
      parts->replicator.get(), ModelChecks(config), parts->uploads.get());
  parts->manifest_service = std::make_unique<ManifestServiceImpl>(
      parts->manifests.get(), parts->keys.get(), parts->mirrors.get(), parts->upstream.get(),
      HttpSide::PublicUrl(config));
  parts->registry->set_fleet(parts->fleet.get());
  {
    RolloutAutopilot::Options autopilot;
    autopilot.period = config.rollout_check_interval;
    ReportCounter counts = [fleet = parts->fleet.get()](absl::string_view tier,
                                                        absl::string_view channel,
                                                        absl::string_view version) {
      return fleet->Totals(tier, channel, version);
    };
    parts->autopilot = std::make_unique<RolloutAutopilot>(
        parts->catalog.get(), parts->manifests.get(), std::move(counts), std::move(autopilot));
    parts->registry->set_autopilot(parts->autopilot.get());
  }
  {
    FleetServiceOptions fleet;
    fleet.on_counted = [autopilot = parts->autopilot.get()] { autopilot->Wake(); };
    parts->fleet_service =
        std::make_unique<FleetServiceImpl>(parts->fleet.get(), parts->metrics.get(), fleet);
  }
  parts->artifact_service = std::make_unique<ArtifactServiceImpl>(
      parts->blobs.get(), parts->health.get(), config.read_message_bytes, /*read_threads=*/4,
      parts->read_through.get(), parts->metrics.get());

  // gRPC's built-in health service has no protobuf descriptor; touching the compiled-in
  // health.proto keeps its descriptor in the binary (the linker would drop the unreferenced
  // object), so reflection can describe grpc.health.v1.Health and grpcurl can call it.
  (void)grpc::health::v1::HealthCheckRequest::descriptor();
  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort(config.listen, credentials, &port);
  builder.SetMaxReceiveMessageSize(config.max_receive_message_bytes);
  ApplyTransportLimits(config.transport, &builder);
  builder.RegisterService(parts->registry.get());
  builder.RegisterService(parts->manifest_service.get());
  builder.RegisterService(parts->artifact_service.get());
  builder.RegisterService(parts->fleet_service.get());
  std::vector<std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>> interceptors =
      MalformedRequestInterceptors();
  // After them: it sees the status they set.
  interceptors.push_back(
      std::make_unique<CallObserverFactory>(parts->metrics.get(), parts->log.get()));
  builder.experimental().SetInterceptorCreators(std::move(interceptors));

  auto server = std::unique_ptr<ModeldistServer>(new ModeldistServer());
  server->server_ = builder.BuildAndStart();
  if (server->server_ == nullptr || port == 0) {
    return MakeError(absl::StatusCode::kUnavailable, "LISTEN_FAILED",
                     absl::StrCat("cannot listen on ", config.listen,
                                  " (address in use or not local? pick another --listen port)"));
  }
  server->port_ = port;
  if (!config.http_listen.empty()) {
    HttpSideParts http;
    http.blobs = parts->blobs.get();
    http.health = parts->health.get();
    http.read_through = parts->read_through.get();
    http.manifests = parts->manifest_service.get();
    http.metrics = parts->metrics.get();
    http.log = parts->log.get();
    // The catalog answers, a trust root with keys is loaded, and no shutdown began.
    http.ready = [p = parts.get()]() -> absl::Status {
      if (p->stopping) {
        return MakeError(absl::StatusCode::kUnavailable, "SHUTTING_DOWN", "the server is stopping");
      }
      if (p->keys->NewestRoot().root.keys().empty()) {
        return MakeError(absl::StatusCode::kUnavailable, "NO_SIGNING_KEYS",
                         "no signing key is loaded");
      }
      absl::StatusOr<storage::ListPage<v1::Model>> models = p->catalog->ListModels(1, "");
      if (!models.ok()) return WithContext(models.status(), "the catalog does not answer");
      return absl::OkStatus();
    };
    absl::StatusOr<std::unique_ptr<HttpSide>> started = HttpSide::Start(config, std::move(http));
    if (!started.ok()) {
      server->server_->Shutdown();
      return started.status();
    }
    parts->http = *std::move(started);
  }
  // Only once serving, like the scrub: a damaged blob it finds is reported.
  if (parts->replicator != nullptr) parts->replicator->Start();
  if (parts->repair != nullptr) parts->repair->Start();
  // Only once serving: a pass reports damage, which rebuilds manifests the services hand out.
  if (config.scrub_interval > absl::ZeroDuration()) {
    parts->background_scrub = std::make_unique<BackgroundScrub>(
        parts->scrubber.get(), config.scrub_interval, config.scrub_rate);
  }
  // Sweeps at a tenth of the idle timeout: a stalled stream is cancelled at most 10% late.
  UploadLimiter* uploads = parts->uploads.get();
  const absl::Duration sweep = std::max(config.uploads.idle_timeout / 10, absl::Milliseconds(10));
  parts->upload_sweeper = std::make_unique<WakeableLoop>([uploads, sweep] {
    uploads->CancelIdle();
    return sweep;
  });
  parts->upload_sweeper->Start();
  parts->fleet_flusher = std::make_unique<WakeableLoop>([fleet = parts->fleet.get()] {
    const absl::Status flushed = fleet->Flush(absl::Now());
    if (!flushed.ok()) {
      std::cerr << "modeldist-server: fleet reports not written yet (retried): " << flushed << "\n";
    }
    return kFleetFlushInterval;
  });
  parts->fleet_flusher->Start();
  // Only once serving, like the other loops: its changes re-sign manifests.
  parts->autopilot->Start();
  server->parts_ = std::move(parts);
  return server;
}

ModeldistServer::~ModeldistServer() {
  Shutdown();
  server_.reset();  // before the services it calls into
}

int ModeldistServer::http_port() const {
  return parts_ != nullptr && parts_->http != nullptr ? parts_->http->port() : 0;
}

std::string ModeldistServer::signing_key_id() const {
  std::vector<std::string> ids;
  const KeyRing::VerifiedRoot newest = parts_->keys->NewestRoot();
  for (const auto& key : newest.root.keys()) ids.push_back(key.key_id());
  return absl::StrJoin(ids, ",");
}

std::shared_ptr<grpc::Channel> ModeldistServer::InProcessChannel(
    std::vector<std::unique_ptr<grpc::experimental::ClientInterceptorFactoryInterface>>
        interceptors) {
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(-1);
  if (interceptors.empty()) return server_->InProcessChannel(args);
  return server_->experimental().InProcessChannelWithInterceptors(args, std::move(interceptors));
}

void ModeldistServer::Shutdown() {
  if (parts_ != nullptr) parts_->stopping = true;
  // A pass in progress stops within one read, rather than keep the process for hours.
  if (parts_ != nullptr && parts_->background_scrub != nullptr) parts_->background_scrub->Stop();
  // Reads waiting for a fetch end UNAVAILABLE, so the calls below can end; so does a copy
  // waiting for its evicted blob to come back (Replicator's restore).
  if (parts_ != nullptr && parts_->read_through != nullptr) parts_->read_through->Stop();
  // A copy in progress is cancelled; its row stays due and resumes at the next start.
  if (parts_ != nullptr && parts_->replicator != nullptr) parts_->replicator->Stop();
  if (parts_ != nullptr && parts_->repair != nullptr) parts_->repair->Stop();
  if (parts_ != nullptr && parts_->autopilot != nullptr) parts_->autopilot->Stop();
  if (server_ != nullptr)
    server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(5));
  // Once no report can come in any more: the last ones are written too.
  if (parts_ != nullptr && parts_->fleet_flusher != nullptr) {
    parts_->fleet_flusher->Stop();
    const absl::Status flushed = parts_->fleet->Flush(absl::Now());
    if (!flushed.ok()) {
      std::cerr << "modeldist-server: the newest fleet reports were lost: " << flushed << "\n";
    }
  }
  // After read-through stopped: a body waiting for an origin has ended, so its connection's
  // thread can be joined.
  if (parts_ != nullptr) parts_->http.reset();
}

void ModeldistServer::Wait() { server_->Wait(); }

}  // namespace modeldist::services
