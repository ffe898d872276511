// File: modeldist_origin.h
//
// A read-only Origin on another modeldist-server: object "<...>sha256/<hex>" is blob
// sha256:<hex>, read with the upstream's ArtifactService.Read (received without the parse copy,
// client/download/raw_read.h) and sized with Stat. With it in the origins file a server is a
// pull-through cache: what it does not hold it reads through from the upstream, checked against
// the chain as from any origin (services/read_through.h).
//
// Put and Delete are refused (the upstream is written by its own publishers), and there is no
// device URL: devices reach the blobs through this server.
#ifndef MODELDIST_STORAGE_ORIGIN_MODELDIST_ORIGIN_H_
#define MODELDIST_STORAGE_ORIGIN_MODELDIST_ORIGIN_H_

#include <grpcpp/channel.h>

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "common/retry_policy.h"
#include "storage/origin/origin.h"

namespace modeldist::origin {

struct ModeldistOriginOptions {
  std::string name;
  std::string target;   // host:port of the upstream's gRPC listener
  std::string ca_file;  // TLS with this CA; empty: plaintext
  // A Read that failed in a way that may pass (UNAVAILABLE, DEADLINE_EXCEEDED) resumes after
  // the bytes delivered; a Stat is repeated.
  RetryPolicy retry;
};

class ModeldistOrigin final : public Origin {
 public:
  // FAILED_PRECONDITION (TLS_CA_UNREADABLE) when the CA file cannot be read. Connects lazily.
  static absl::StatusOr<std::unique_ptr<ModeldistOrigin>> Create(ModeldistOriginOptions options);

  const std::string& name() const override { return options_.name; }
  // FAILED_PRECONDITION (ORIGIN_READ_ONLY).
  absl::Status Put(const std::string& key, const http::BodyReader& source, int64_t size,
                   const std::string& sha256_hex, const PutProgress& progress) override;
  // Stat of the key's blob: its size (the SHA-256 is the key's: a modeldist-server serves only
  // verified blobs, and the reader checks again). A key that names no blob (the access check's
  // probe) asks for a digest no blob has, so the answer (NOT_FOUND) still shows that the
  // upstream answers.
  absl::StatusOr<ObjectInfo> Head(const std::string& key) override;
  // Read of the key's blob from `offset`; the upstream's answer codes with their reasons
  // (NOT_FOUND BLOB_NOT_FOUND, ...), prefixed with "<name>: Read sha256:<hex>".
  absl::Status Get(const std::string& key, int64_t offset, int64_t length, const ByteSink& sink,
                   const std::atomic<bool>* cancel) override;
  // FAILED_PRECONDITION (ORIGIN_NO_DEVICE_URL): devices read through this server.
  absl::StatusOr<std::string> DeviceUrl(const std::string& key, int64_t expires_unix) override;
  // FAILED_PRECONDITION (ORIGIN_READ_ONLY).
  absl::Status Delete(const std::string& key) override;

 private:
  ModeldistOrigin(ModeldistOriginOptions options, std::shared_ptr<grpc::Channel> channel)
      : options_(std::move(options)), channel_(std::move(channel)) {}

  // One Read from `offset` (limit `length`, < 0: to the end); `delivered` counts the bytes
  // handed to `sink`.
  absl::Status ReadOnce(const std::string& digest, int64_t offset, int64_t length,
                        const ByteSink& sink, const std::atomic<bool>* cancel, int64_t* delivered);

  const ModeldistOriginOptions options_;
  const std::shared_ptr<grpc::Channel> channel_;
};

// The blob digest ("sha256:<hex>") an object key names: its last "sha256/<64 hex>". NOT_FOUND
// (reason ORIGIN_KEY_NOT_A_BLOB) for any other key.
absl::StatusOr<std::string> DigestOfKey(const std::string& key);

}  // namespace modeldist::origin

#endif  // MODELDIST_STORAGE_ORIGIN_MODELDIST_ORIGIN_H_
