// File: bundle_format.h
//
// The layout of a model bundle: one tar (common/tar.h) that carries what a device needs to
// install a model without the network, in the order a reader needs it, so that it can be
// verified while it is read front to back:
//
//   INDEX                    this list, as text (below)
//   roots/<N>.pb             SignedTrustRoot version N, for N = 1 .. newest (as the server
//                            signed it), so that a device that pinned any of them can walk to
//                            the newest
//   manifest.pb              the SignedManifest exactly as the server signed it
//   blobs/sha256-<hex>       the artifact's bytes (absent in a manifest-only bundle, which
//                            serves `modeldist-agent adopt` of a file the app already ships)
//
// INDEX is UTF-8 text, one entry per line, in archive order:
//   modeldist-bundle v1
//   root roots/1.pb
//   manifest manifest.pb
//   blob blobs/sha256-<64 hex> <size in bytes>
// Nothing in INDEX is trusted: it only says what comes, so that a reader can refuse an
// unexpected entry before reading it. Everything is then verified against the device's
// trusted root (docs/agent.md, "Bundled models").
#ifndef MODELDIST_COMMON_BUNDLE_FORMAT_H_
#define MODELDIST_COMMON_BUNDLE_FORMAT_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace modeldist {

inline constexpr absl::string_view kBundleIndexEntry = "INDEX";
inline constexpr absl::string_view kBundleManifestEntry = "manifest.pb";
// INDEX, a root and a manifest are read whole; larger entries are refused unread.
inline constexpr int64_t kMaxBundleIndexBytes = 64 * 1024;
inline constexpr int64_t kMaxBundleRootBytes = 1 << 20;
inline constexpr int64_t kMaxBundleManifestBytes = 16 << 20;
// Roots a bundle may carry (a rotation a day for ten years is far less).
inline constexpr int64_t kMaxBundleRoots = 4096;
// The highest root version INDEX may name: far past any real rotation, and low enough that
// first_root + root_count can never overflow.
inline constexpr int64_t kMaxBundleRootVersion = int64_t{1} << 40;

struct BundleBlob {
  std::string digest;  // sha256:<hex>
  int64_t size = 0;
};

struct BundleIndex {
  int64_t first_root = 1;  // versions first_root .. first_root + root_count - 1
  int64_t root_count = 0;
  std::optional<BundleBlob> blob;  // nullopt: a manifest-only bundle
};

// "roots/<version>.pb" and "blobs/sha256-<hex>" (digest is sha256:<hex>).
std::string BundleRootEntry(int64_t version);
std::string BundleBlobEntry(absl::string_view digest);

std::string SerializeBundleIndex(const BundleIndex& index);

// Parses INDEX strictly: the header line, at least one root, consecutive root versions from
// first_root (each at most kMaxBundleRootVersion), exactly one manifest, at most one blob with a
// well-formed digest, in that order. INVALID_ARGUMENT (BUNDLE_MALFORMED) naming the line otherwise.
absl::StatusOr<BundleIndex> ParseBundleIndex(absl::string_view text);

}  // namespace modeldist

#endif  // MODELDIST_COMMON_BUNDLE_FORMAT_H_
