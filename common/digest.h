// File: digest.h
//
// Content digests (`sha256:<64 lowercase hex>`) and a streaming SHA-256 built on OpenSSL EVP,
// so every component hashes the same way and in one pass with its I/O.
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
class Sha256 {
 public:
  Sha256();
  Sha256(const Sha256& other);
  Sha256& operator=(const Sha256& other);
  ~Sha256();

  void Update(const void* data, size_t size);
  void Update(absl::string_view data) { Update(data.data(), data.size()); }
  // Returns the lowercase hex digest of everything passed to Update. The object must not be
  // used afterwards except to be destroyed or assigned.
  std::string FinishHex();

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
