#include "services/replicator.h"

#include <algorithm>
#include <iostream>
#include <random>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "common/status.h"
#include "google/protobuf/util/time_util.h"
#include "storage/origin/origin_config.h"
#include "storage/served_bytes_check.h"

namespace modeldist::services {
namespace {

using google::protobuf::util::TimeUtil;

// What a row shows of a failure: the code and the message (which never holds a credential:
// origins redact URLs and never put keys in errors).
std::string Describe(const absl::Status& status) {
  return absl::StrCat(absl::StatusCodeToString(status.code()), ": ", status.message());
}

absl::Status Mismatch(const std::string& what) {
  return MakeError(absl::StatusCode::kFailedPrecondition, "REPLICA_MISMATCH", what);
}

}  // namespace

Replicator::Replicator(storage::Catalog* catalog, storage::BlobStore* blobs, BlobHealth* health,
                       const origin::OriginSet* origins, Options options)
    : catalog_(catalog),
      blobs_(blobs),
      health_(health),
      origins_(origins),
      options_(std::move(options)) {
  for (const origin::ConfiguredOrigin& o : origins_->origins()) {
    if (o.config.replicate()) names_.push_back(o.config.name());
  }
  random_ = options_.random;
  if (!random_) {
    random_ = [engine = std::mt19937_64(std::random_device()())]() mutable {
      return std::uniform_real_distribution<double>(0.0, 1.0)(engine);
    };
  }
}

Replicator::~Replicator() { Stop(); }

void Replicator::Start() {
  if (!names_.empty()) loop_.Start();
}

void Replicator::Wake() { loop_.Wake(); }

void Replicator::Stop() { loop_.Stop(); }

absl::Duration Replicator::Round() {
  absl::StatusOr<int> round = RunOnce();
  if (!round.ok()) std::cerr << "modeldist-server: replication: " << round.status() << "\n";
  // Sleep until the next row is due (or a publish wakes us), at most idle_poll.
  absl::StatusOr<std::optional<absl::Time>> next = catalog_->NextReplicaAttempt(names_);
  if (!next.ok() || !next->has_value()) return options_.idle_poll;
  return std::clamp(**next - options_.now(), absl::Milliseconds(10), options_.idle_poll);
}

absl::StatusOr<int> Replicator::RunOnce() {
  if (names_.empty()) return 0;
  MD_RETURN_IF_ERROR(catalog_->QueueReplicas(names_).status());
  int attempted = 0;
  while (!loop_.stopping()) {
    MD_ASSIGN_OR_RETURN(std::vector<storage::ReplicaRow> due,
                        catalog_->DueReplicas(names_, options_.now(), options_.batch));
    int worked = 0;
    for (storage::ReplicaRow& row : due) {
      if (loop_.stopping()) break;
      // Only rows of names_ (rows of an origin no longer configured stay as they are).
      const origin::ConfiguredOrigin* target = origins_->Find(row.replica.origin());
      if (target == nullptr) continue;
      MD_RETURN_IF_ERROR(Attempt(std::move(row), *target));
      ++worked;
    }
    attempted += worked;
    if (worked == 0) break;
  }
  return attempted;
}

absl::Status Replicator::Attempt(storage::ReplicaRow row, const origin::ConfiguredOrigin& target) {
  v1::Replica& replica = row.replica;
  replica.set_state(v1::Replica::COPYING);
  replica.set_bytes_done(0);
  MD_RETURN_IF_ERROR(catalog_->UpdateReplica(row));

  const absl::Status copied = Copy(&row, target);
  if (copied.ok()) {
    replica.set_state(v1::Replica::CONFIRMED);
    replica.set_attempts(0);
    replica.set_last_error("");
  } else if ((absl::IsCancelled(copied) && loop_.stopping()) ||
             ErrorReason(copied) == "SERVER_STOPPING") {
    // Shut down mid-copy (or while read-through brought the blob back for it): due again at
    // the next start, not counted as a failure.
    replica.set_state(v1::Replica::PENDING);
    *replica.mutable_next_attempt_time() =
        TimeUtil::MicrosecondsToTimestamp(absl::ToUnixMicros(options_.now()));
  } else {
    replica.set_state(v1::Replica::FAILING);
    replica.set_attempts(replica.attempts() + 1);
    replica.set_last_error(Describe(copied));
    double random;
    {
      absl::MutexLock lock(&random_mu_);
      random = random_();
    }
    const absl::Time next = options_.now() + options_.backoff.Backoff(replica.attempts(), random);
    *replica.mutable_next_attempt_time() =
        TimeUtil::MicrosecondsToTimestamp(absl::ToUnixMicros(next));
    std::cerr << "modeldist-server: replication of " << row.digest << " to " << replica.origin()
              << " failed (attempt " << replica.attempts() << "): " << replica.last_error() << "\n";
  }
  MD_RETURN_IF_ERROR(catalog_->UpdateReplica(row));
  if (copied.ok() && options_.on_confirmed) options_.on_confirmed(row.digest, replica.origin());
  return absl::OkStatus();
}

absl::Status Replicator::Copy(storage::ReplicaRow* row, const origin::ConfiguredOrigin& target) {
  absl::string_view hex = row->digest;
  if (!absl::ConsumePrefix(&hex, "sha256:")) {
    return MakeError(absl::StatusCode::kInternal, "CATALOG_ERROR",
                     absl::StrCat("replica row with digest ", row->digest));
  }
  absl::StatusOr<storage::BlobReader> blob = blobs_->OpenBlob(hex);
  if (storage::IsNotStored(blob.status()) && options_.restore) {
    MD_RETURN_IF_ERROR(options_.restore(std::string(hex)));
    blob = blobs_->OpenBlob(hex);
  }
  if (!blob.ok()) {
    health_->Report(hex, blob.status());
    return blob.status();
  }

  // Bytes leave only through the chain check; its verdict is kept apart from the origin's
  // errors, so that damage is reported as damage whatever the origin makes of the failed read.
  storage::CheckedBlobReads checked(&*blob);
  absl::Status damage;
  auto source = [&](int64_t offset, char* buf, size_t size) -> absl::StatusOr<size_t> {
    if (loop_.stopping()) return WakeableLoop::StoppingError();
    absl::StatusOr<size_t> got = checked.ReadAt(offset, buf, size);
    if (!got.ok() && absl::IsDataLoss(got.status())) damage = got.status();
    return got;
  };
  absl::Time last_progress = options_.now();
  auto progress = [&](int64_t done, int64_t /*total*/) {
    row->replica.set_bytes_done(done);
    if (options_.now() - last_progress < options_.progress_interval) return;
    last_progress = options_.now();
    (void)catalog_->UpdateReplica(*row);  // only a display; the attempt goes on
  };

  const std::string key = origin::BlobKey(target.config, std::string(hex));
  const int64_t size = blob->size();
  const absl::Status put = target.origin->Put(key, source, size, std::string(hex), progress);
  if (!damage.ok()) {
    health_->Report(hex, damage);
    return damage;
  }
  MD_RETURN_IF_ERROR(put);
  row->replica.set_bytes_done(size);

  MD_ASSIGN_OR_RETURN(origin::ObjectInfo info, target.origin->Head(key));
  if (info.size != size) {
    return Mismatch(absl::StrCat(target.config.name(), " reports ", info.size, " bytes for ", key,
                                 " after the upload; the blob has ", size));
  }
  if (!info.sha256_hex.empty() && info.sha256_hex != hex) {
    return Mismatch(absl::StrCat(target.config.name(), " reports SHA-256 ", info.sha256_hex,
                                 " for ", key, " after the upload"));
  }
  return absl::OkStatus();
}

}  // namespace modeldist::services
