// File: blob_import.h
//
// Bringing bytes that live elsewhere into the blob store as a verified blob: the one fetch loop
// of the repair from replicas (origin_repair.h) and of RegistryService.ImportArtifact, which
// imports the objects a team already hosts (a bucket key in a configured origin, or a URL,
// with the SHA-256 and size its secrets hold).
//
// The bytes go through the store's upload of the digest: BlobStore::Append hashes them as it
// writes, and Finish stores the blob only when its SHA-256 and size are the digest's,
// computing its chunk chain in the same pass. A fetch resumes after what the upload already
// holds (an interrupted import, or bytes another origin sent before failing); the final check
// covers every byte, whoever sent it. A mismatch stores nothing and drops the upload.
#ifndef MODELDIST_SERVICES_BLOB_IMPORT_H_
#define MODELDIST_SERVICES_BLOB_IMPORT_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "modeldist/v1/registry.pb.h"
#include "storage/blob_store.h"
#include "storage/origin/origin.h"
#include "storage/origin/origin_set.h"

namespace modeldist::services {

// The block BlockBuffer gathers for the store when bytes are fetched (FetchIntoStore,
// read-through): memory per fetch stays at this.
inline constexpr size_t kFetchBlockBytes = 1 << 20;

// Collects the small pieces a transfer delivers (curl hands over 16 KiB at a time) into blocks
// of `block` bytes for `write`: one store append (a lock and a few system calls) per block
// instead of per piece. read_through_bench measured the per-piece appends at about 3.6 s of
// server CPU per GB.
class BlockBuffer {
 public:
  // `write` gets each block; it may take the string's buffer (swap it with an empty one).
  BlockBuffer(size_t block, std::function<absl::Status(std::string* block)> write)
      : block_(block), write_(std::move(write)) {}
  // Writes every whole block; keeps the rest.
  absl::Status Add(absl::string_view piece);
  // Writes what is kept. Call it when the transfer ends, also after an error (the bytes that
  // arrived are good to keep).
  absl::Status Flush();

 private:
  const size_t block_;
  const std::function<absl::Status(std::string* block)> write_;
  std::string held_;
};

// Streams the source's bytes [offset, offset + length) to `sink`.
using SourceGet =
    std::function<absl::Status(int64_t offset, int64_t length, const origin::ByteSink& sink)>;

// Fetches blob `hex` of `size` bytes with `get` into the store and stores it. `on_bytes` (may
// be empty) is told the bytes held after each piece; its error stops the fetch (CANCELLED keeps
// what was fetched). `source_error` (may be empty) rewrites an error of `get` itself, not one
// of the store or of `on_bytes`, which come back as they are. OK at once when the blob is
// stored already.
absl::Status FetchIntoStore(
    storage::BlobStore* blobs, const std::string& hex, int64_t size, const SourceGet& get,
    const std::function<absl::Status(int64_t held)>& on_bytes = nullptr,
    const std::function<absl::Status(const absl::Status&)>& source_error = nullptr);

// Where an import's bytes are: object `key` of a configured origin (the key as stored, the
// origin's key_prefix not added), or a URL fetched without credentials (a public bucket, a
// presigned or signed URL).
struct ImportSource {
  std::string origin;
  std::string key;
  std::string url;
};

// The SourceGet of `source`: ranged reads of the origin's object, or of the URL (http or https
// only). INVALID_ARGUMENT naming the field for a source that is not exactly one of the two
// forms or an unusable URL; NOT_FOUND (ORIGIN_NOT_FOUND) for an origin not configured.
absl::StatusOr<SourceGet> ImportGet(const origin::OriginSet* origins, const ImportSource& source,
                                    const std::atomic<bool>* cancel);

// RegistryService.ImportArtifact (registry.proto) after the admin check: validates
// `request`, fetches its source into `blobs` and stores the blob. `write` gets each progress
// message and returns false when the client is gone; `cancelled` says the client cancelled.
// The source's errors keep their code with reason IMPORT_SOURCE_FAILED.
absl::Status ImportArtifact(const origin::OriginSet* origins, storage::BlobStore* blobs,
                            const v1::ImportArtifactRequest& request,
                            const std::function<bool(const v1::ImportArtifactProgress&)>& write,
                            const std::function<bool()>& cancelled);

}  // namespace modeldist::services

#endif  // MODELDIST_SERVICES_BLOB_IMPORT_H_
