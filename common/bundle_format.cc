#include "common/bundle_format.h"

#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "common/digest.h"
#include "common/status.h"

namespace modeldist {
namespace {

constexpr absl::string_view kHeader = "modeldist-bundle v1";

absl::Status Malformed(int line, absl::string_view what) {
  return MakeError(absl::StatusCode::kInvalidArgument, "BUNDLE_MALFORMED",
                   absl::StrCat("the bundle's INDEX, line ", line, ": ", what,
                                "; export the bundle again with `modeldistctl bundle export`"));
}

}  // namespace

std::string BundleRootEntry(int64_t version) { return absl::StrCat("roots/", version, ".pb"); }

std::string BundleBlobEntry(absl::string_view digest) {
  absl::string_view hex = digest;
  absl::ConsumePrefix(&hex, "sha256:");
  return absl::StrCat("blobs/sha256-", hex);
}

std::string SerializeBundleIndex(const BundleIndex& index) {
  std::string out = absl::StrCat(kHeader, "\n");
  for (int64_t i = 0; i < index.root_count; ++i) {
    absl::StrAppend(&out, "root ", BundleRootEntry(index.first_root + i), "\n");
  }
  absl::StrAppend(&out, "manifest ", kBundleManifestEntry, "\n");
  if (index.blob.has_value()) {
    absl::StrAppend(&out, "blob ", BundleBlobEntry(index.blob->digest), " ", index.blob->size,
                    "\n");
  }
  return out;
}

absl::StatusOr<BundleIndex> ParseBundleIndex(absl::string_view text) {
  std::vector<absl::string_view> lines = absl::StrSplit(text, '\n');
  if (!lines.empty() && lines.back().empty()) lines.pop_back();
  if (lines.empty() || lines[0] != kHeader) {
    return Malformed(1, absl::StrCat("expected \"", kHeader, "\""));
  }
  BundleIndex index;
  bool manifest = false;
  for (size_t i = 1; i < lines.size(); ++i) {
    const int n = static_cast<int>(i + 1);
    std::vector<absl::string_view> fields = absl::StrSplit(lines[i], ' ');
    if (fields[0] == "root" && fields.size() == 2 && !manifest) {
      absl::string_view name = fields[1];
      int64_t version = 0;
      if (!absl::ConsumePrefix(&name, "roots/") || !absl::ConsumeSuffix(&name, ".pb") ||
          !absl::SimpleAtoi(name, &version) || version < 1 || version > kMaxBundleRootVersion ||
          BundleRootEntry(version) != fields[1]) {
        return Malformed(n, absl::StrCat("\"", fields[1], "\" is not roots/<version>.pb"));
      }
      if (index.root_count == 0) {
        index.first_root = version;
      } else if (version != index.first_root + index.root_count) {
        return Malformed(n, "root versions must be consecutive");
      }
      if (++index.root_count > kMaxBundleRoots) return Malformed(n, "too many roots");
    } else if (fields[0] == "manifest" && fields.size() == 2 && !manifest && index.root_count > 0 &&
               fields[1] == kBundleManifestEntry) {
      manifest = true;
    } else if (fields[0] == "blob" && fields.size() == 3 && manifest && !index.blob) {
      absl::string_view name = fields[1];
      BundleBlob blob;
      if (!absl::ConsumePrefix(&name, "blobs/sha256-") ||
          !ParseDigest("blob", absl::StrCat("sha256:", name)).ok()) {
        return Malformed(n, absl::StrCat("\"", fields[1], "\" is not blobs/sha256-<64 hex>"));
      }
      blob.digest = absl::StrCat("sha256:", name);
      if (!absl::SimpleAtoi(fields[2], &blob.size) || blob.size < 0) {
        return Malformed(n, "bad blob size");
      }
      index.blob = std::move(blob);
    } else {
      return Malformed(n, absl::StrCat("unexpected \"", lines[i],
                                       "\" (order: roots, manifest, "
                                       "at most one blob)"));
    }
  }
  if (!manifest) return Malformed(static_cast<int>(lines.size()), "no manifest and roots listed");
  return index;
}

}  // namespace modeldist
