#include "services/scrubber.h"

#include <algorithm>
#include <iostream>
#include <map>
#include <set>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/digest.h"
#include "common/status.h"

namespace modeldist::services {
namespace {

// The longest a pacing sleep goes without asking whether the pass was cancelled: a stop
// (shutdown, a client's cancel) waits at most this long.
constexpr absl::Duration kCancelPoll = absl::Milliseconds(50);

// Sleeps until `until`, in slices of kCancelPoll; false when cancelled meanwhile.
bool SleepUntil(absl::Time until, const std::function<bool()>& cancelled) {
  for (absl::Time now = absl::Now(); now < until; now = absl::Now()) {
    if (cancelled && cancelled()) return false;
    absl::SleepFor(std::min(until - now, kCancelPoll));
  }
  return true;
}

}  // namespace

const char* ScrubOutcomeName(ScrubOutcome outcome) {
  switch (outcome) {
    case ScrubOutcome::kOk:
      return "ok";
    case ScrubOutcome::kDamaged:
      return "damaged";
    case ScrubOutcome::kMissing:
      return "missing";
    case ScrubOutcome::kRestored:
      return "restored";
  }
  return "unknown";
}

std::string ScrubReport::Summary() const {
  return absl::StrCat("checked ", blobs_checked, " blobs (", bytes_checked, " bytes) in ",
                      absl::FormatDuration(absl::Trunc(duration, absl::Milliseconds(1))), ": ",
                      damaged.size(), " damaged, ", missing.size(), " missing, ", restored.size(),
                      " restored");
}

std::string Scrubber::RecordedDamage(const std::string& digest) const {
  absl::StatusOr<std::vector<storage::DamagedBlob>> recorded = catalog_->ListDamagedBlobs();
  if (recorded.ok()) {
    for (const storage::DamagedBlob& d : *recorded) {
      if (d.digest == digest) return d.details;
    }
  }
  return absl::StrCat("blob ", digest, " was found damaged and quarantined while the scrub ran");
}

absl::StatusOr<ScrubReport> Scrubber::Run(const ScrubOptions& options) {
  if (options.bytes_per_second < 0) {
    return InvalidArgument("bytes_per_second", "INVALID_RATE",
                           absl::StrCat("bytes_per_second must be 0 (unlimited) or positive, got ",
                                        options.bytes_per_second));
  }
  if (!running_.TryLock()) {
    return MakeError(absl::StatusCode::kFailedPrecondition, "SCRUB_RUNNING",
                     "a scrub is running; try again when it is done");
  }
  struct Unlock {
    absl::Mutex* mu;
    ~Unlock() { mu->Unlock(); }
  } unlock{&running_};

  const absl::Time start = absl::Now();
  const std::function<bool()>& cancelled = options.cancelled;
  auto is_cancelled = [&cancelled] { return cancelled && cancelled(); };

  // What to look at, all taken before the first read: blobs put in later are for the next
  // pass, and the totals of the progress messages stay fixed.
  MD_ASSIGN_OR_RETURN(std::vector<std::string> stored, blobs_->ListBlobs());
  MD_ASSIGN_OR_RETURN(std::vector<std::string> published, catalog_->ListPublishedDigests());
  MD_ASSIGN_OR_RETURN(std::vector<storage::DamagedBlob> recorded, catalog_->ListDamagedBlobs());
  std::map<std::string, storage::DamagedBlob, std::less<>> damaged_before;
  for (storage::DamagedBlob& d : recorded) damaged_before.emplace(d.digest, std::move(d));
  const std::set<std::string, std::less<>> stored_set(stored.begin(), stored.end());
  std::vector<std::string> absent;  // published digests (hex) the store does not list
  for (const std::string& digest : published) {
    if (digest.size() != kSha256Prefix.size() + 64) continue;  // the catalog checks the form
    std::string hex = digest.substr(kSha256Prefix.size());
    if (stored_set.count(hex) == 0) absent.push_back(std::move(hex));
  }

  ScrubProgress progress;
  progress.blobs_total = static_cast<int64_t>(stored.size() + absent.size());
  std::vector<int64_t> sizes(stored.size(), 0);  // the verified sizes, as far as known
  for (size_t i = 0; i < stored.size(); ++i) {
    // A blob whose size is already wrong adds nothing: Verify reports it without reading.
    absl::StatusOr<int64_t> size = blobs_->Size(stored[i]);
    if (size.ok()) sizes[i] = *size;
    progress.bytes_total += sizes[i];
  }

  ScrubReport report;
  auto stopped = [&] {
    return MakeError(absl::StatusCode::kCancelled, "SCRUB_CANCELLED",
                     absl::StrCat("the scrub was stopped after ", report.blobs_checked, " of ",
                                  progress.blobs_total, " blobs"));
  };
  // Paced on the average since the start of the pass: simple, and what the operator set is
  // the long-run rate. After a pause (a busy disk) the pass reads at disk speed until it is
  // back on that average.
  auto on_read = [&](int64_t n) {
    report.bytes_checked += n;
    if (is_cancelled()) return false;
    if (options.bytes_per_second == 0) return true;
    const absl::Time due = start + absl::Seconds(static_cast<double>(report.bytes_checked) /
                                                 static_cast<double>(options.bytes_per_second));
    return SleepUntil(due, cancelled);
  };
  // Tells the caller about one blob and counts it.
  auto done = [&](const std::string& digest, int64_t size, ScrubOutcome outcome,
                  std::string details) {
    ++report.blobs_checked;
    switch (outcome) {
      case ScrubOutcome::kOk:
        break;
      case ScrubOutcome::kDamaged:
        report.damaged.push_back({digest, details});
        break;
      case ScrubOutcome::kMissing:
        report.missing.push_back({digest, details});
        break;
      case ScrubOutcome::kRestored:
        report.restored.push_back(digest);
        break;
    }
    if (!options.on_blob) return;
    progress.digest = digest;
    progress.size_bytes = size;
    progress.outcome = outcome;
    progress.details = std::move(details);
    progress.blobs_done = report.blobs_checked;
    progress.bytes_done = report.bytes_checked;
    options.on_blob(progress);
  };
  // A blob the store does not have (`problem` is what it answered, NOT_FOUND): BlobHealth
  // records it when a published version wants it; the pass calls it missing in that case.
  auto absent_blob = [&](const std::string& hex, const absl::Status& problem) -> absl::Status {
    const std::string digest = FormatDigest(hex);
    if (health_->Fetchable(hex)) {
      done(digest, 0, ScrubOutcome::kOk, "not stored here; read through from the origins");
      return absl::OkStatus();
    }
    health_->Report(hex, problem);
    MD_ASSIGN_OR_RETURN(bool wanted, catalog_->IsDigestPublished(digest));
    if (!wanted) {
      // Removed while the pass ran (an expired upload session's blob): nothing to find.
      done(digest, 0, ScrubOutcome::kOk, "no longer stored; no published version declares it");
      return absl::OkStatus();
    }
    auto it = damaged_before.find(digest);
    done(digest, 0, ScrubOutcome::kMissing,
         it == damaged_before.end()
             ? BlobHealth::MissingDetails(digest)
             : absl::StrCat("not stored; recorded as damaged since ",
                            absl::FormatTime(it->second.detect_time, absl::UTCTimeZone()), ": ",
                            it->second.details));
    return absl::OkStatus();
  };

  for (size_t i = 0; i < stored.size(); ++i) {
    if (is_cancelled()) return stopped();
    const std::string& hex = stored[i];
    const std::string digest = FormatDigest(hex);
    absl::Status verified = blobs_->Verify(hex, on_read);
    if (absl::IsCancelled(verified)) return stopped();
    if (absl::IsNotFound(verified) && ErrorReason(verified) == "BLOB_QUARANTINED") {
      // Stored when the pass started, quarantined since: another check (a device's read, the
      // manifest cache rebuilding after an earlier finding) found it damaged first.
      done(digest, sizes[i], ScrubOutcome::kDamaged, RecordedDamage(digest));
    } else if (absl::IsNotFound(verified)) {
      MD_RETURN_IF_ERROR(absent_blob(hex, verified));
    } else if (absl::IsDataLoss(verified)) {
      health_->Report(hex, verified);
      done(digest, sizes[i], ScrubOutcome::kDamaged, std::string(verified.message()));
    } else if (!verified.ok()) {
      // An I/O error says nothing about the bytes (BlobHealth ignores it too), and hiding it
      // behind a "clean" summary would be worse than stopping: the operator sees which blob.
      return verified;
    } else if (damaged_before.count(digest) > 0) {
      health_->Restored(hex);
      done(digest, sizes[i], ScrubOutcome::kRestored,
           "recorded as damaged, but stored and intact now: the record is cleared");
    } else {
      done(digest, sizes[i], ScrubOutcome::kOk, "");
    }
  }
  for (const std::string& hex : absent) {
    if (is_cancelled()) return stopped();
    // Asked again now: it may have been stored while the pass ran (a re-publish healing it).
    absl::StatusOr<int64_t> size = blobs_->Size(hex);
    if (size.ok()) {
      done(FormatDigest(hex), *size, ScrubOutcome::kOk,
           "stored while the scrub ran; the next scrub reads it");
    } else if (absl::IsNotFound(size.status())) {
      MD_RETURN_IF_ERROR(absent_blob(hex, size.status()));
    } else if (absl::IsDataLoss(size.status())) {
      health_->Report(hex, size.status());
      done(FormatDigest(hex), 0, ScrubOutcome::kDamaged, std::string(size.status().message()));
    } else {
      return size.status();
    }
  }
  report.duration = absl::Now() - start;
  return report;
}

BackgroundScrub::BackgroundScrub(Scrubber* scrubber, absl::Duration interval,
                                 int64_t bytes_per_second)
    : scrubber_(scrubber), interval_(interval), bytes_per_second_(bytes_per_second) {
  if (interval_ > absl::ZeroDuration()) thread_ = std::thread([this] { Loop(); });
}

BackgroundScrub::~BackgroundScrub() { Stop(); }

void BackgroundScrub::Stop() {
  // Shutdown and the destructor may both call this; Notify must happen once.
  absl::MutexLock lock(&stop_mu_);
  if (!stop_.HasBeenNotified()) stop_.Notify();
  if (thread_.joinable()) thread_.join();
}

void BackgroundScrub::Loop() {
  while (!stop_.WaitForNotificationWithTimeout(interval_)) {
    ScrubOptions options;
    options.bytes_per_second = bytes_per_second_;
    options.cancelled = [this] { return stop_.HasBeenNotified(); };
    absl::StatusOr<ScrubReport> report = scrubber_->Run(options);
    if (report.ok()) {
      // Each damaged or missing blob was logged by BlobHealth as it was found.
      std::cerr << "modeldist-server: scrub " << report->Summary() << std::endl;
    } else if (stop_.HasBeenNotified()) {
      return;
    } else {
      std::cerr << "modeldist-server: scheduled scrub did not complete: " << report.status()
                << std::endl;
    }
  }
}

}  // namespace modeldist::services
