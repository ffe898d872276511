#include "services/publish_checks.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "common/digest.h"
#include "common/status.h"
#include "storage/catalog.h"

namespace modeldist::services {
namespace {

// A stored blob as the checks read it: ReadAt on the store's open, verified file.
class BlobSource final : public model_check::ByteSource {
 public:
  explicit BlobSource(storage::BlobReader reader) : reader_(std::move(reader)) {}
  int64_t size() const override { return reader_.size(); }
  absl::StatusOr<size_t> ReadAt(int64_t offset, char* buf, size_t size) const override {
    return reader_.ReadAt(offset, buf, size);
  }

 private:
  storage::BlobReader reader_;
};

}  // namespace

absl::StatusOr<std::map<std::string, v1::ModelInfo>> CheckVersionArtifacts(
    const v1::Version& version, const storage::BlobStore& blobs,
    const model_check::CheckOptions& options) {
  std::map<std::string, v1::ModelInfo> infos;
  for (const v1::Artifact& artifact : version.artifacts()) {
    if (!model_check::HasCheck(artifact.format()) || infos.count(artifact.digest()) > 0) continue;
    MD_ASSIGN_OR_RETURN(std::string hex, ParseDigest("digest", artifact.digest()));
    if (!blobs.Contains(hex)) continue;
    const std::string where =
        absl::StrCat("cannot publish ", version.name(), ": its artifact ",
                     storage::ArtifactKey(artifact), " (", artifact.digest(), ")");
    absl::StatusOr<storage::BlobReader> reader = blobs.OpenBlob(hex);
    if (!reader.ok()) return WithContext(reader.status(), where);
    BlobSource source(*std::move(reader));
    absl::StatusOr<v1::ModelInfo> info =
        model_check::CheckModel(artifact.format(), source, options);
    if (!info.ok()) return WithContext(info.status(), absl::StrCat(where, " is not a valid model"));
    infos.emplace(artifact.digest(), *std::move(info));
  }
  return infos;
}

}  // namespace modeldist::services
