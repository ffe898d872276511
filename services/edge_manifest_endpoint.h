// File: edge_manifest_endpoint.h
//
// The seed's edge function, served by modeldist, so that apps shipped against the hand-made
// flow (docs: the seed's step 5 and 6) keep working without an update:
//
//   POST /functions/v1/local-llm-manifest   {"platform":"macos","tier":"llama8b"}
//        (optional "arch": "arm64"|"x86_64", "channel", "device_id"; other fields ignored)
//
// answers, for each architecture asked (both when "arch" is absent), what GetManifest would
// answer a device of it: the same selection, rollouts and pins. The JSON names the artifacts
// after the seed's secrets, LOCAL_LLM_MACOS_COREML_ZIP_{URL,SHA256,SIZE_BYTES} and
// LOCAL_LLM_MACOS_INTEL_GGUF_*:
//
//   {"tier": "llama8b", "channel": "stable", "platform": "macos",
//    "coreml_zip": {"url": "...", "sha256": "<hex>", "size_bytes": 4500000000},
//    "intel_gguf": {"url": "...", "sha256": "<hex>", "size_bytes": 4700000000},
//    "artifacts": [{"arch": "arm64", "format": "coreml_zip", "model": "...", "version": "...",
//                   "url": "...", "sha256": "...", "size_bytes": ..., "mirrors": [...],
//                   "signed_manifest": {"manifest": "<base64>", "signatures": [...]}}]}
//
// `signed_manifest` is the SignedManifest in protobuf's JSON (as grpcurl and buf curl print
// it), so apps that verify use the openssl recipe of docs/verify-manifest.md on it as is. A
// blob URL is `public_url` + /v1/blobs/sha256:<hex> (a CDN in front of this origin), else this
// listener's own, as the request reached it (its Host header).
//
// Errors are JSON ({"error": {"code", "reason", "message"}}, http_error.h); every answer has
// CORS headers, and OPTIONS answers a browser's preflight.
#ifndef MODELDIST_SERVICES_EDGE_MANIFEST_ENDPOINT_H_
#define MODELDIST_SERVICES_EDGE_MANIFEST_ENDPOINT_H_

#include <grpcpp/support/status.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "modeldist/v1/manifest.pb.h"
#include "services/http_server/listener.h"

namespace modeldist::services {

struct EdgeManifestOptions {
  // Where the endpoint is served; the seed's path by default.
  std::string path = "/functions/v1/local-llm-manifest";
  // The base of blob URLs without a trailing slash, e.g. https://models.example.com (a CDN
  // whose origin is this listener); empty: this listener.
  std::string public_url;
  // Whether this listener speaks HTTPS (for its own URLs).
  bool tls = false;
};

class EdgeManifestEndpoint {
 public:
  // GetManifest's answer to one request (ManifestServiceImpl::Answer).
  using Answerer = std::function<grpc::Status(const v1::GetManifestRequest&, v1::SignedManifest*)>;

  EdgeManifestEndpoint(Answerer answer, EdgeManifestOptions options)
      : answer_(std::move(answer)), options_(std::move(options)) {}

  const std::string& path() const { return options_.path; }
  http_server::Response Serve(const http_server::Request& request) const;

 private:
  // What an answer takes from one signed manifest, the same for every request that gets it:
  // rendered once, since parsing a manifest (its chunk chain has an entry per 4 MiB) and
  // base64-encoding it cost most of an answer's CPU.
  struct Rendered {
    std::string manifest;  // the signed bytes (the memo's check)
    std::string digest;    // sha256:<hex>
    std::string hex;
    int64_t size_bytes = 0;
    std::string seed_name;    // "coreml_zip", "intel_gguf" or ""
    std::string fields;       // `{"arch":..,"format":..,"model":..,"version":..`
    std::string signed_head;  // `{"manifest":"<base64>","signatures":[..]`
  };
  static constexpr size_t kMaxRendered = 4096;
  absl::StatusOr<std::shared_ptr<const Rendered>> Render(
      const v1::SignedManifest& signed_manifest) const ABSL_LOCKS_EXCLUDED(mu_);

  // The answer to a POST; `device_id` gets the one the body names, for the request log.
  http_server::Response Answer(const http_server::Request& request, std::string* device_id) const;

  Answerer answer_;
  EdgeManifestOptions options_;
  mutable absl::Mutex mu_;
  // By the first signature (or the bytes, unsigned).
  mutable absl::flat_hash_map<std::string, std::shared_ptr<const Rendered>> rendered_
      ABSL_GUARDED_BY(mu_);
};

}  // namespace modeldist::services

#endif  // MODELDIST_SERVICES_EDGE_MANIFEST_ENDPOINT_H_
