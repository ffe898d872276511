// File: digest.h
//
// Content digests (`sha256:<64 lowercase hex>`) and a streaming SHA-256 built on OpenSSL, so
// every component hashes the same way and in one pass with its I/O.
#ifndef MODELDIST_COMMON_DIGEST_H_
#define MODELDIST_COMMON_DIGEST_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace modeldist {

inline constexpr absl::string_view kSha256Prefix = "sha256:";

// Parses `digest` and returns its 64 lowercase hex digits. Upper-case hex, other algorithms,
// wrong length or a missing prefix give INVALID_ARGUMENT naming `field`.
absl::StatusOr<std::string> ParseDigest(absl::string_view field, absl::string_view digest);

// Returns `sha256:` + hex.
std::string FormatDigest(absl::string_view hex);

// Lowercase hex of `bytes`.
std::string HexEncode(absl::string_view bytes);

// An incremental SHA-256. Not thread-safe. Copyable (the copy continues independently), so a
// resumable upload can keep a hash state per session.
//
// It can also stop and restart at a 64-byte boundary: ChainingValue() is SHA-256's internal
// state (H0..H7) after a prefix, and Resume() continues from it. modeldist's chunk chains
// (common/chunk_chain.h) are built on this, so one pass over a file both verifies every chunk
// on its own and yields the file's standard SHA-256.
class Sha256 {
 public:
  // The chaining value of the empty prefix: SHA-256's initial hash value (FIPS 180-4, 5.3.3).
  static constexpr size_t kBlockBytes = 64;
  static constexpr size_t kStateBytes = 32;

  Sha256();
  Sha256(const Sha256& other);
  Sha256& operator=(const Sha256& other);
  ~Sha256();

  // Continues a hash whose first `prefix_bytes` bytes (a multiple of kBlockBytes) left the
  // chaining value `state` (kStateBytes, as ChainingValue returns it). INVALID_ARGUMENT for a
  // wrong state length or a prefix that is negative or not block-aligned.
  static absl::StatusOr<Sha256> Resume(absl::string_view state, int64_t prefix_bytes);

  void Update(const void* data, size_t size);
  void Update(absl::string_view data) { Update(data.data(), data.size()); }
  // Bytes passed to Update (and the resumed prefix).
  int64_t bytes() const;
  // The 32-byte chaining value (H0..H7, big-endian) after the bytes so far, which must be a
  // multiple of kBlockBytes (CHECKed: a caller bug otherwise). Does not end the hash.
  std::string ChainingValue() const;
  // Returns the digest of everything passed to Update, as lowercase hex or as 32 raw bytes.
  // The object must not be used afterwards except to be destroyed or assigned.
  std::string FinishHex();
  std::string FinishRaw();

  // One-shot helper.
  static std::string HexOf(absl::string_view data);

 private:
  struct Ctx;
  std::unique_ptr<Ctx> ctx_;
};

// Hashes the file at `path` in one pass; returns {hex, size}. NOT_FOUND if it does not exist.
struct FileDigest {
  std::string hex;
  int64_t size = 0;
};
absl::StatusOr<FileDigest> DigestFile(const std::string& path);

}  // namespace modeldist

#endif  // MODELDIST_COMMON_DIGEST_H_
