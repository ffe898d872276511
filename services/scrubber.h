// File: scrubber.h
//
// The scrub: a pass over the whole blob store that re-reads every blob from the disk and
// checks it, so damage is found before a device asks for the bytes (a blob nobody downloads
// could otherwise rot unnoticed until the day it is needed).
//
// One pass:
//   1. every blob BlobStore::ListBlobs() names is re-read with BlobStore::Verify (size and
//      every chunk against the recorded chain, bypassing the page cache). DATA_LOSS goes to
//      BlobHealth::Report, which quarantines, records and withholds it; a blob that verifies
//      while the catalog records it as damaged (someone put the file back by hand) goes to
//      BlobHealth::Restored;
//   2. every digest a PUBLISHED version declares (Catalog::ListPublishedDigests) that the
//      store does not have is MISSING, and is reported to BlobHealth as NOT_FOUND (which
//      records it, unless it is recorded already).
// The scrubber itself decides nothing about damage: BlobHealth is the one place that does.
//
// Pacing: `bytes_per_second` bounds the average read rate since the pass started (the pass
// sleeps after a read that got ahead of it), so a scrub of a multi-TB store leaves the disk
// to the fleet's downloads. Cancelling: the `cancelled` hook is asked after every read (1 MiB,
// BlobStore::Verify) and during pacing sleeps, so a pass stops within one read.
//
// One pass at a time: a second Run while one is in progress fails at once with
// FAILED_PRECONDITION (reason SCRUB_RUNNING) instead of waiting, since two passes would only
// halve each other's rate and a caller (an admin's modeldistctl) would rather be told than
// hang for hours.
//
// BackgroundScrub runs a pass every `interval` on a thread of its own (modeldist-server's
// --scrub-interval and --scrub-rate).
#ifndef MODELDIST_SERVICES_SCRUBBER_H_
#define MODELDIST_SERVICES_SCRUBBER_H_

#include <cstdint>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "services/blob_health.h"
#include "storage/blob_store.h"
#include "storage/catalog.h"

namespace modeldist::services {

// What a pass found for one blob.
enum class ScrubOutcome {
  kOk,        // stored and intact
  kDamaged,   // stored, size or bytes wrong: now quarantined and recorded
  kMissing,   // a published version declares it, the store does not have it
  kRestored,  // recorded as damaged, but stored and intact now: record cleared
};

// "ok", "damaged", "missing", "restored".
const char* ScrubOutcomeName(ScrubOutcome outcome);

// One blob's result with the pass's running totals (see ScrubBlobsResponse in registry.proto).
struct ScrubProgress {
  std::string digest;  // sha256:<hex>
  int64_t size_bytes = 0;
  ScrubOutcome outcome = ScrubOutcome::kOk;
  std::string details;
  int64_t blobs_done = 0;
  int64_t blobs_total = 0;
  int64_t bytes_done = 0;
  int64_t bytes_total = 0;
};

struct ScrubFinding {
  std::string digest;  // sha256:<hex>
  std::string details;
};

struct ScrubReport {
  int64_t blobs_checked = 0;  // stored blobs verified plus missing digests looked at
  int64_t bytes_checked = 0;  // bytes read and checked
  std::vector<ScrubFinding> damaged;
  std::vector<ScrubFinding> missing;
  std::vector<std::string> restored;  // digests
  absl::Duration duration;

  bool clean() const { return damaged.empty() && missing.empty(); }
  // "checked 12 blobs (8123456789 bytes) in 41s: 1 damaged, 0 missing, 0 restored".
  std::string Summary() const;
};

struct ScrubOptions {
  // The most bytes per second to read; 0 = as fast as the disk allows.
  int64_t bytes_per_second = 0;
  // Asked often; true stops the pass (Run returns CANCELLED). Unset: never cancelled.
  std::function<bool()> cancelled;
  // Called after each blob, on the thread of Run. Unset: nothing is told.
  std::function<void(const ScrubProgress&)> on_blob;
};

class Scrubber {
 public:
  // All must outlive this.
  Scrubber(storage::Catalog* catalog, storage::BlobStore* blobs, BlobHealth* health)
      : catalog_(catalog), blobs_(blobs), health_(health) {}

  // Runs one pass. INVALID_ARGUMENT (naming bytes_per_second) for a negative rate;
  // FAILED_PRECONDITION (SCRUB_RUNNING) while another pass runs; CANCELLED when
  // `options.cancelled` said so (what was found until then is handled all the same); an
  // error that says nothing about the bytes (listing failed, an I/O error reading a blob)
  // ends the pass with that error.
  absl::StatusOr<ScrubReport> Run(const ScrubOptions& options);

 private:
  // What the catalog recorded about the damage of `digest` (sha256:<hex>), for a blob another
  // check quarantined while the pass ran.
  std::string RecordedDamage(const std::string& digest) const;

  storage::Catalog* catalog_;
  storage::BlobStore* blobs_;
  BlobHealth* health_;
  absl::Mutex running_;  // held for a whole pass; TryLock'ed, never waited on
};

// Runs scrubber->Run every `interval` (the first one `interval` after the start, so the
// server starts fast) at `bytes_per_second`, and logs a one-line summary of each pass to
// stderr. The destructor stops a pass in progress within one read and joins the thread.
class BackgroundScrub {
 public:
  BackgroundScrub(Scrubber* scrubber, absl::Duration interval, int64_t bytes_per_second);
  ~BackgroundScrub();
  BackgroundScrub(const BackgroundScrub&) = delete;
  BackgroundScrub& operator=(const BackgroundScrub&) = delete;

  // Stops a pass in progress and the thread; idempotent.
  void Stop();

 private:
  void Loop();

  Scrubber* scrubber_;
  absl::Duration interval_;
  int64_t bytes_per_second_;
  absl::Mutex stop_mu_;  // serializes Stop
  absl::Notification stop_;
  std::thread thread_;
};

}  // namespace modeldist::services

#endif  // MODELDIST_SERVICES_SCRUBBER_H_
