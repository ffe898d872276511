// The replication queue: which published blob goes to which origin, and how far each copy got.
#include <algorithm>
#include <cstdint>
#include <optional>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/status.h"
#include "google/protobuf/util/time_util.h"
#include "storage/catalog.h"
#include "storage/catalog_internal.h"

namespace modeldist::storage {
namespace {

using google::protobuf::util::TimeUtil;

// INSERT OR IGNORE: a row that exists keeps its state (a confirmed copy is not queued again).
// Every digest of a published version that wants origin ?1 (the version's replicate_to, else
// its model's, else every replicating origin: migrations/0006_replicate_to.sql).
constexpr char kQueueReplicas[] =
    "INSERT OR IGNORE INTO replicas (digest, origin, state, next_attempt_time, update_time)"
    " SELECT DISTINCT a.digest, ?1, 1, ?2, ?2 FROM artifacts a JOIN versions v"
    " ON v.model_id = a.model_id AND v.version_id = a.version_id JOIN models m ON m.id = v.model_id"
    " WHERE v.state = 2 AND CASE"
    " WHEN v.replicate_to != '' THEN instr(',' || v.replicate_to || ',', ',' || ?1 || ',') > 0"
    " WHEN m.replicate_to != '' THEN instr(',' || m.replicate_to || ',', ',' || ?1 || ',') > 0"
    " ELSE 1 END";
#define MD_REPLICA_COLUMNS \
  "digest, origin, state, attempts, bytes_done, last_error, next_attempt_time, update_time"
constexpr char kDueReplicas[] =
    "SELECT " MD_REPLICA_COLUMNS
    " FROM replicas WHERE origin = ? AND state != 3 AND next_attempt_time <= ?"
    " ORDER BY next_attempt_time, digest LIMIT ?";
constexpr char kListReplicas[] =
    "SELECT " MD_REPLICA_COLUMNS " FROM replicas WHERE digest = ? ORDER BY origin";
#undef MD_REPLICA_COLUMNS
constexpr char kListConfirmedReplicas[] =
    "SELECT digest, origin FROM replicas WHERE state = 3 ORDER BY digest, origin";
constexpr char kNextReplicaAttempt[] =
    "SELECT MIN(next_attempt_time) FROM replicas WHERE origin = ? AND state != 3";
constexpr char kUpdateReplica[] =
    "UPDATE replicas SET state = ?, attempts = ?, bytes_done = ?, last_error = ?,"
    " next_attempt_time = ?, update_time = ? WHERE digest = ? AND origin = ?";

// Columns of MD_REPLICA_COLUMNS.
ReplicaRow ReadReplica(const Statement& s) {
  ReplicaRow row;
  row.digest = s.ColumnText(0);
  row.replica.set_origin(s.ColumnText(1));
  row.replica.set_state(static_cast<v1::Replica::State>(s.ColumnInt64(2)));
  row.replica.set_attempts(static_cast<int32_t>(s.ColumnInt64(3)));
  row.replica.set_bytes_done(s.ColumnInt64(4));
  row.replica.set_last_error(s.ColumnText(5));
  *row.replica.mutable_next_attempt_time() = ToTimestamp(s.ColumnInt64(6));
  *row.replica.mutable_update_time() = ToTimestamp(s.ColumnInt64(7));
  return row;
}

}  // namespace

absl::StatusOr<int64_t> Catalog::QueueReplicas(const std::vector<std::string>& origins) {
  absl::MutexLock lock(&impl_->mu);
  Transaction txn(&impl_->statements);
  MD_RETURN_IF_ERROR(txn.BeginWrite());
  const int64_t now = impl_->NowMicros();
  int64_t queued = 0;
  for (const std::string& origin : origins) {
    MD_ASSIGN_OR_RETURN(Statement s, impl_->Prepare(kQueueReplicas));
    s.BindText(0, origin);
    s.BindInt64(1, now);
    MD_RETURN_IF_ERROR(s.Run());
    queued += impl_->Changes();
  }
  MD_RETURN_IF_ERROR(txn.Commit());
  return queued;
}

absl::StatusOr<std::vector<ReplicaRow>> Catalog::DueReplicas(
    const std::vector<std::string>& origins, absl::Time now, int limit) {
  absl::MutexLock lock(&impl_->mu);
  std::vector<ReplicaRow> out;
  // Per origin (each query uses the index), then merged: the earliest `limit` of them all.
  for (const std::string& origin : origins) {
    MD_ASSIGN_OR_RETURN(Statement s, impl_->Prepare(kDueReplicas));
    s.BindText(0, origin);
    s.BindInt64(1, absl::ToUnixMicros(now));
    s.BindInt64(2, limit);
    for (;;) {
      MD_ASSIGN_OR_RETURN(bool row, s.Step());
      if (!row) break;
      out.push_back(ReadReplica(s));
    }
  }
  std::stable_sort(out.begin(), out.end(), [](const ReplicaRow& a, const ReplicaRow& b) {
    const int64_t ta = TimeUtil::TimestampToMicroseconds(a.replica.next_attempt_time());
    const int64_t tb = TimeUtil::TimestampToMicroseconds(b.replica.next_attempt_time());
    return std::tie(ta, a.digest, a.replica.origin()) < std::tie(tb, b.digest, b.replica.origin());
  });
  if (out.size() > static_cast<size_t>(std::max(limit, 0))) out.resize(static_cast<size_t>(limit));
  return out;
}

absl::StatusOr<std::optional<absl::Time>> Catalog::NextReplicaAttempt(
    const std::vector<std::string>& origins) {
  absl::MutexLock lock(&impl_->mu);
  std::optional<absl::Time> next;
  for (const std::string& origin : origins) {
    MD_ASSIGN_OR_RETURN(Statement s, impl_->Prepare(kNextReplicaAttempt));
    s.BindText(0, origin);
    MD_ASSIGN_OR_RETURN(bool row, s.Step());
    // MIN over no rows is one NULL row.
    if (!row || s.ColumnIsNull(0)) continue;
    const absl::Time t = absl::FromUnixMicros(s.ColumnInt64(0));
    if (!next.has_value() || t < *next) next = t;
  }
  return next;
}

absl::Status Catalog::UpdateReplica(const ReplicaRow& row) {
  absl::MutexLock lock(&impl_->mu);
  MD_ASSIGN_OR_RETURN(Statement s, impl_->Prepare(kUpdateReplica));
  const v1::Replica& r = row.replica;
  s.BindInt64(0, r.state());
  s.BindInt64(1, r.attempts());
  s.BindInt64(2, r.bytes_done());
  s.BindText(3, r.last_error());
  s.BindInt64(4, TimeUtil::TimestampToMicroseconds(r.next_attempt_time()));
  s.BindInt64(5, impl_->NowMicros());
  s.BindText(6, row.digest);
  s.BindText(7, r.origin());
  MD_RETURN_IF_ERROR(s.Run());
  if (impl_->Changes() == 0) {
    return MakeError(absl::StatusCode::kNotFound, "REPLICA_NOT_FOUND",
                     absl::StrCat(row.digest, " was never queued for origin ", r.origin()),
                     {{"digest", row.digest}, {"origin", r.origin()}});
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<v1::Replica>> Catalog::ListReplicas(absl::string_view digest) {
  absl::MutexLock lock(&impl_->mu);
  MD_ASSIGN_OR_RETURN(Statement s, impl_->Prepare(kListReplicas));
  s.BindText(0, digest);
  std::vector<v1::Replica> out;
  for (;;) {
    MD_ASSIGN_OR_RETURN(bool row, s.Step());
    if (!row) break;
    out.push_back(ReadReplica(s).replica);
  }
  return out;
}

absl::StatusOr<std::vector<std::pair<std::string, std::string>>> Catalog::ListConfirmedReplicas() {
  absl::MutexLock lock(&impl_->mu);
  MD_ASSIGN_OR_RETURN(Statement s, impl_->Prepare(kListConfirmedReplicas));
  std::vector<std::pair<std::string, std::string>> out;
  for (;;) {
    MD_ASSIGN_OR_RETURN(bool row, s.Step());
    if (!row) break;
    out.emplace_back(s.ColumnText(0), s.ColumnText(1));
  }
  return out;
}

}  // namespace modeldist::storage
