#include "services/origin_repair.h"

#include <iostream>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "common/digest.h"
#include "common/status.h"
#include "services/blob_import.h"
#include "storage/origin/origin_config.h"

namespace modeldist::services {

OriginRepair::~OriginRepair() { Stop(); }

void OriginRepair::Damaged(const std::string& hex) {
  {
    absl::MutexLock lock(&mu_);
    reported_.insert(hex);
  }
  loop_.Wake();
}

void OriginRepair::Start() { loop_.Start(); }

void OriginRepair::Stop() { loop_.Stop(); }

absl::Duration OriginRepair::Pass() {
  absl::StatusOr<int> pass = RunOnce();
  if (!pass.ok()) std::cerr << "modeldist-server: repair from origins: " << pass.status() << "\n";
  return retry_interval_;
}

absl::StatusOr<int> OriginRepair::RunOnce() {
  std::set<std::string> todo;
  {
    absl::MutexLock lock(&mu_);
    todo.swap(reported_);
  }
  MD_ASSIGN_OR_RETURN(std::vector<storage::DamagedBlob> damaged, catalog_->ListDamagedBlobs());
  for (const storage::DamagedBlob& d : damaged) {
    absl::string_view hex = d.digest;
    if (absl::ConsumePrefix(&hex, "sha256:")) todo.insert(std::string(hex));
  }
  int repaired = 0;
  for (const std::string& hex : todo) {
    if (loop_.stopping()) break;
    const absl::Status status = Repair(hex);
    if (status.ok()) {
      ++repaired;
    } else if (!absl::IsNotFound(status)) {
      std::cerr << "modeldist-server: blob " << FormatDigest(hex)
                << " could not be repaired from its replicas: " << status << "\n";
    }
  }
  return repaired;
}

absl::Status OriginRepair::Repair(const std::string& hex) {
  const std::string digest = FormatDigest(hex);
  MD_ASSIGN_OR_RETURN(const int64_t size, catalog_->DeclaredSize(digest));
  MD_ASSIGN_OR_RETURN(std::vector<v1::Replica> replicas, catalog_->ListReplicas(digest));
  absl::Status last = MakeError(absl::StatusCode::kNotFound, "NO_CONFIRMED_REPLICA",
                                absl::StrCat("no origin holds a confirmed copy of ", digest));
  // In the origins file's order.
  for (const origin::ConfiguredOrigin& target : origins_->origins()) {
    bool confirmed = false;
    for (const v1::Replica& r : replicas) {
      confirmed |= r.origin() == target.config.name() && r.state() == v1::Replica::CONFIRMED;
    }
    if (!confirmed || loop_.stopping()) continue;
    last = FetchFrom(target, hex, size);
    if (last.ok()) {
      std::cerr << "modeldist-server: blob " << digest << " was fetched back from origin "
                << target.config.name() << "\n";
      health_->Restored(hex);
      return absl::OkStatus();
    }
    last = WithContext(last, absl::StrCat("origin ", target.config.name()));
  }
  return last;
}

absl::Status OriginRepair::FetchFrom(const origin::ConfiguredOrigin& target, const std::string& hex,
                                     int64_t size) {
  auto get = [&](int64_t offset, int64_t length, const origin::ByteSink& sink) {
    return target.origin->Get(origin::BlobKey(target.config, hex), offset, length, sink, nullptr);
  };
  return FetchIntoStore(blobs_, hex, size, get, [this](int64_t) {
    return loop_.stopping() ? WakeableLoop::StoppingError() : absl::OkStatus();
  });
}

}  // namespace modeldist::services
