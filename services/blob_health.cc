#include "services/blob_health.h"

#include <iostream>
#include <string>

#include "absl/strings/str_cat.h"
#include "common/digest.h"
#include "common/status.h"

namespace modeldist::services {
namespace {

// The audit actor of changes the server makes on its own.
constexpr absl::string_view kServerActor = "modeldist-server";

}  // namespace

std::string BlobHealth::MissingDetails(absl::string_view digest) {
  return absl::StrCat("blob ", digest,
                      " is gone from the blob store while a published version declares it");
}

bool BlobHealth::Report(absl::string_view hex, const absl::Status& problem) {
  const std::string digest = FormatDigest(hex);
  if (absl::IsNotFound(problem)) {
    if (ErrorReason(problem) == "BLOB_QUARANTINED") return false;  // known already
    if (Fetchable(std::string(hex))) return false;                 // read through instead
    absl::StatusOr<bool> published = catalog_->IsDigestPublished(digest);
    if (!published.ok() || !*published) return false;
  } else if (!absl::IsDataLoss(problem)) {
    return false;
  }
  const std::string details =
      absl::IsNotFound(problem) ? MissingDetails(digest) : std::string(problem.message());
  bool recorded = false;
  {
    absl::MutexLock lock(&mu_);
    // Contain first: once moved, no reader opens the damaged file again.
    absl::Status moved = blobs_->Quarantine(hex, details);
    absl::StatusOr<bool> marked = catalog_->MarkBlobDamaged(digest, details, kServerActor);
    if (!moved.ok() || !marked.ok()) {
      std::cerr << "modeldist-server: blob " << digest << " is damaged (" << details
                << ") and could not be "
                << (moved.ok() ? absl::StrCat("recorded: ", marked.status().ToString())
                               : absl::StrCat("quarantined: ", moved.ToString()))
                << std::endl;
    }
    recorded = marked.ok() && *marked;
    if (recorded) {
      damage_reports_.fetch_add(1, std::memory_order_relaxed);
      std::cerr << "modeldist-server: blob " << digest << " is damaged: " << details
                << "; quarantined under quarantine/" << hex
                << "/, its manifests are withheld until the file is published again" << std::endl;
    }
  }
  if (recorded && on_change_) on_change_();
  if (recorded && on_damage_) on_damage_(std::string(hex));
  return recorded;
}

void BlobHealth::Restored(absl::string_view hex) {
  const std::string digest = FormatDigest(hex);
  absl::StatusOr<bool> cleared;
  {
    absl::MutexLock lock(&mu_);
    cleared = catalog_->ClearBlobDamaged(digest, "a verified copy was stored again", kServerActor);
  }
  if (!cleared.ok()) {
    std::cerr << "modeldist-server: blob " << digest
              << " was stored again, but its damage record could not be cleared: "
              << cleared.status() << std::endl;
    return;
  }
  if (!*cleared) return;
  std::cerr << "modeldist-server: blob " << digest << " is restored; its manifests are back"
            << std::endl;
  if (on_change_) on_change_();
}

}  // namespace modeldist::services
