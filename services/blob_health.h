// File: blob_health.h
//
// What the server does when stored bytes turn out not to be what was verified: one place that
// every check reports to (ArtifactService's Read and Stat, the manifest cache finding a blob
// gone, the scrub), so damage is handled the same way wherever it is found:
//
//   1. contained: the blob and its sidecar move to quarantine/ (BlobStore::Quarantine), so
//      they are never served again, but nothing is deleted;
//   2. recorded: the catalog's damaged_blobs gets the digest, with an audit entry;
//   3. told: a line on stderr, and a count (damage_reports) for monitoring;
//   4. withheld: the signed manifests are rebuilt, and a device asking for an artifact with
//      damaged bytes gets UNAVAILABLE (ARTIFACT_DAMAGED) instead of a manifest. Devices that
//      already installed it keep what they have (they verified it); none is moved to another
//      version because of a server's disk.
//
// Healing: storing a verified copy again (a re-publish of the same file, or a copy fetched
// back from an origin that holds a confirmed replica: services/origin_repair.h) reports
// Restored, which clears the record (audit entry) and brings the manifests back.
//
// Thread-safe. Reports do file and catalog I/O: call them where blocking is fine.
#ifndef MODELDIST_SERVICES_BLOB_HEALTH_H_
#define MODELDIST_SERVICES_BLOB_HEALTH_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "storage/blob_store.h"
#include "storage/catalog.h"

namespace modeldist::services {

class BlobHealth {
 public:
  // `catalog` and `blobs` must outlive this.
  BlobHealth(storage::Catalog* catalog, storage::BlobStore* blobs)
      : catalog_(catalog), blobs_(blobs) {}

  // Called after the catalog's record of damage changed (the server rebuilds the manifests).
  // Set once, before the server serves.
  void set_on_change(std::function<void()> on_change) { on_change_ = std::move(on_change); }
  // Called with the blob's hex after Report recorded new damage (the server fetches a
  // replica back: services/origin_repair.h). Set once, before the server serves.
  void set_on_damage(std::function<void(const std::string& hex)> on_damage) {
    on_damage_ = std::move(on_damage);
  }

  // Says whether blob `hex`, when it is not stored here, is fetched from the origins on demand
  // (services/read_through.h: a chain is recorded for it). Such a blob is not damaged by being
  // absent. Set once, before the server serves.
  void set_fetchable(std::function<bool(const std::string& hex)> fetchable) {
    fetchable_ = std::move(fetchable);
  }
  bool Fetchable(const std::string& hex) const { return fetchable_ && fetchable_(hex); }

  // `problem` is what a check of blob `hex` (64 hex) found. DATA_LOSS (bytes or size wrong)
  // is damage. NOT_FOUND is damage only while a PUBLISHED version declares the digest (its
  // file vanished) and it is not Fetchable; an unknown digest is just not stored. Anything else (an
  // I/O error, a cancelled read) says nothing about the bytes and is ignored. Returns true when
  // this report recorded new damage.
  bool Report(absl::string_view hex, const absl::Status& problem);

  // What is recorded for a blob `digest` (sha256:<hex>) whose file is gone.
  static std::string MissingDetails(absl::string_view digest);

  // A verified copy of blob `hex` is stored again: clears a damage record, if any.
  void Restored(absl::string_view hex);

  // Damage recorded by this process since it started (for logs and metrics).
  int64_t damage_reports() const { return damage_reports_.load(std::memory_order_relaxed); }

 private:
  storage::Catalog* catalog_;
  storage::BlobStore* blobs_;
  std::function<void()> on_change_;
  std::function<void(const std::string& hex)> on_damage_;
  std::function<bool(const std::string& hex)> fetchable_;
  absl::Mutex mu_;  // one report at a time: quarantine and record stay in step
  std::atomic<int64_t> damage_reports_{0};
};

}  // namespace modeldist::services

#endif  // MODELDIST_SERVICES_BLOB_HEALTH_H_
