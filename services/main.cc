// modeldist-server: the control plane and origin for on-device model distribution.
#include <signal.h>

#include <cstdio>
#include <iostream>
#include <thread>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/time.h"
#include "common/file_util.h"
#include "common/flags.h"
#include "common/malloc_tuning.h"
#include "services/admin_auth.h"
#include "services/server.h"

namespace {

constexpr char kUsage[] =
    "modeldist-server: serves the model registry (admin), signed manifests and verified\n"
    "artifact bytes (fleet) over gRPC, with reflection and grpc.health.v1.\n"
    "\n"
    "Usage: modeldist-server [--config FILE] [--listen HOST:PORT] [--data-dir DIR]\n"
    "                        --admin-token-file FILE\n"
    "       (or MODELDIST_ADMIN_TOKEN in the environment instead of --admin-token-file)\n"
    "\n"
    "Flags:\n";

constexpr char kNextSteps[] =
    "Publish a model:\n"
    "  modeldistctl --server %s --token-file TOKEN_FILE publish --model llama-3.1-8b \\\n"
    "    --version 2026.11.0 --platform macos --arch arm64 --format coreml-zip --tier llama8b "
    "MODEL.zip\n"
    "Query it (grpcurl, reflection):\n"
    "  grpcurl -plaintext %s list\n"
    "  grpcurl -plaintext -d '{\"tier\":\"llama8b\",\"platform\":\"PLATFORM_MACOS\","
    "\"arch\":\"ARCH_ARM64\"}' %s modeldist.v1.ManifestService/GetManifest\n";

int Fail(const std::string& message) {
  std::cerr << "modeldist-server: " << message << "\n";
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  modeldist::KeepFreedHeapForReuse();
  modeldist::Flags flags;
  flags.Add("listen", "HOST:PORT", "127.0.0.1:8470", "address to serve on; port 0 picks one");
  flags.Add("data-dir", "DIR", "modeldist-data", "catalog, blobs and keys live here");
  flags.Add("admin-token-file", "FILE", "",
            "file whose first line is the admin bearer token (else $MODELDIST_ADMIN_TOKEN)");
  flags.Add("signing-key", "FILE", "",
            "extra Ed25519 PEM key for manifests (default: a key generated in DIR/keys)");
  flags.Add("tls-cert", "FILE", "", "PEM certificate chain; with --tls-key enables TLS");
  flags.Add("tls-key", "FILE", "", "PEM private key for --tls-cert");
  flags.Add("admin-client-ca", "FILE", "",
            "with TLS, ask clients for a certificate and verify it against this PEM CA: a "
            "certificate whose subject CN is a credential's name authenticates admin rpcs "
            "(modeldistctl creds; devices need none)");
  flags.Add("manifest-ttl", "DURATION", "24h", "how long signed manifests stay valid");
  flags.Add("chunk-size", "BYTES", "1MiB",
            "the most bytes per ArtifactService.Read message (StatResponse.read_message_bytes)");
  flags.Add("public-address", "HOST:PORT", "", "address put in manifests for devices");
  flags.Add("scrub-interval", "DURATION", "24h",
            "re-read and check every stored blob this often, e.g. 24h or 90m; 0 turns it off");
  flags.Add("rollout-check-interval", "DURATION", "5s",
            "judge the health gates of rollouts and take their scheduled steps this often");
  flags.Add("scrub-rate", "BYTES", "64MiB",
            "read at most this many bytes per second while scrubbing; 0 is unlimited");
  flags.Add("min-free-space", "BYTES", "1GiB",
            "refuse an upload or import that would leave less free space on the data "
            "directory's disk (RESOURCE_EXHAUSTED, INSUFFICIENT_SPACE); 0 turns it off");
  flags.Add("max-uploads-per-client", "N", "8",
            "upload streams one client address may have open at once");
  flags.Add("max-uploads-per-credential", "N", "16",
            "upload streams one admin credential may have open at once");
  flags.Add("upload-idle-timeout", "DURATION", "2m",
            "cancel an upload stream that sends nothing this long (it resumes)");
  flags.Add("origins", "FILE", "",
            "object stores and CDNs holding copies of blobs (text proto or .json; "
            "docs/origins.md): published blobs are copied to those with `replicate`, and "
            "devices get their URLs as mirrors");
  flags.AddBool("no-model-checks",
                "publish GGUF and CoreML zip artifacts without checking their structure, "
                "metadata and tokenizer files (checked by default: broken ones are refused)");
  flags.Add("coreml-required-files", "LIST", "",
            "file names every CoreML zip must hold besides its package, e.g. "
            "tokenizer.json,config.json (default: one of tokenizer.json, tokenizer.model, "
            "tokenizer_config.json, vocab.json)");
  flags.AddBool("evict-replicated",
                "remove a blob's local copy once every `replicate` origin confirmed a copy; "
                "it is then read through from them (docs/origins.md)");
  flags.Add("http-listen", "HOST:PORT", "",
            "also serve HTTP here (off when empty; docs/http.md): blobs for CDNs at "
            "/v1/blobs/sha256:<hex>, the seed's edge function, /metrics, /healthz, /readyz; "
            "TLS as --tls-cert");
  flags.Add("http-manifest-path", "PATH", "/functions/v1/local-llm-manifest",
            "where --http-listen answers the seed's edge-function requests "
            "(POST {\"platform\":\"macos\",\"tier\":\"llama8b\"})");
  flags.Add("http-public-url", "URL", "",
            "where devices reach --http-listen's blobs, e.g. a CDN whose origin it is: the "
            "edge endpoint's blob URLs, and the first mirror of every manifest");
  flags.Add("http-origin-secret-file", "FILE", "",
            "blob requests must carry this file's first line in the X-Modeldist-Origin-Secret "
            "header (a CDN's origin custom header); others get 403");
  flags.Add("log-level", "LEVEL", "info",
            "one JSON line per request to stderr (or --log-file): info logs every request, "
            "warn refused ones and server failures, error server failures only, off none");
  flags.Add("log-file", "FILE", "", "append the request log here instead of stderr");
  flags.Add("port-file", "FILE", "", "write the bound port here once serving (for scripts)");
  flags.Add("http-port-file", "FILE", "", "write the bound HTTP port here once serving");
  flags.Add("config", "FILE", "",
            "read these flags from FILE: `name = value` lines, # comments, booleans true/false; "
            "flags on the command line win (example: deploy/modeldist-server.conf)");
  flags.AddBool("help", "show this help");
  if (absl::Status s = flags.Parse(argc, argv); !s.ok()) return Fail(std::string(s.message()));
  if (!flags.Get("config").empty()) {
    if (absl::Status s = flags.ParseFile(flags.Get("config"), {"config", "help"}); !s.ok()) {
      return Fail(std::string(s.message()));
    }
  }
  if (flags.GetBool("help")) {
    std::cout << kUsage << flags.Help();
    return 0;
  }
  if (!flags.positional().empty()) {
    return Fail(absl::StrCat("unexpected argument \"", flags.positional()[0], "\" (see --help)"));
  }

  modeldist::services::ServerConfig config;
  config.listen = flags.Get("listen");
  config.data_dir = flags.Get("data-dir");
  config.signing_key_file = flags.Get("signing-key");
  config.tls_cert_file = flags.Get("tls-cert");
  config.tls_key_file = flags.Get("tls-key");
  config.admin_client_ca_file = flags.Get("admin-client-ca");
  config.public_address = flags.Get("public-address");
  config.origins_file = flags.Get("origins");
  config.evict_replicated = flags.GetBool("evict-replicated");
  config.check_models = !flags.GetBool("no-model-checks");
  config.coreml_required_files =
      absl::StrSplit(flags.Get("coreml-required-files"), ',', absl::SkipWhitespace());
  config.http_listen = flags.Get("http-listen");
  auto log_level = modeldist::services::ParseLogLevel(flags.Get("log-level"));
  if (!log_level.ok()) return Fail(std::string(log_level.status().message()));
  config.log_level = *log_level;
  config.log_file = flags.Get("log-file");
  config.http_manifest_path = flags.Get("http-manifest-path");
  config.http_public_url = flags.Get("http-public-url");
  if (!flags.Get("http-origin-secret-file").empty()) {
    auto secret = modeldist::services::LoadSecretFile(flags.Get("http-origin-secret-file"),
                                                      "--http-origin-secret-file");
    if (!secret.ok()) return Fail(std::string(secret.status().message()));
    config.http_origin_secret = *std::move(secret);
  }
  if (!absl::ParseDuration(flags.Get("manifest-ttl"), &config.manifest_ttl) ||
      config.manifest_ttl < absl::Minutes(1)) {
    return Fail("--manifest-ttl must be a duration of at least 1m, e.g. 24h or 90m");
  }
  auto chunk = flags.GetInt("chunk-size");
  if (!chunk.ok()) return Fail(std::string(chunk.status().message()));
  config.read_message_bytes = *chunk;
  if (!absl::ParseDuration(flags.Get("scrub-interval"), &config.scrub_interval) ||
      config.scrub_interval < absl::ZeroDuration()) {
    return Fail("--scrub-interval must be a duration, e.g. 24h or 90m, or 0 to turn it off");
  }
  if (!absl::ParseDuration(flags.Get("rollout-check-interval"), &config.rollout_check_interval) ||
      config.rollout_check_interval <= absl::ZeroDuration()) {
    return Fail("--rollout-check-interval must be a positive duration, e.g. 5s");
  }
  auto scrub_rate = flags.GetInt("scrub-rate");
  if (!scrub_rate.ok()) return Fail(std::string(scrub_rate.status().message()));
  if (*scrub_rate < 0) return Fail("--scrub-rate must not be negative (0 is unlimited)");
  config.scrub_rate = *scrub_rate;
  auto min_free = flags.GetInt("min-free-space");
  if (!min_free.ok()) return Fail(std::string(min_free.status().message()));
  if (*min_free < 0) return Fail("--min-free-space must not be negative (0 turns it off)");
  config.min_free_bytes = *min_free;
  auto uploads = flags.GetInt("max-uploads-per-client");
  if (!uploads.ok() || *uploads < 1 || *uploads > 10000) {
    return Fail("--max-uploads-per-client must be a number from 1 to 10000");
  }
  config.uploads.max_per_peer = static_cast<int>(*uploads);
  auto per_credential = flags.GetInt("max-uploads-per-credential");
  if (!per_credential.ok() || *per_credential < 1 || *per_credential > 10000) {
    return Fail("--max-uploads-per-credential must be a number from 1 to 10000");
  }
  config.uploads.max_per_credential = static_cast<int>(*per_credential);
  if (!absl::ParseDuration(flags.Get("upload-idle-timeout"), &config.uploads.idle_timeout) ||
      config.uploads.idle_timeout < absl::Seconds(1)) {
    return Fail("--upload-idle-timeout must be a duration of at least 1s, e.g. 2m or 30s");
  }
  auto token = modeldist::services::LoadAdminToken(flags.Get("admin-token-file"));
  if (!token.ok()) return Fail(std::string(token.status().message()));
  config.admin_token = *std::move(token);

  // Block SIGINT/SIGTERM before any thread starts so only the waiter below receives them.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  auto server = modeldist::services::ModeldistServer::Start(config);
  if (!server.ok()) return Fail(std::string(server.status().message()));

  // HOST:PORT as flagged, with the port actually bound (port 0 picks one).
  auto bound = [](const std::string& listen, int port) {
    return absl::StrCat(listen.substr(0, listen.rfind(':')), ":", port);
  };
  const std::string address = bound(config.listen, (*server)->port());
  std::cerr << "modeldist-server listening on " << address << " (data: " << config.data_dir << ", "
            << (config.tls_cert_file.empty() ? "plaintext" : "TLS") << ", manifest keys "
            << (*server)->signing_key_id() << ")\n";
  if (!config.http_listen.empty()) {
    std::cerr << "modeldist-server: HTTP on " << bound(config.http_listen, (*server)->http_port())
              << " (blobs at /v1/blobs/sha256:<hex>, manifests at " << config.http_manifest_path
              << ", /metrics, /healthz, /readyz)\n";
  }
  fprintf(stderr, kNextSteps, address.c_str(), address.c_str(), address.c_str());
  // The HTTP port first: scripts wait for --port-file alone and then read both.
  for (const auto& [flag, port] :
       {std::pair<std::string, int>{"http-port-file", (*server)->http_port()},
        {"port-file", (*server)->port()}}) {
    if (flags.Get(flag).empty()) continue;
    auto s = modeldist::WriteFileAtomically(flags.Get(flag), absl::StrCat(port, "\n"), 0644);
    if (!s.ok()) return Fail(std::string(s.message()));
  }

  std::thread waiter([&] {
    int sig = 0;
    sigwait(&signals, &sig);
    std::cerr << "modeldist-server: signal " << sig << ", shutting down\n";
    (*server)->Shutdown();
  });
  (*server)->Wait();
  waiter.join();
  return 0;
}
