#include "storage/catalog.h"

#include <sqlite3.h>

#include <algorithm>
#include <cstdint>
#include <limits>
#include <optional>
#include <set>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/synchronization/mutex.h"
#include "common/status.h"
#include "google/protobuf/timestamp.pb.h"
#include "storage/migrations.h"

namespace modeldist::storage {
namespace {

// ---------------------------------------------------------------------------------------------
// SQL. Every statement the catalog runs is one of these constants; the statement cache is keyed
// by their addresses. Times are microseconds since the Unix epoch (migrations/0001_init.sql).

// How long a statement waits for a lock held by another connection (a backup, the sqlite3
// shell, a second server process) before failing with UNAVAILABLE.
constexpr int kBusyTimeoutMs = 5000;

// A rollout's share is in 1/100 of a percent.
constexpr int32_t kMaxBasisPoints = 10000;

constexpr char kBeginWrite[] = "BEGIN IMMEDIATE";
constexpr char kBeginRead[] = "BEGIN DEFERRED";
constexpr char kCommit[] = "COMMIT";

constexpr char kJournalModeWal[] = "PRAGMA journal_mode = WAL";
constexpr char kSynchronousFull[] = "PRAGMA synchronous = FULL";
constexpr char kForeignKeysOn[] = "PRAGMA foreign_keys = ON";
constexpr char kForeignKeysQuery[] = "PRAGMA foreign_keys";
constexpr char kIntegrityCheck[] = "PRAGMA integrity_check";

#define MD_MODEL_COLUMNS "id, description, create_time"
constexpr char kSelectModel[] = "SELECT " MD_MODEL_COLUMNS " FROM models WHERE id = ?";
constexpr char kListModelsFirst[] = "SELECT " MD_MODEL_COLUMNS " FROM models ORDER BY id LIMIT ?";
constexpr char kListModelsAfter[] =
    "SELECT " MD_MODEL_COLUMNS " FROM models WHERE id > ? ORDER BY id LIMIT ?";
constexpr char kInsertModel[] =
    "INSERT INTO models (id, description, create_time) VALUES (?, ?, ?)";

#define MD_VERSION_COLUMNS \
  "model_id, version_id, state, create_time, publish_time, yank_time, yank_reason"
constexpr char kSelectVersion[] =
    "SELECT " MD_VERSION_COLUMNS " FROM versions WHERE model_id = ? AND version_id = ?";
constexpr char kListVersionsFirst[] = "SELECT " MD_VERSION_COLUMNS
                                      " FROM versions WHERE model_id = ?"
                                      " ORDER BY version_id LIMIT ?";
constexpr char kListVersionsAfter[] = "SELECT " MD_VERSION_COLUMNS
                                      " FROM versions WHERE model_id = ? AND version_id > ?"
                                      " ORDER BY version_id LIMIT ?";
constexpr char kInsertVersion[] =
    "INSERT INTO versions (model_id, version_id, state, create_time) VALUES (?, ?, ?, ?)";
constexpr char kPublishVersion[] =
    "UPDATE versions SET state = ?, publish_time = ? WHERE model_id = ? AND version_id = ?";
constexpr char kYankVersion[] =
    "UPDATE versions SET state = ?, yank_time = ?, yank_reason = ?"
    " WHERE model_id = ? AND version_id = ?";

#define MD_ARTIFACT_COLUMNS \
  "platform, arch, format, digest, size_bytes, constraints, unpacked_size_bytes"
constexpr char kSelectArtifacts[] = "SELECT " MD_ARTIFACT_COLUMNS
                                    " FROM artifacts WHERE model_id = ? AND version_id = ?"
                                    " ORDER BY platform, arch, format";
constexpr char kInsertArtifact[] =
    "INSERT INTO artifacts (model_id, version_id, " MD_ARTIFACT_COLUMNS
    ") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)";
// Another declaration of the same bytes with a different size (the size is part of identity).
constexpr char kSelectConflictingSize[] =
    "SELECT model_id, version_id, size_bytes FROM artifacts WHERE digest = ? AND size_bytes != ?"
    " ORDER BY model_id, version_id LIMIT 1";
constexpr char kSelectDeclaredSize[] = "SELECT size_bytes FROM artifacts WHERE digest = ? LIMIT 1";

#define MD_TIER_COLUMNS "tier, channel, sequence, update_time"
constexpr char kSelectTier[] =
    "SELECT " MD_TIER_COLUMNS " FROM tiers WHERE tier = ? AND channel = ?";
constexpr char kListTiersFirst[] =
    "SELECT " MD_TIER_COLUMNS " FROM tiers ORDER BY tier, channel LIMIT ?";
constexpr char kListTiersAfter[] = "SELECT " MD_TIER_COLUMNS
                                   " FROM tiers WHERE (tier, channel) > (?, ?)"
                                   " ORDER BY tier, channel LIMIT ?";
constexpr char kListAllTiers[] = "SELECT " MD_TIER_COLUMNS " FROM tiers ORDER BY tier, channel";
// Stores a tier/channel's new sequence, creating the row on its first bind. The value is
// computed by NextSequence, not here, so the rule has one home.
constexpr char kUpsertTier[] =
    "INSERT INTO tiers (tier, channel, sequence, update_time) VALUES (?, ?, ?, ?)"
    " ON CONFLICT (tier, channel) DO UPDATE"
    " SET sequence = excluded.sequence, update_time = excluded.update_time";
constexpr char kInsertTierHistory[] =
    "INSERT INTO tier_history (tier, channel, sequence, model_id, version_id, create_time)"
    " VALUES (?, ?, ?, ?, ?, ?)";
// What a tier/channel resolves to: its newest bind whose version is still PUBLISHED.
constexpr char kResolveTier[] =
    "SELECT h.model_id, h.version_id FROM tier_history AS h"
    " JOIN versions AS v ON v.model_id = h.model_id AND v.version_id = h.version_id"
    " WHERE h.tier = ? AND h.channel = ? AND v.state = ?"
    " ORDER BY h.sequence DESC LIMIT 1";
// The newest bind of a tier/channel, whatever its version's state now.
constexpr char kSelectNewestBind[] =
    "SELECT model_id, version_id FROM tier_history WHERE tier = ? AND channel = ?"
    " ORDER BY sequence DESC LIMIT 1";
constexpr char kSelectTiersEverBoundTo[] =
    "SELECT DISTINCT tier, channel FROM tier_history WHERE model_id = ? AND version_id = ?"
    " ORDER BY tier, channel";

// Rollout states as stored (migrations/0002_rollouts_pins_audit.sql): the open ones are the
// ACTIVE and PAUSED rollouts, at most one per tier/channel.
#define MD_ROLLOUT_COLUMNS                                                         \
  "id, tier, channel, from_model_id, from_version_id, to_model_id, to_version_id," \
  " basis_points, state, create_time, update_time"
constexpr char kSelectOpenRollout[] = "SELECT " MD_ROLLOUT_COLUMNS
                                      " FROM rollouts WHERE tier = ? AND channel = ?"
                                      " AND state IN (1, 2) ORDER BY id LIMIT 1";
constexpr char kSelectOpenRolloutsTo[] = "SELECT " MD_ROLLOUT_COLUMNS
                                         " FROM rollouts WHERE to_model_id = ?"
                                         " AND to_version_id = ? AND state IN (1, 2) ORDER BY id";
// An empty filter matches every row; the first page passes the largest id as the cursor.
constexpr char kListRollouts[] = "SELECT " MD_ROLLOUT_COLUMNS
                                 " FROM rollouts WHERE (?1 = '' OR tier = ?1)"
                                 " AND (?2 = '' OR channel = ?2) AND id < ?3"
                                 " ORDER BY id DESC LIMIT ?4";
constexpr char kInsertRollout[] =
    "INSERT INTO rollouts (tier, channel, from_model_id, from_version_id, to_model_id,"
    " to_version_id, basis_points, state, create_time, update_time)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)";
constexpr char kUpdateRollout[] =
    "UPDATE rollouts SET basis_points = ?, state = ?, update_time = ? WHERE id = ?";

#define MD_PIN_COLUMNS "tier, channel, device_id, model_id, version_id, create_time"
constexpr char kSelectPinsOfTier[] = "SELECT " MD_PIN_COLUMNS
                                     " FROM device_pins WHERE tier = ? AND channel = ?"
                                     " ORDER BY device_id";
constexpr char kListPinsFirst[] =
    "SELECT " MD_PIN_COLUMNS " FROM device_pins ORDER BY tier, channel, device_id LIMIT ?";
constexpr char kListPinsAfter[] = "SELECT " MD_PIN_COLUMNS
                                  " FROM device_pins WHERE (tier, channel, device_id) > (?, ?, ?)"
                                  " ORDER BY tier, channel, device_id LIMIT ?";
// Adds a pin or moves it to another version; a re-pin to the same version changes no row, so
// sqlite3_changes() counts exactly the pins that changed.
constexpr char kUpsertPin[] =
    "INSERT INTO device_pins (tier, channel, device_id, model_id, version_id, create_time)"
    " VALUES (?, ?, ?, ?, ?, ?)"
    " ON CONFLICT (tier, channel, device_id) DO UPDATE"
    " SET model_id = excluded.model_id, version_id = excluded.version_id,"
    " create_time = excluded.create_time"
    " WHERE model_id != excluded.model_id OR version_id != excluded.version_id";
constexpr char kDeletePin[] =
    "DELETE FROM device_pins WHERE tier = ? AND channel = ? AND device_id = ?";
constexpr char kSelectTiersPinnedTo[] =
    "SELECT tier, channel, COUNT(*) FROM device_pins WHERE model_id = ? AND version_id = ?"
    " GROUP BY tier, channel ORDER BY tier, channel";
constexpr char kDeletePinsTo[] = "DELETE FROM device_pins WHERE model_id = ? AND version_id = ?";

#define MD_AUDIT_COLUMNS "id, time, actor, action, resource, details"
constexpr char kInsertAudit[] =
    "INSERT INTO audit_log (time, actor, action, resource, details) VALUES (?, ?, ?, ?, ?)";
// The first page passes the largest id as the cursor.
constexpr char kListAudit[] =
    "SELECT " MD_AUDIT_COLUMNS " FROM audit_log WHERE id < ? ORDER BY id DESC LIMIT ?";

constexpr char kInsertDamagedBlob[] =
    "INSERT INTO damaged_blobs (digest, details, detect_time) VALUES (?, ?, ?)"
    " ON CONFLICT (digest) DO NOTHING";
constexpr char kDeleteDamagedBlob[] = "DELETE FROM damaged_blobs WHERE digest = ?";
constexpr char kListDamagedBlobs[] =
    "SELECT digest, details, detect_time FROM damaged_blobs ORDER BY digest";
constexpr char kSelectDigestPublished[] =
    "SELECT 1 FROM artifacts a JOIN versions v"
    " ON v.model_id = a.model_id AND v.version_id = a.version_id"
    " WHERE a.digest = ? AND v.state = 2 LIMIT 1";
constexpr char kSelectPublishedDigests[] =
    "SELECT DISTINCT a.digest FROM artifacts a JOIN versions v"
    " ON v.model_id = a.model_id AND v.version_id = a.version_id"
    " WHERE v.state = 2 ORDER BY a.digest";

constexpr char kSelectNewestTrustRootVersion[] =
    "SELECT COALESCE(MAX(version), 0) FROM trust_roots";
constexpr char kSelectTrustRoot[] = "SELECT signed_root FROM trust_roots WHERE version = ?";
constexpr char kInsertTrustRoot[] =
    "INSERT INTO trust_roots (version, signed_root, create_time) VALUES (?, ?, ?)";

#undef MD_MODEL_COLUMNS
#undef MD_VERSION_COLUMNS
#undef MD_ARTIFACT_COLUMNS
#undef MD_TIER_COLUMNS
#undef MD_ROLLOUT_COLUMNS
#undef MD_PIN_COLUMNS
#undef MD_AUDIT_COLUMNS

// ---------------------------------------------------------------------------------------------
// Statements.

// A cached prepared statement and whether a Statement currently borrows it.
struct CachedStatement {
  sqlite3_stmt* stmt = nullptr;
  bool in_use = false;
};

// A prepared statement borrowed from the connection's cache for one use. Bind and column
// indexes are 0-based: bind index i is the (i+1)-th `?`, column i the (i+1)-th result column.
// A bind failure is remembered and reported by the next Step/Run, so call sites stay flat.
// Destruction resets the statement, so an abandoned loop never keeps a read snapshot open.
class Statement {
 public:
  Statement(sqlite3* db, CachedStatement* cached) : db_(db), cached_(cached) {
    cached_->in_use = true;
  }
  Statement(Statement&& other) noexcept
      : db_(other.db_),
        cached_(std::exchange(other.cached_, nullptr)),
        bind_status_(std::move(other.bind_status_)) {}
  Statement(const Statement&) = delete;
  Statement& operator=(const Statement&) = delete;
  Statement& operator=(Statement&&) = delete;
  ~Statement() {
    if (cached_ == nullptr) return;
    sqlite3_reset(cached_->stmt);
    sqlite3_clear_bindings(cached_->stmt);
    cached_->in_use = false;
  }

  void BindInt64(int index, int64_t value) { Check(sqlite3_bind_int64(stmt(), index + 1, value)); }
  void BindText(int index, absl::string_view value) {
    // A null data pointer would bind SQL NULL; an empty id or description is the empty string.
    Check(sqlite3_bind_text64(stmt(), index + 1, value.data() != nullptr ? value.data() : "",
                              value.size(), SQLITE_TRANSIENT, SQLITE_UTF8));
  }
  // STRICT BLOB columns refuse TEXT, so binary values need their own bind.
  void BindBlob(int index, absl::string_view value) {
    // As for text: a null data pointer would bind SQL NULL instead of an empty blob.
    Check(sqlite3_bind_blob64(stmt(), index + 1, value.data() != nullptr ? value.data() : "",
                              value.size(), SQLITE_TRANSIENT));
  }
  void BindNull(int index) { Check(sqlite3_bind_null(stmt(), index + 1)); }

  // Advances to the next row: true when a row is available, false when done.
  absl::StatusOr<bool> Step() {
    MD_RETURN_IF_ERROR(bind_status_);
    int rc = sqlite3_step(stmt());
    if (rc == SQLITE_ROW) return true;
    if (rc == SQLITE_DONE) return false;
    return Error(rc);
  }
  // Runs a statement that returns no rows.
  absl::Status Run() {
    MD_ASSIGN_OR_RETURN(bool row, Step());
    if (row) {
      return MakeError(absl::StatusCode::kInternal, "CATALOG_ERROR",
                       absl::StrCat("catalog: unexpected row from \"", sqlite3_sql(stmt()), "\""));
    }
    return absl::OkStatus();
  }

  bool ColumnIsNull(int index) const { return sqlite3_column_type(stmt(), index) == SQLITE_NULL; }
  int64_t ColumnInt64(int index) const { return sqlite3_column_int64(stmt(), index); }
  int ColumnInt(int index) const { return sqlite3_column_int(stmt(), index); }
  std::string ColumnText(int index) const {
    const unsigned char* text = sqlite3_column_text(stmt(), index);
    if (text == nullptr) return "";
    return std::string(reinterpret_cast<const char*>(text), sqlite3_column_bytes(stmt(), index));
  }
  // An empty blob and NULL both read as ""; ask ColumnIsNull to tell them apart.
  std::string ColumnBlob(int index) const {
    const void* data = sqlite3_column_blob(stmt(), index);
    if (data == nullptr) return "";
    return std::string(static_cast<const char*>(data), sqlite3_column_bytes(stmt(), index));
  }

 private:
  sqlite3_stmt* stmt() const { return cached_->stmt; }
  void Check(int rc) {
    if (rc != SQLITE_OK && bind_status_.ok()) bind_status_ = Error(rc);
  }
  absl::Status Error(int rc) const {
    return SqliteError(db_, rc, absl::StrCat("running \"", sqlite3_sql(stmt()), "\""));
  }

  sqlite3* db_;
  CachedStatement* cached_;
  absl::Status bind_status_;
};

// ---------------------------------------------------------------------------------------------
// Conversions.

google::protobuf::Timestamp ToTimestamp(int64_t micros) {
  int64_t seconds = micros / 1000000;
  int64_t rest = micros % 1000000;
  if (rest < 0) {  // floor, so nanos stays in [0, 1e9) before 1970
    rest += 1000000;
    --seconds;
  }
  google::protobuf::Timestamp timestamp;
  timestamp.set_seconds(seconds);
  timestamp.set_nanos(static_cast<int32_t>(rest * 1000));
  return timestamp;
}

std::string ArtifactKey(const v1::Artifact& artifact) {
  // Values newer than this binary's protos have no name; show the number.
  auto or_number = [](const std::string& enum_name, int value) {
    return enum_name.empty() ? absl::StrCat(value) : enum_name;
  };
  return absl::StrCat(or_number(v1::Platform_Name(artifact.platform()), artifact.platform()), "/",
                      or_number(v1::Arch_Name(artifact.arch()), artifact.arch()), "/",
                      or_number(v1::Format_Name(artifact.format()), artifact.format()));
}

std::string StateName(int state) {
  std::string name = v1::Version::State_Name(static_cast<v1::Version::State>(state));
  return name.empty() ? absl::StrCat(state) : name;
}

// Columns of MD_MODEL_COLUMNS.
v1::Model ReadModel(const Statement& s) {
  v1::Model model;
  model.set_name(ModelName(s.ColumnText(0)));
  model.set_description(s.ColumnText(1));
  *model.mutable_create_time() = ToTimestamp(s.ColumnInt64(2));
  return model;
}

// Columns of MD_VERSION_COLUMNS; artifacts are read separately.
v1::Version ReadVersion(const Statement& s) {
  v1::Version version;
  version.set_name(VersionName{s.ColumnText(0), s.ColumnText(1)}.ToString());
  version.set_state(static_cast<v1::Version::State>(s.ColumnInt(2)));
  *version.mutable_create_time() = ToTimestamp(s.ColumnInt64(3));
  if (!s.ColumnIsNull(4)) *version.mutable_publish_time() = ToTimestamp(s.ColumnInt64(4));
  if (!s.ColumnIsNull(5)) *version.mutable_yank_time() = ToTimestamp(s.ColumnInt64(5));
  version.set_yank_reason(s.ColumnText(6));
  return version;
}

// Columns of MD_ARTIFACT_COLUMNS. INTERNAL (CATALOG_CORRUPT) when the stored constraints do not
// parse: serving an artifact without the constraints it declared could hand it to devices that
// cannot run it.
absl::StatusOr<v1::Artifact> ReadArtifact(const Statement& s) {
  v1::Artifact artifact;
  artifact.set_platform(static_cast<v1::Platform>(s.ColumnInt(0)));
  artifact.set_arch(static_cast<v1::Arch>(s.ColumnInt(1)));
  artifact.set_format(static_cast<v1::Format>(s.ColumnInt(2)));
  artifact.set_digest(s.ColumnText(3));
  artifact.set_size_bytes(s.ColumnInt64(4));
  if (!s.ColumnIsNull(5) && !artifact.mutable_constraints()->ParseFromString(s.ColumnBlob(5))) {
    return MakeError(absl::StatusCode::kInternal, "CATALOG_CORRUPT",
                     absl::StrCat("catalog: the stored constraints of artifact ",
                                  ArtifactKey(artifact), " (", artifact.digest(), ") do not parse"),
                     {{"digest", artifact.digest()}});
  }
  artifact.set_unpacked_size_bytes(s.ColumnInt64(6));
  return artifact;
}

// A rollout row: the proto plus the keys that updates and version lookups need.
struct StoredRollout {
  int64_t id = 0;
  VersionName from;
  VersionName to;
  v1::Rollout rollout;
};

// Columns of MD_ROLLOUT_COLUMNS.
StoredRollout ReadRollout(const Statement& s) {
  StoredRollout stored;
  stored.id = s.ColumnInt64(0);
  stored.from = VersionName{s.ColumnText(3), s.ColumnText(4)};
  stored.to = VersionName{s.ColumnText(5), s.ColumnText(6)};
  v1::Rollout& rollout = stored.rollout;
  rollout.set_id(absl::StrCat("r-", stored.id));
  rollout.set_tier(s.ColumnText(1));
  rollout.set_channel(s.ColumnText(2));
  rollout.set_from_version(stored.from.ToString());
  rollout.set_to_version(stored.to.ToString());
  rollout.set_basis_points(s.ColumnInt(7));
  rollout.set_state(static_cast<v1::Rollout::State>(s.ColumnInt(8)));
  *rollout.mutable_create_time() = ToTimestamp(s.ColumnInt64(9));
  *rollout.mutable_update_time() = ToTimestamp(s.ColumnInt64(10));
  return stored;
}

std::string RolloutStateName(v1::Rollout::State state) {
  std::string name = v1::Rollout::State_Name(state);
  return name.empty() ? absl::StrCat(static_cast<int>(state)) : name;
}

// Columns of MD_PIN_COLUMNS.
v1::DevicePin ReadPin(const Statement& s) {
  v1::DevicePin pin;
  pin.set_tier(s.ColumnText(0));
  pin.set_channel(s.ColumnText(1));
  pin.set_device_id(s.ColumnText(2));
  pin.set_version(VersionName{s.ColumnText(3), s.ColumnText(4)}.ToString());
  *pin.mutable_create_time() = ToTimestamp(s.ColumnInt64(5));
  return pin;
}

// Columns of MD_AUDIT_COLUMNS.
v1::AuditEntry ReadAuditEntry(const Statement& s) {
  v1::AuditEntry entry;
  entry.set_id(s.ColumnInt64(0));
  *entry.mutable_time() = ToTimestamp(s.ColumnInt64(1));
  entry.set_actor(s.ColumnText(2));
  entry.set_action(s.ColumnText(3));
  entry.set_resource(s.ColumnText(4));
  entry.set_details(s.ColumnText(5));
  return entry;
}

// The one rule for a tier/channel's next sequence (catalog.h, "Sequences"): one more than
// `previous` (0 before the first bind), and never below the catalog clock in microseconds since
// the Unix epoch. The +1 keeps sequences strictly increasing whatever the clock does; the clock
// is what keeps a catalog restored from an older copy from issuing again, for other content, a
// sequence the lost catalog already issued: those were at most that catalog's clock when it
// issued them (plus one per extra change within one microsecond), and the restored catalog's
// clock is later.
absl::StatusOr<int64_t> NextSequence(int64_t previous, int64_t now_micros) {
  if (previous == std::numeric_limits<int64_t>::max()) {
    // Unreachable through the catalog (the clock reaches it in the year 294247), but a file
    // edited by hand could hold it, and previous + 1 would overflow.
    return MakeError(absl::StatusCode::kFailedPrecondition, "SEQUENCE_EXHAUSTED",
                     absl::StrCat("catalog: the sequence is already ", previous,
                                  ", the largest there is; it cannot grow"));
  }
  return std::max(previous + 1, now_micros);
}

// The audit resource of a tier/channel.
std::string TierResource(absl::string_view tier, absl::string_view channel) {
  return absl::StrCat("tiers/", tier, "/channels/", channel);
}

// Columns of MD_TIER_COLUMNS; `version` is filled in by resolving.
v1::TierBinding ReadTier(const Statement& s) {
  v1::TierBinding binding;
  binding.set_tier(s.ColumnText(0));
  binding.set_channel(s.ColumnText(1));
  binding.set_sequence(s.ColumnInt64(2));
  *binding.mutable_update_time() = ToTimestamp(s.ColumnInt64(3));
  return binding;
}

// ---------------------------------------------------------------------------------------------
// Paging. A page token is the web-safe base64 of length-prefixed parts ("<n>:<bytes>"...): the
// list kind, its parent (if any) and the last key returned. Keyset paging stays correct when
// rows are added between pages, and the kind and parent let a token from another list be
// refused instead of silently skipping rows.

constexpr int kDefaultPageSize = 100;
constexpr int kMaxPageSize = 1000;

absl::StatusOr<int> EffectivePageSize(int page_size) {
  if (page_size < 0) {
    return InvalidArgument("page_size", "INVALID_PAGE_SIZE",
                           absl::StrCat("page_size must not be negative, got ", page_size));
  }
  if (page_size == 0) return kDefaultPageSize;
  return page_size > kMaxPageSize ? kMaxPageSize : page_size;
}

std::string EncodePageToken(const std::vector<std::string>& parts) {
  std::string raw;
  for (const std::string& part : parts) absl::StrAppend(&raw, part.size(), ":", part);
  return absl::WebSafeBase64Escape(raw);
}

absl::Status InvalidPageToken() {
  return InvalidArgument("page_token", "INVALID_PAGE_TOKEN",
                         "page_token is malformed or belongs to another list; pass the "
                         "next_page_token of the previous page unchanged");
}

// Returns the parts after the kind; `count` of them are expected.
absl::StatusOr<std::vector<std::string>> DecodePageToken(absl::string_view token,
                                                         absl::string_view kind, size_t count) {
  std::string raw;
  if (!absl::WebSafeBase64Unescape(token, &raw)) return InvalidPageToken();
  std::vector<std::string> parts;
  absl::string_view rest = raw;
  while (!rest.empty()) {
    size_t colon = rest.find(':');
    size_t length = 0;
    if (colon == absl::string_view::npos || colon == 0 || colon > 10 ||
        !absl::SimpleAtoi(rest.substr(0, colon), &length) || length > rest.size() - colon - 1) {
      return InvalidPageToken();
    }
    parts.emplace_back(rest.substr(colon + 1, length));
    rest.remove_prefix(colon + 1 + length);
  }
  if (parts.size() != count + 1 || parts[0] != kind) return InvalidPageToken();
  parts.erase(parts.begin());
  return parts;
}

// ---------------------------------------------------------------------------------------------
// Errors.

absl::Status ModelNotFound(absl::string_view model_id) {
  std::string name = ModelName(model_id);
  return MakeError(absl::StatusCode::kNotFound, "MODEL_NOT_FOUND",
                   absl::StrCat(name, " does not exist"), {{"resource", name}});
}

absl::Status VersionNotFound(const VersionName& version) {
  std::string name = version.ToString();
  return MakeError(absl::StatusCode::kNotFound, "VERSION_NOT_FOUND",
                   absl::StrCat(name, " does not exist"), {{"resource", name}});
}

absl::Status VersionNotPublished(const v1::Version& version, absl::string_view what) {
  std::string state = StateName(version.state());
  return MakeError(absl::StatusCode::kFailedPrecondition, "VERSION_NOT_PUBLISHED",
                   absl::StrCat("cannot ", what, " ", version.name(), ": it is ", state,
                                "; only PUBLISHED versions are eligible"),
                   {{"resource", version.name()}, {"state", state}});
}

absl::Status CheckBasisPoints(int32_t basis_points) {
  if (basis_points < 0 || basis_points > kMaxBasisPoints) {
    return InvalidArgument("basis_points", "INVALID_BASIS_POINTS",
                           absl::StrCat("basis_points must be 0..", kMaxBasisPoints,
                                        " (1/100 of a percent), got ", basis_points));
  }
  return absl::OkStatus();
}

absl::Status RolloutNotFound(absl::string_view tier, absl::string_view channel) {
  return MakeError(absl::StatusCode::kNotFound, "ROLLOUT_NOT_FOUND",
                   absl::StrCat("tier \"", tier, "\" on channel \"", channel,
                                "\" has no ACTIVE or PAUSED rollout"),
                   {{"tier", std::string(tier)}, {"channel", std::string(channel)}});
}

absl::Status RolloutInProgress(const v1::Rollout& rollout, absl::string_view what) {
  return MakeError(
      absl::StatusCode::kFailedPrecondition, "ROLLOUT_IN_PROGRESS",
      absl::StrCat("cannot ", what, ": rollout ", rollout.id(), " of tier \"", rollout.tier(),
                   "\" on channel \"", rollout.channel(), "\" is ",
                   RolloutStateName(rollout.state()), "; complete or abort it first"),
      {{"rollout", rollout.id()}, {"tier", rollout.tier()}, {"channel", rollout.channel()}});
}

absl::Status RolloutNotInState(const v1::Rollout& rollout, v1::Rollout::State wanted,
                               absl::string_view reason, absl::string_view what) {
  std::string state = RolloutStateName(rollout.state());
  return MakeError(absl::StatusCode::kFailedPrecondition, reason,
                   absl::StrCat("cannot ", what, " rollout ", rollout.id(), ": it is ", state,
                                ", not ", RolloutStateName(wanted)),
                   {{"rollout", rollout.id()}, {"state", state}});
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// The connection and its statement cache. Every method with `mu` held.

struct Catalog::Impl {
  Impl(sqlite3* connection, Options opts) : db(connection), options(std::move(opts)) {
    if (!options.now) options.now = [] { return absl::Now(); };
  }
  ~Impl() {
    for (auto& [sql, cached] : cache) sqlite3_finalize(cached.stmt);
    sqlite3_close(db);
  }

  // One transaction on the catalog's connection. Writes use BEGIN IMMEDIATE, which takes the
  // write lock up front, so the reads that decide a write cannot be invalidated by another
  // process before it commits. Reads spanning several statements use a deferred transaction for
  // one consistent snapshot. Destruction without Commit rolls back: a failed write leaves nothing.
  class Transaction {
   public:
    explicit Transaction(Impl* impl) : impl_(impl) {}
    Transaction(const Transaction&) = delete;
    Transaction& operator=(const Transaction&) = delete;
    ~Transaction() {
      // Some errors (SQLITE_FULL, SQLITE_IOERR, ...) end the transaction by themselves.
      if (open_ && !sqlite3_get_autocommit(impl_->db)) {
        sqlite3_exec(impl_->db, "ROLLBACK", nullptr, nullptr, nullptr);
      }
    }

    absl::Status BeginWrite() ABSL_EXCLUSIVE_LOCKS_REQUIRED(impl_->mu) {
      return Begin(kBeginWrite);
    }
    absl::Status BeginRead() ABSL_EXCLUSIVE_LOCKS_REQUIRED(impl_->mu) { return Begin(kBeginRead); }
    absl::Status Commit() ABSL_EXCLUSIVE_LOCKS_REQUIRED(impl_->mu) {
      MD_RETURN_IF_ERROR(impl_->Exec(kCommit));
      open_ = false;
      return absl::OkStatus();
    }

   private:
    absl::Status Begin(const char* sql) ABSL_EXCLUSIVE_LOCKS_REQUIRED(impl_->mu) {
      MD_RETURN_IF_ERROR(impl_->Exec(sql));
      open_ = true;
      return absl::OkStatus();
    }

    Impl* impl_;
    bool open_ = false;
  };

  absl::Mutex mu;
  sqlite3* const db;
  Options options;
  int schema_version = 0;
  // Keyed by the address of one of the SQL constants above.
  std::unordered_map<const char*, CachedStatement> cache ABSL_GUARDED_BY(mu);

  int64_t NowMicros() { return absl::ToUnixMicros(options.now()); }

  // Returns the cached statement for `sql`, preparing it on first use.
  absl::StatusOr<Statement> Prepare(const char* sql) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    CachedStatement& cached = cache[sql];
    if (cached.in_use) {
      // Two live uses of one sqlite3_stmt would silently reset each other's iteration.
      return MakeError(absl::StatusCode::kInternal, "CATALOG_ERROR",
                       absl::StrCat("catalog: statement used twice at once: ", sql));
    }
    if (cached.stmt == nullptr) {
      int rc = sqlite3_prepare_v3(db, sql, -1, SQLITE_PREPARE_PERSISTENT, &cached.stmt, nullptr);
      if (rc != SQLITE_OK) {
        cache.erase(sql);
        return SqliteError(db, rc, absl::StrCat("preparing \"", sql, "\""));
      }
    }
    return Statement(db, &cached);
  }

  absl::Status Exec(const char* sql) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    MD_ASSIGN_OR_RETURN(Statement s, Prepare(sql));
    // PRAGMA statements may return a row (the new value); drain it.
    while (true) {
      MD_ASSIGN_OR_RETURN(bool row, s.Step());
      if (!row) return absl::OkStatus();
    }
  }

  // The connection settings, all in one place.
  absl::Status Configure() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    sqlite3_extended_result_codes(db, 1);
    // Wait for another connection's lock rather than failing at once.
    sqlite3_busy_timeout(db, kBusyTimeoutMs);
    {
      // WAL: readers never block the writer and a commit is one append to the log. SQLite
      // answers with the mode it ended up in, which is not WAL on some file systems.
      MD_ASSIGN_OR_RETURN(Statement s, Prepare(kJournalModeWal));
      MD_ASSIGN_OR_RETURN(bool row, s.Step());
      std::string mode = row ? s.ColumnText(0) : "";
      if (mode != "wal") {
        return MakeError(
            absl::StatusCode::kUnavailable, "CATALOG_UNAVAILABLE",
            absl::StrCat("catalog: cannot enable WAL journaling (journal_mode is \"", mode, "\")"));
      }
    }
    // FULL fsyncs the WAL at every commit: an acknowledged write survives power loss (NORMAL
    // in WAL mode keeps the file consistent but may lose the last commits).
    MD_RETURN_IF_ERROR(Exec(kSynchronousFull));
    // SQLite leaves REFERENCES unenforced unless asked, per connection; verify it listened
    // (a build without foreign key support would ignore the pragma silently).
    MD_RETURN_IF_ERROR(Exec(kForeignKeysOn));
    MD_ASSIGN_OR_RETURN(Statement s, Prepare(kForeignKeysQuery));
    MD_ASSIGN_OR_RETURN(bool row, s.Step());
    if (!row || s.ColumnInt(0) != 1) {
      return MakeError(absl::StatusCode::kInternal, "CATALOG_ERROR",
                       "catalog: SQLite did not enable foreign keys");
    }
    return absl::OkStatus();
  }

  absl::Status CheckModelExists(absl::string_view model_id) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    MD_ASSIGN_OR_RETURN(Statement s, Prepare(kSelectModel));
    s.BindText(0, model_id);
    MD_ASSIGN_OR_RETURN(bool found, s.Step());
    return found ? absl::OkStatus() : ModelNotFound(model_id);
  }

  absl::Status LoadArtifacts(const VersionName& name, v1::Version* version)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    MD_ASSIGN_OR_RETURN(Statement s, Prepare(kSelectArtifacts));
    s.BindText(0, name.model);
    s.BindText(1, name.version);
    while (true) {
      MD_ASSIGN_OR_RETURN(bool row, s.Step());
      if (!row) return absl::OkStatus();
      MD_ASSIGN_OR_RETURN(*version->add_artifacts(), ReadArtifact(s));
    }
  }

  // The version with its artifacts. NOT_FOUND names the model when it is the model that is
  // missing.
  absl::StatusOr<v1::Version> LoadVersion(const VersionName& name)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    v1::Version version;
    {
      MD_ASSIGN_OR_RETURN(Statement s, Prepare(kSelectVersion));
      s.BindText(0, name.model);
      s.BindText(1, name.version);
      MD_ASSIGN_OR_RETURN(bool found, s.Step());
      if (found) version = ReadVersion(s);
    }
    if (version.name().empty()) {
      MD_RETURN_IF_ERROR(CheckModelExists(name.model));
      return VersionNotFound(name);
    }
    MD_RETURN_IF_ERROR(LoadArtifacts(name, &version));
    return version;
  }

  // What tier/channel resolves to now, if anything.
  absl::StatusOr<std::optional<VersionName>> Resolve(absl::string_view tier,
                                                     absl::string_view channel)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    MD_ASSIGN_OR_RETURN(Statement s, Prepare(kResolveTier));
    s.BindText(0, tier);
    s.BindText(1, channel);
    s.BindInt64(2, v1::Version::PUBLISHED);
    MD_ASSIGN_OR_RETURN(bool found, s.Step());
    if (!found) return std::nullopt;
    return VersionName{s.ColumnText(0), s.ColumnText(1)};
  }

  // Fills binding->version from the tier's history.
  absl::Status FillResolvedVersion(v1::TierBinding* binding) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    MD_ASSIGN_OR_RETURN(std::optional<VersionName> resolved,
                        Resolve(binding->tier(), binding->channel()));
    binding->set_version(resolved ? resolved->ToString() : "");
    return absl::OkStatus();
  }

  absl::StatusOr<v1::TierBinding> LoadBinding(absl::string_view tier, absl::string_view channel)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    v1::TierBinding binding;
    {
      MD_ASSIGN_OR_RETURN(Statement s, Prepare(kSelectTier));
      s.BindText(0, tier);
      s.BindText(1, channel);
      MD_ASSIGN_OR_RETURN(bool found, s.Step());
      if (!found) {
        return MakeError(
            absl::StatusCode::kNotFound, "TIER_NOT_FOUND",
            absl::StrCat("tier \"", tier, "\" on channel \"", channel, "\" was never bound"),
            {{"tier", std::string(tier)}, {"channel", std::string(channel)}});
      }
      binding = ReadTier(s);
    }
    MD_RETURN_IF_ERROR(FillResolvedVersion(&binding));
    return binding;
  }

  // Rows changed by the last INSERT/UPDATE/DELETE on this connection.
  int64_t Changes() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) { return sqlite3_changes64(db); }

  // Appends one audit entry inside the caller's write transaction, so an entry exists exactly
  // when its change was committed.
  absl::Status Audit(int64_t now, absl::string_view actor, absl::string_view action,
                     absl::string_view resource, absl::string_view details)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    MD_ASSIGN_OR_RETURN(Statement s, Prepare(kInsertAudit));
    s.BindInt64(0, now);
    s.BindText(1, actor.empty() ? kDefaultActor : actor);
    s.BindText(2, action);
    s.BindText(3, resource);
    s.BindText(4, details);
    return s.Run();
  }

  // What BumpSequence does when tier/channel has no row yet.
  enum class IfAbsent { kFail, kCreate };

  // Gives tier/channel its next sequence (NextSequence) and `now` as its update time, and
  // returns the sequence. Only a first bind creates the row (kCreate); anywhere else a missing
  // row is a bug. Devices refuse answers with a lower sequence than one they saw, so every
  // change of what they get goes through here exactly once per tier/channel and transaction.
  absl::StatusOr<int64_t> BumpSequence(absl::string_view tier, absl::string_view channel,
                                       int64_t now, IfAbsent if_absent = IfAbsent::kFail)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    int64_t previous = 0;
    {
      MD_ASSIGN_OR_RETURN(Statement s, Prepare(kSelectTier));
      s.BindText(0, tier);
      s.BindText(1, channel);
      MD_ASSIGN_OR_RETURN(bool found, s.Step());
      if (found) {
        previous = s.ColumnInt64(2);
      } else if (if_absent == IfAbsent::kFail) {
        return MakeError(absl::StatusCode::kInternal, "CATALOG_ERROR",
                         absl::StrCat("catalog: bumping the sequence of ",
                                      TierResource(tier, channel), ", which does not exist"));
      }
    }
    MD_ASSIGN_OR_RETURN(const int64_t next, NextSequence(previous, now));
    MD_ASSIGN_OR_RETURN(Statement s, Prepare(kUpsertTier));
    s.BindText(0, tier);
    s.BindText(1, channel);
    s.BindInt64(2, next);
    s.BindInt64(3, now);
    MD_RETURN_IF_ERROR(s.Run());
    return next;
  }

  // The version of tier/channel's newest bind, whether or not the tier resolves to it;
  // nullopt when it was never bound.
  absl::StatusOr<std::optional<VersionName>> NewestBind(absl::string_view tier,
                                                        absl::string_view channel)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    MD_ASSIGN_OR_RETURN(Statement s, Prepare(kSelectNewestBind));
    s.BindText(0, tier);
    s.BindText(1, channel);
    MD_ASSIGN_OR_RETURN(bool found, s.Step());
    if (!found) return std::nullopt;
    return VersionName{s.ColumnText(0), s.ColumnText(1)};
  }

  // The ACTIVE or PAUSED rollout of tier/channel, if any.
  absl::StatusOr<std::optional<StoredRollout>> LoadOpenRollout(absl::string_view tier,
                                                               absl::string_view channel)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    MD_ASSIGN_OR_RETURN(Statement s, Prepare(kSelectOpenRollout));
    s.BindText(0, tier);
    s.BindText(1, channel);
    MD_ASSIGN_OR_RETURN(bool found, s.Step());
    if (!found) return std::nullopt;
    return ReadRollout(s);
  }

  // As LoadOpenRollout, but NOT_FOUND (ROLLOUT_NOT_FOUND) when there is none.
  absl::StatusOr<StoredRollout> RequireOpenRollout(absl::string_view tier,
                                                   absl::string_view channel)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    MD_ASSIGN_OR_RETURN(std::optional<StoredRollout> open, LoadOpenRollout(tier, channel));
    if (!open) return RolloutNotFound(tier, channel);
    return *std::move(open);
  }

  // Stores a new share and state, and reflects them in `stored`.
  absl::Status UpdateRollout(StoredRollout* stored, int32_t basis_points, v1::Rollout::State state,
                             int64_t now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    MD_ASSIGN_OR_RETURN(Statement s, Prepare(kUpdateRollout));
    s.BindInt64(0, basis_points);
    s.BindInt64(1, state);
    s.BindInt64(2, now);
    s.BindInt64(3, stored->id);
    MD_RETURN_IF_ERROR(s.Run());
    stored->rollout.set_basis_points(basis_points);
    stored->rollout.set_state(state);
    *stored->rollout.mutable_update_time() = ToTimestamp(now);
    return absl::OkStatus();
  }

  // Appends a bind of tier/channel to `version` at `sequence` (already bumped or created).
  absl::Status InsertTierHistory(absl::string_view tier, absl::string_view channel,
                                 int64_t sequence, const VersionName& version, int64_t now)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    MD_ASSIGN_OR_RETURN(Statement s, Prepare(kInsertTierHistory));
    s.BindText(0, tier);
    s.BindText(1, channel);
    s.BindInt64(2, sequence);
    s.BindText(3, version.model);
    s.BindText(4, version.version);
    s.BindInt64(5, now);
    return s.Run();
  }

  // Pause, resume, complete and abort: moves the open rollout of tier/channel to `target`,
  // bumps the sequence and audits, all in the caller's write transaction. `required` is the
  // state the rollout must be in (UNSPECIFIED: ACTIVE or PAUSED); otherwise FAILED_PRECONDITION
  // with `reason`. Pause and resume bump too: the answers are re-signed with the rollout's new
  // state, and one rule (every rollout change bumps) is simpler for devices and operators.
  absl::StatusOr<v1::Rollout> TransitionRollout(absl::string_view tier, absl::string_view channel,
                                                v1::Rollout::State required,
                                                absl::string_view reason, v1::Rollout::State target,
                                                absl::string_view action, absl::string_view verb,
                                                absl::string_view actor)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    MD_ASSIGN_OR_RETURN(StoredRollout stored, RequireOpenRollout(tier, channel));
    if (required != v1::Rollout::STATE_UNSPECIFIED && stored.rollout.state() != required) {
      return RolloutNotInState(stored.rollout, required, reason, verb);
    }
    const int64_t now = NowMicros();
    MD_RETURN_IF_ERROR(UpdateRollout(&stored, stored.rollout.basis_points(), target, now));
    MD_ASSIGN_OR_RETURN(int64_t sequence, BumpSequence(tier, channel, now));
    std::string details;
    switch (target) {
      case v1::Rollout::COMPLETED:
        // The tier is bound to to_version like a SetTier, so a later yank of it falls back to
        // from_version through the ordinary history.
        MD_RETURN_IF_ERROR(InsertTierHistory(tier, channel, sequence, stored.to, now));
        details = absl::StrCat(stored.rollout.id(), " completed: bound to ",
                               stored.rollout.to_version(), " (sequence ", sequence, ")");
        break;
      case v1::Rollout::ABORTED:
        details = absl::StrCat(stored.rollout.id(), " aborted at ", stored.rollout.basis_points(),
                               " bp: everyone back on ", stored.rollout.from_version(),
                               " (sequence ", sequence, ")");
        break;
      default:
        details = absl::StrCat(stored.rollout.id(), " ", RolloutStateName(target), " at ",
                               stored.rollout.basis_points(), " bp (sequence ", sequence, ")");
        break;
    }
    MD_RETURN_IF_ERROR(Audit(now, actor, action, TierResource(tier, channel), details));
    return std::move(stored.rollout);
  }

  // TransitionRollout in a write transaction of its own, under the catalog lock: the whole of
  // PauseRollout, ResumeRollout, CompleteRollout and AbortRollout.
  absl::StatusOr<v1::Rollout> TransitionRolloutAtomically(
      absl::string_view tier, absl::string_view channel, v1::Rollout::State required,
      absl::string_view reason, v1::Rollout::State target, absl::string_view action,
      absl::string_view verb, absl::string_view actor) ABSL_LOCKS_EXCLUDED(mu) {
    absl::MutexLock lock(&mu);
    Transaction txn(this);
    MD_RETURN_IF_ERROR(txn.BeginWrite());
    MD_ASSIGN_OR_RETURN(v1::Rollout rollout, TransitionRollout(tier, channel, required, reason,
                                                               target, action, verb, actor));
    MD_RETURN_IF_ERROR(txn.Commit());
    return rollout;
  }
};

// ---------------------------------------------------------------------------------------------
// Catalog.

Catalog::Catalog(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Catalog::~Catalog() = default;

absl::StatusOr<std::unique_ptr<Catalog>> Catalog::Open(const std::string& path, Options options) {
  sqlite3* db = nullptr;
  int rc = sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, nullptr);
  if (rc != SQLITE_OK) {
    absl::Status status = SqliteError(db, rc, absl::StrCat("opening ", path));
    sqlite3_close(db);  // a handle is returned even on failure
    return status;
  }
  auto impl = std::make_unique<Impl>(db, std::move(options));  // owns `db` from here
  {
    absl::MutexLock lock(&impl->mu);
    MD_RETURN_IF_ERROR(impl->Configure());
  }
  MD_RETURN_IF_ERROR(ApplyMigrations(db));
  MD_ASSIGN_OR_RETURN(impl->schema_version, ReadSchemaVersion(db));
  return std::unique_ptr<Catalog>(new Catalog(std::move(impl)));
}

int Catalog::SchemaVersion() const { return impl_->schema_version; }

int Catalog::LatestSchemaVersion() { return LatestEmbeddedMigration(); }

absl::StatusOr<v1::Model> Catalog::CreateModel(absl::string_view model_id,
                                               absl::string_view description,
                                               absl::string_view actor) {
  absl::MutexLock lock(&impl_->mu);
  Impl::Transaction txn(impl_.get());
  MD_RETURN_IF_ERROR(txn.BeginWrite());
  if (absl::Status exists = impl_->CheckModelExists(model_id); !absl::IsNotFound(exists)) {
    if (!exists.ok()) return exists;
    std::string name = ModelName(model_id);
    return MakeError(absl::StatusCode::kAlreadyExists, "MODEL_EXISTS",
                     absl::StrCat(name, " already exists"), {{"resource", name}});
  }
  const int64_t now = impl_->NowMicros();
  {
    MD_ASSIGN_OR_RETURN(Statement s, impl_->Prepare(kInsertModel));
    s.BindText(0, model_id);
    s.BindText(1, description);
    s.BindInt64(2, now);
    MD_RETURN_IF_ERROR(s.Run());
  }
  MD_RETURN_IF_ERROR(impl_->Audit(now, actor, "CreateModel", ModelName(model_id), "created"));
  MD_RETURN_IF_ERROR(txn.Commit());
  v1::Model model;
  model.set_name(ModelName(model_id));
  model.set_description(std::string(description));
  *model.mutable_create_time() = ToTimestamp(now);
  return model;
}

absl::StatusOr<v1::Model> Catalog::GetModel(absl::string_view model_id) {
  absl::MutexLock lock(&impl_->mu);
  MD_ASSIGN_OR_RETURN(Statement s, impl_->Prepare(kSelectModel));
  s.BindText(0, model_id);
  MD_ASSIGN_OR_RETURN(bool found, s.Step());
  if (!found) return ModelNotFound(model_id);
  return ReadModel(s);
}

absl::StatusOr<ListPage<v1::Model>> Catalog::ListModels(int page_size,
                                                        absl::string_view page_token) {
  MD_ASSIGN_OR_RETURN(const int limit, EffectivePageSize(page_size));
  std::vector<std::string> after;
  if (!page_token.empty()) {
    MD_ASSIGN_OR_RETURN(after, DecodePageToken(page_token, "models", 1));
  }
  absl::MutexLock lock(&impl_->mu);
  MD_ASSIGN_OR_RETURN(Statement s,
                      impl_->Prepare(after.empty() ? kListModelsFirst : kListModelsAfter));
  int bind = 0;
  if (!after.empty()) s.BindText(bind++, after[0]);
  s.BindInt64(bind, limit + 1);  // one extra row tells whether another page exists

  ListPage<v1::Model> page;
  std::string last_id;
  while (true) {
    MD_ASSIGN_OR_RETURN(bool row, s.Step());
    if (!row) break;
    if (static_cast<int>(page.items.size()) == limit) {
      page.next_page_token = EncodePageToken({"models", last_id});
      break;
    }
    last_id = s.ColumnText(0);
    page.items.push_back(ReadModel(s));
  }
  return page;
}

absl::StatusOr<v1::Version> Catalog::CreateVersion(const VersionName& name,
                                                   const std::vector<v1::Artifact>& artifacts,
                                                   absl::string_view actor) {
  // Checks on the request alone come first: they fail the same whatever the catalog holds.
  for (size_t i = 0; i < artifacts.size(); ++i) {
    for (size_t j = 0; j < i; ++j) {
      const v1::Artifact& a = artifacts[j];
      const v1::Artifact& b = artifacts[i];
      if (a.platform() == b.platform() && a.arch() == b.arch() && a.format() == b.format()) {
        return InvalidArgument(
            "artifacts", "DUPLICATE_ARTIFACT",
            absl::StrCat("artifacts[", j, "] and artifacts[", i, "] are both for ", ArtifactKey(b),
                         "; a version has at most one artifact per (platform, ", "arch, format)"));
      }
      if (a.digest() == b.digest() && a.size_bytes() != b.size_bytes()) {
        return InvalidArgument(
            absl::StrCat("artifacts[", i, "].size_bytes"), "SIZE_CONFLICT",
            absl::StrCat("artifacts[", i, "].size_bytes is ", b.size_bytes(), " but artifacts[", j,
                         "] declares ", b.digest(), " with size ", a.size_bytes(),
                         "; the same bytes cannot have two sizes"));
      }
    }
  }

  absl::MutexLock lock(&impl_->mu);
  Impl::Transaction txn(impl_.get());
  MD_RETURN_IF_ERROR(txn.BeginWrite());
  MD_RETURN_IF_ERROR(impl_->CheckModelExists(name.model));
  {
    MD_ASSIGN_OR_RETURN(Statement s, impl_->Prepare(kSelectVersion));
    s.BindText(0, name.model);
    s.BindText(1, name.version);
    MD_ASSIGN_OR_RETURN(bool found, s.Step());
    if (found) {
      return MakeError(absl::StatusCode::kAlreadyExists, "VERSION_EXISTS",
                       absl::StrCat(name.ToString(), " already exists"),
                       {{"resource", name.ToString()}});
    }
  }
  for (size_t i = 0; i < artifacts.size(); ++i) {
    MD_ASSIGN_OR_RETURN(Statement s, impl_->Prepare(kSelectConflictingSize));
    s.BindText(0, artifacts[i].digest());
    s.BindInt64(1, artifacts[i].size_bytes());
    MD_ASSIGN_OR_RETURN(bool conflict, s.Step());
    if (conflict) {
      std::string field = absl::StrCat("artifacts[", i, "].size_bytes");
      return InvalidArgument(
          field, "SIZE_CONFLICT",
          absl::StrCat(field, " is ", artifacts[i].size_bytes(), " but ",
                       VersionName{s.ColumnText(0), s.ColumnText(1)}.ToString(), " declares ",
                       artifacts[i].digest(), " with size ", s.ColumnInt64(2),
                       "; the same bytes cannot have two sizes"));
    }
  }

  const int64_t now = impl_->NowMicros();
  {
    MD_ASSIGN_OR_RETURN(Statement s, impl_->Prepare(kInsertVersion));
    s.BindText(0, name.model);
    s.BindText(1, name.version);
    s.BindInt64(2, v1::Version::DRAFT);
    s.BindInt64(3, now);
    MD_RETURN_IF_ERROR(s.Run());
  }
  for (const v1::Artifact& artifact : artifacts) {
    MD_ASSIGN_OR_RETURN(Statement s, impl_->Prepare(kInsertArtifact));
    s.BindText(0, name.model);
    s.BindText(1, name.version);
    s.BindInt64(2, artifact.platform());
    s.BindInt64(3, artifact.arch());
    s.BindInt64(4, artifact.format());
    s.BindText(5, artifact.digest());
    s.BindInt64(6, artifact.size_bytes());
    // NULL, not an empty blob, for "no constraints": a read then gives back exactly the
    // message that was written, presence included.
    if (artifact.has_constraints()) {
      s.BindBlob(7, artifact.constraints().SerializeAsString());
    } else {
      s.BindNull(7);
    }
    s.BindInt64(8, artifact.unpacked_size_bytes());
    MD_RETURN_IF_ERROR(s.Run());
  }
  // Read back inside the transaction so the answer is exactly what GetVersion will return.
  MD_ASSIGN_OR_RETURN(v1::Version version, impl_->LoadVersion(name));
  MD_RETURN_IF_ERROR(
      impl_->Audit(now, actor, "CreateVersion", name.ToString(),
                   absl::StrCat("DRAFT with ", artifacts.size(),
                                artifacts.size() == 1 ? " artifact" : " artifacts")));
  MD_RETURN_IF_ERROR(txn.Commit());
  return version;
}

absl::StatusOr<v1::Version> Catalog::GetVersion(const VersionName& name) {
  absl::MutexLock lock(&impl_->mu);
  Impl::Transaction txn(impl_.get());
  MD_RETURN_IF_ERROR(txn.BeginRead());
  MD_ASSIGN_OR_RETURN(v1::Version version, impl_->LoadVersion(name));
  MD_RETURN_IF_ERROR(txn.Commit());
  return version;
}

absl::StatusOr<ListPage<v1::Version>> Catalog::ListVersions(absl::string_view model_id,
                                                            int page_size,
                                                            absl::string_view page_token) {
  MD_ASSIGN_OR_RETURN(const int limit, EffectivePageSize(page_size));
  std::vector<std::string> after;
  if (!page_token.empty()) {
    MD_ASSIGN_OR_RETURN(after, DecodePageToken(page_token, "versions", 2));
    if (after[0] != model_id) return InvalidPageToken();
  }
  absl::MutexLock lock(&impl_->mu);
  Impl::Transaction txn(impl_.get());
  MD_RETURN_IF_ERROR(txn.BeginRead());
  MD_RETURN_IF_ERROR(impl_->CheckModelExists(model_id));

  ListPage<v1::Version> page;
  std::vector<VersionName> names;
  {
    MD_ASSIGN_OR_RETURN(Statement s,
                        impl_->Prepare(after.empty() ? kListVersionsFirst : kListVersionsAfter));
    int bind = 0;
    s.BindText(bind++, model_id);
    if (!after.empty()) s.BindText(bind++, after[1]);
    s.BindInt64(bind, limit + 1);
    while (true) {
      MD_ASSIGN_OR_RETURN(bool row, s.Step());
      if (!row) break;
      if (static_cast<int>(page.items.size()) == limit) {
        page.next_page_token =
            EncodePageToken({"versions", std::string(model_id), names.back().version});
        break;
      }
      names.push_back(VersionName{s.ColumnText(0), s.ColumnText(1)});
      page.items.push_back(ReadVersion(s));
    }
  }
  for (size_t i = 0; i < names.size(); ++i) {
    MD_RETURN_IF_ERROR(impl_->LoadArtifacts(names[i], &page.items[i]));
  }
  MD_RETURN_IF_ERROR(txn.Commit());
  return page;
}

absl::StatusOr<v1::Version> Catalog::PublishVersion(
    const VersionName& name, const std::function<bool(const std::string& digest)>& is_uploaded,
    absl::string_view actor) {
  if (!is_uploaded) {
    return MakeError(absl::StatusCode::kInternal, "CATALOG_ERROR",
                     "PublishVersion needs an is_uploaded callback");
  }
  absl::MutexLock lock(&impl_->mu);
  Impl::Transaction txn(impl_.get());
  MD_RETURN_IF_ERROR(txn.BeginWrite());
  MD_ASSIGN_OR_RETURN(v1::Version version, impl_->LoadVersion(name));
  if (version.state() != v1::Version::DRAFT) {
    return MakeError(absl::StatusCode::kFailedPrecondition, "VERSION_NOT_DRAFT",
                     absl::StrCat(name.ToString(), " is ", StateName(version.state()),
                                  "; only a DRAFT version can be published"),
                     {{"resource", name.ToString()}, {"state", StateName(version.state())}});
  }
  for (const v1::Artifact& artifact : version.artifacts()) {
    if (!is_uploaded(artifact.digest())) {
      return MakeError(
          absl::StatusCode::kFailedPrecondition, "ARTIFACT_NOT_UPLOADED",
          absl::StrCat("cannot publish ", name.ToString(), ": its artifact ", ArtifactKey(artifact),
                       " (", artifact.digest(), ") is not uploaded"),
          {{"resource", name.ToString()},
           {"digest", artifact.digest()},
           {"artifact", ArtifactKey(artifact)}});
    }
  }
  const int64_t now = impl_->NowMicros();
  {
    MD_ASSIGN_OR_RETURN(Statement s, impl_->Prepare(kPublishVersion));
    s.BindInt64(0, v1::Version::PUBLISHED);
    s.BindInt64(1, now);
    s.BindText(2, name.model);
    s.BindText(3, name.version);
    MD_RETURN_IF_ERROR(s.Run());
  }
  MD_ASSIGN_OR_RETURN(version, impl_->LoadVersion(name));
  MD_RETURN_IF_ERROR(impl_->Audit(now, actor, "PublishVersion", name.ToString(), "published"));
  MD_RETURN_IF_ERROR(txn.Commit());
  return version;
}

absl::StatusOr<v1::Version> Catalog::YankVersion(const VersionName& name, absl::string_view reason,
                                                 absl::string_view actor) {
  absl::MutexLock lock(&impl_->mu);
  Impl::Transaction txn(impl_.get());
  MD_RETURN_IF_ERROR(txn.BeginWrite());
  MD_ASSIGN_OR_RETURN(v1::Version version, impl_->LoadVersion(name));
  if (version.state() != v1::Version::PUBLISHED) {
    return MakeError(absl::StatusCode::kFailedPrecondition, "VERSION_NOT_PUBLISHED",
                     absl::StrCat(name.ToString(), " is ", StateName(version.state()),
                                  "; only a PUBLISHED version can be yanked"),
                     {{"resource", name.ToString()}, {"state", StateName(version.state())}});
  }

  // Every tier/channel whose answers change, each bumped once however many reasons it has.
  std::set<std::pair<std::string, std::string>> affected;

  // The tiers that resolve to this version now, decided before the yank changes resolution.
  std::vector<std::pair<std::string, std::string>> ever_bound;
  {
    MD_ASSIGN_OR_RETURN(Statement s, impl_->Prepare(kSelectTiersEverBoundTo));
    s.BindText(0, name.model);
    s.BindText(1, name.version);
    while (true) {
      MD_ASSIGN_OR_RETURN(bool row, s.Step());
      if (!row) break;
      ever_bound.emplace_back(s.ColumnText(0), s.ColumnText(1));
    }
  }
  int fallbacks = 0;
  for (const auto& [tier, channel] : ever_bound) {
    MD_ASSIGN_OR_RETURN(std::optional<VersionName> resolved, impl_->Resolve(tier, channel));
    if (resolved && resolved->model == name.model && resolved->version == name.version) {
      affected.emplace(tier, channel);
      ++fallbacks;
    }
  }

  const int64_t now = impl_->NowMicros();
  {
    MD_ASSIGN_OR_RETURN(Statement s, impl_->Prepare(kYankVersion));
    s.BindInt64(0, v1::Version::YANKED);
    s.BindInt64(1, now);
    s.BindText(2, reason);
    s.BindText(3, name.model);
    s.BindText(4, name.version);
    MD_RETURN_IF_ERROR(s.Run());
  }

  // A rollout towards a yanked version must not keep serving it to its cohort.
  std::vector<StoredRollout> aborted;
  {
    MD_ASSIGN_OR_RETURN(Statement s, impl_->Prepare(kSelectOpenRolloutsTo));
    s.BindText(0, name.model);
    s.BindText(1, name.version);
    while (true) {
      MD_ASSIGN_OR_RETURN(bool row, s.Step());
      if (!row) break;
      aborted.push_back(ReadRollout(s));
    }
  }
  for (StoredRollout& rollout : aborted) {
    MD_RETURN_IF_ERROR(
        impl_->UpdateRollout(&rollout, rollout.rollout.basis_points(), v1::Rollout::ABORTED, now));
    affected.emplace(rollout.rollout.tier(), rollout.rollout.channel());
  }

  // Pins name PUBLISHED versions only; pinned devices return to the tier's ordinary answer.
  int64_t unpinned = 0;
  {
    MD_ASSIGN_OR_RETURN(Statement s, impl_->Prepare(kSelectTiersPinnedTo));
    s.BindText(0, name.model);
    s.BindText(1, name.version);
    while (true) {
      MD_ASSIGN_OR_RETURN(bool row, s.Step());
      if (!row) break;
      affected.emplace(s.ColumnText(0), s.ColumnText(1));
      unpinned += s.ColumnInt64(2);
    }
  }
  if (unpinned > 0) {
    MD_ASSIGN_OR_RETURN(Statement s, impl_->Prepare(kDeletePinsTo));
    s.BindText(0, name.model);
    s.BindText(1, name.version);
    MD_RETURN_IF_ERROR(s.Run());
  }

  std::vector<std::string> changed;
  for (const auto& [tier, channel] : affected) {
    MD_ASSIGN_OR_RETURN(int64_t sequence, impl_->BumpSequence(tier, channel, now));
    changed.push_back(absl::StrCat(TierResource(tier, channel), " (sequence ", sequence, ")"));
  }
  std::string details = absl::StrCat("yanked: \"", reason, "\"");
  if (fallbacks > 0) absl::StrAppend(&details, "; ", fallbacks, " tier(s) fell back");
  for (const StoredRollout& rollout : aborted) {
    absl::StrAppend(&details, "; rollout ", rollout.rollout.id(), " aborted");
  }
  if (unpinned > 0) absl::StrAppend(&details, "; ", unpinned, " pin(s) removed");
  if (!changed.empty()) absl::StrAppend(&details, "; changed ", absl::StrJoin(changed, ", "));
  MD_RETURN_IF_ERROR(impl_->Audit(now, actor, "YankVersion", name.ToString(), details));

  MD_ASSIGN_OR_RETURN(version, impl_->LoadVersion(name));
  MD_RETURN_IF_ERROR(txn.Commit());
  return version;
}

absl::StatusOr<v1::TierBinding> Catalog::SetTier(absl::string_view tier, absl::string_view channel,
                                                 const VersionName& version_name,
                                                 absl::string_view actor) {
  absl::MutexLock lock(&impl_->mu);
  Impl::Transaction txn(impl_.get());
  MD_RETURN_IF_ERROR(txn.BeginWrite());
  MD_ASSIGN_OR_RETURN(v1::Version version, impl_->LoadVersion(version_name));
  if (version.state() != v1::Version::PUBLISHED) {
    return MakeError(
        absl::StatusCode::kFailedPrecondition, "VERSION_NOT_PUBLISHED",
        absl::StrCat("cannot bind tier \"", tier, "\" on channel \"", channel, "\" to ",
                     version_name.ToString(), ": it is ", StateName(version.state()),
                     "; only a PUBLISHED version can be bound"),
        {{"resource", version_name.ToString()}, {"state", StateName(version.state())}});
  }
  // A bind under a running rollout would silently change its from_version for everyone
  // outside the cohort; the operator decides the rollout's fate first.
  MD_ASSIGN_OR_RETURN(std::optional<StoredRollout> open, impl_->LoadOpenRollout(tier, channel));
  if (open) {
    return RolloutInProgress(open->rollout,
                             absl::StrCat("bind tier \"", tier, "\" on channel \"", channel, "\""));
  }
  // Binding what is already bound changes nothing devices see, so it changes nothing at all
  // (no history row, no bump, no audit entry): publishing the same thing twice is a no-op.
  // The version is PUBLISHED (checked above), so a newest bind naming it is also what the
  // tier resolves to; the second test states the rule, not a case that can differ today.
  MD_ASSIGN_OR_RETURN(std::optional<VersionName> newest, impl_->NewestBind(tier, channel));
  if (newest && newest->model == version_name.model && newest->version == version_name.version) {
    MD_ASSIGN_OR_RETURN(v1::TierBinding current, impl_->LoadBinding(tier, channel));
    if (current.version() == version_name.ToString()) {
      MD_RETURN_IF_ERROR(txn.Commit());
      return current;
    }
  }
  const int64_t now = impl_->NowMicros();
  MD_RETURN_IF_ERROR(impl_->BumpSequence(tier, channel, now, Impl::IfAbsent::kCreate).status());
  MD_ASSIGN_OR_RETURN(v1::TierBinding binding, impl_->LoadBinding(tier, channel));
  MD_RETURN_IF_ERROR(
      impl_->InsertTierHistory(tier, channel, binding.sequence(), version_name, now));
  MD_RETURN_IF_ERROR(impl_->Audit(
      now, actor, "SetTier", TierResource(tier, channel),
      absl::StrCat("bound to ", version_name.ToString(), " (sequence ", binding.sequence(), ")")));
  MD_RETURN_IF_ERROR(txn.Commit());
  binding.set_version(version_name.ToString());  // the newest bind, and it is PUBLISHED
  return binding;
}

absl::StatusOr<v1::TierBinding> Catalog::GetTier(absl::string_view tier,
                                                 absl::string_view channel) {
  absl::MutexLock lock(&impl_->mu);
  Impl::Transaction txn(impl_.get());
  MD_RETURN_IF_ERROR(txn.BeginRead());
  MD_ASSIGN_OR_RETURN(v1::TierBinding binding, impl_->LoadBinding(tier, channel));
  MD_RETURN_IF_ERROR(txn.Commit());
  return binding;
}

absl::StatusOr<ListPage<v1::TierBinding>> Catalog::ListTiers(int page_size,
                                                             absl::string_view page_token) {
  MD_ASSIGN_OR_RETURN(const int limit, EffectivePageSize(page_size));
  std::vector<std::string> after;
  if (!page_token.empty()) {
    MD_ASSIGN_OR_RETURN(after, DecodePageToken(page_token, "tiers", 2));
  }
  absl::MutexLock lock(&impl_->mu);
  Impl::Transaction txn(impl_.get());
  MD_RETURN_IF_ERROR(txn.BeginRead());
  ListPage<v1::TierBinding> page;
  {
    MD_ASSIGN_OR_RETURN(Statement s,
                        impl_->Prepare(after.empty() ? kListTiersFirst : kListTiersAfter));
    int bind = 0;
    if (!after.empty()) {
      s.BindText(bind++, after[0]);
      s.BindText(bind++, after[1]);
    }
    s.BindInt64(bind, limit + 1);
    while (true) {
      MD_ASSIGN_OR_RETURN(bool row, s.Step());
      if (!row) break;
      if (static_cast<int>(page.items.size()) == limit) {
        const v1::TierBinding& last = page.items.back();
        page.next_page_token = EncodePageToken({"tiers", last.tier(), last.channel()});
        break;
      }
      page.items.push_back(ReadTier(s));
    }
  }
  for (v1::TierBinding& binding : page.items) {
    MD_RETURN_IF_ERROR(impl_->FillResolvedVersion(&binding));
  }
  MD_RETURN_IF_ERROR(txn.Commit());
  return page;
}

absl::StatusOr<std::vector<ResolvedTier>> Catalog::ResolveAllTiers() {
  absl::MutexLock lock(&impl_->mu);
  Impl::Transaction txn(impl_.get());
  MD_RETURN_IF_ERROR(txn.BeginRead());
  std::vector<v1::TierBinding> bindings;
  {
    MD_ASSIGN_OR_RETURN(Statement s, impl_->Prepare(kListAllTiers));
    while (true) {
      MD_ASSIGN_OR_RETURN(bool row, s.Step());
      if (!row) break;
      bindings.push_back(ReadTier(s));
    }
  }
  std::vector<ResolvedTier> resolved;
  for (v1::TierBinding& binding : bindings) {
    MD_ASSIGN_OR_RETURN(std::optional<VersionName> name,
                        impl_->Resolve(binding.tier(), binding.channel()));
    if (!name) continue;
    binding.set_version(name->ToString());
    MD_ASSIGN_OR_RETURN(v1::Version version, impl_->LoadVersion(*name));
    ResolvedTier tier;
    MD_ASSIGN_OR_RETURN(std::optional<StoredRollout> rollout,
                        impl_->LoadOpenRollout(binding.tier(), binding.channel()));
    if (rollout) {
      // A yank of to_version aborts the rollout in the same transaction, so this is PUBLISHED.
      MD_ASSIGN_OR_RETURN(tier.rollout_version, impl_->LoadVersion(rollout->to));
      tier.rollout = std::move(rollout->rollout);
    }
    std::vector<VersionName> pinned;
    {
      MD_ASSIGN_OR_RETURN(Statement s, impl_->Prepare(kSelectPinsOfTier));
      s.BindText(0, binding.tier());
      s.BindText(1, binding.channel());
      while (true) {
        MD_ASSIGN_OR_RETURN(bool row, s.Step());
        if (!row) break;
        tier.pins.push_back(ReadPin(s));
        pinned.push_back(VersionName{s.ColumnText(3), s.ColumnText(4)});
      }
    }
    for (const VersionName& pin_version : pinned) {
      std::string key = pin_version.ToString();
      if (tier.pinned_versions.count(key) > 0) continue;
      MD_ASSIGN_OR_RETURN(tier.pinned_versions[key], impl_->LoadVersion(pin_version));
    }
    tier.binding = std::move(binding);
    tier.version = std::move(version);
    resolved.push_back(std::move(tier));
  }
  MD_RETURN_IF_ERROR(txn.Commit());
  return resolved;
}

// ---------------------------------------------------------------------------------------------
// Rollouts.

absl::StatusOr<v1::Rollout> Catalog::StartRollout(absl::string_view tier, absl::string_view channel,
                                                  const VersionName& to_version,
                                                  int32_t basis_points, absl::string_view actor) {
  MD_RETURN_IF_ERROR(CheckBasisPoints(basis_points));
  absl::MutexLock lock(&impl_->mu);
  Impl::Transaction txn(impl_.get());
  MD_RETURN_IF_ERROR(txn.BeginWrite());
  MD_ASSIGN_OR_RETURN(v1::TierBinding binding, impl_->LoadBinding(tier, channel));
  MD_ASSIGN_OR_RETURN(v1::Version to, impl_->LoadVersion(to_version));
  if (to.state() != v1::Version::PUBLISHED) return VersionNotPublished(to, "roll out");
  MD_ASSIGN_OR_RETURN(std::optional<StoredRollout> open, impl_->LoadOpenRollout(tier, channel));
  if (open) return RolloutInProgress(open->rollout, "start a rollout");
  // Devices outside the cohort keep what the tier resolves to; with nothing resolved there is
  // no "from" to keep them on.
  MD_ASSIGN_OR_RETURN(std::optional<VersionName> from, impl_->Resolve(tier, channel));
  if (!from) {
    return MakeError(absl::StatusCode::kNotFound, "TIER_NOT_BOUND",
                     absl::StrCat("tier \"", tier, "\" on channel \"", channel,
                                  "\" resolves to no version (every version bound to it was "
                                  "yanked); bind it with SetTier first"),
                     {{"tier", std::string(tier)}, {"channel", std::string(channel)}});
  }
  if (from->model == to_version.model && from->version == to_version.version) {
    return MakeError(absl::StatusCode::kFailedPrecondition, "VERSION_ALREADY_BOUND",
                     absl::StrCat("tier \"", tier, "\" on channel \"", channel,
                                  "\" already resolves to ", to_version.ToString()),
                     {{"resource", to_version.ToString()}});
  }

  const int64_t now = impl_->NowMicros();
  {
    MD_ASSIGN_OR_RETURN(Statement s, impl_->Prepare(kInsertRollout));
    s.BindText(0, tier);
    s.BindText(1, channel);
    s.BindText(2, from->model);
    s.BindText(3, from->version);
    s.BindText(4, to_version.model);
    s.BindText(5, to_version.version);
    s.BindInt64(6, basis_points);
    s.BindInt64(7, v1::Rollout::ACTIVE);
    s.BindInt64(8, now);
    s.BindInt64(9, now);
    MD_RETURN_IF_ERROR(s.Run());
  }
  MD_ASSIGN_OR_RETURN(StoredRollout stored, impl_->RequireOpenRollout(tier, channel));
  MD_ASSIGN_OR_RETURN(int64_t sequence, impl_->BumpSequence(tier, channel, now));
  MD_RETURN_IF_ERROR(impl_->Audit(
      now, actor, "StartRollout", TierResource(tier, channel),
      absl::StrCat(stored.rollout.id(), ": ", binding.version(), " -> ", to_version.ToString(),
                   " at ", basis_points, " bp (sequence ", sequence, ")")));
  MD_RETURN_IF_ERROR(txn.Commit());
  return std::move(stored.rollout);
}

absl::StatusOr<v1::Rollout> Catalog::AdvanceRollout(absl::string_view tier,
                                                    absl::string_view channel, int32_t basis_points,
                                                    absl::string_view actor) {
  MD_RETURN_IF_ERROR(CheckBasisPoints(basis_points));
  absl::MutexLock lock(&impl_->mu);
  Impl::Transaction txn(impl_.get());
  MD_RETURN_IF_ERROR(txn.BeginWrite());
  MD_ASSIGN_OR_RETURN(StoredRollout stored, impl_->RequireOpenRollout(tier, channel));
  if (stored.rollout.state() != v1::Rollout::ACTIVE) {
    return RolloutNotInState(stored.rollout, v1::Rollout::ACTIVE, "ROLLOUT_PAUSED", "advance");
  }
  const int32_t current = stored.rollout.basis_points();
  if (basis_points < current) {
    // The cohort is a prefix of the hash space: shrinking it would move devices back.
    return MakeError(absl::StatusCode::kInvalidArgument, "BASIS_POINTS_DECREASE",
                     absl::StrCat("basis_points ", basis_points, " is below the current ", current,
                                  " of rollout ", stored.rollout.id(),
                                  "; a rollout only grows (use AbortRollout to go back)"),
                     {{"field", "basis_points"}, {"rollout", stored.rollout.id()}});
  }
  const int64_t now = impl_->NowMicros();
  std::string details;
  if (basis_points == current) {
    // Nothing devices see changes, so no bump; the call is still on record.
    details = absl::StrCat(stored.rollout.id(), ": unchanged at ", current, " bp");
  } else {
    MD_RETURN_IF_ERROR(impl_->UpdateRollout(&stored, basis_points, v1::Rollout::ACTIVE, now));
    MD_ASSIGN_OR_RETURN(int64_t sequence, impl_->BumpSequence(tier, channel, now));
    details = absl::StrCat(stored.rollout.id(), ": ", current, " -> ", basis_points,
                           " bp (sequence ", sequence, ")");
  }
  MD_RETURN_IF_ERROR(
      impl_->Audit(now, actor, "AdvanceRollout", TierResource(tier, channel), details));
  MD_RETURN_IF_ERROR(txn.Commit());
  return std::move(stored.rollout);
}

absl::StatusOr<v1::Rollout> Catalog::PauseRollout(absl::string_view tier, absl::string_view channel,
                                                  absl::string_view actor) {
  return impl_->TransitionRolloutAtomically(tier, channel, v1::Rollout::ACTIVE,
                                            "ROLLOUT_NOT_ACTIVE", v1::Rollout::PAUSED,
                                            "PauseRollout", "pause", actor);
}

absl::StatusOr<v1::Rollout> Catalog::ResumeRollout(absl::string_view tier,
                                                   absl::string_view channel,
                                                   absl::string_view actor) {
  return impl_->TransitionRolloutAtomically(tier, channel, v1::Rollout::PAUSED,
                                            "ROLLOUT_NOT_PAUSED", v1::Rollout::ACTIVE,
                                            "ResumeRollout", "resume", actor);
}

absl::StatusOr<v1::Rollout> Catalog::CompleteRollout(absl::string_view tier,
                                                     absl::string_view channel,
                                                     absl::string_view actor) {
  return impl_->TransitionRolloutAtomically(tier, channel, v1::Rollout::STATE_UNSPECIFIED, "",
                                            v1::Rollout::COMPLETED, "CompleteRollout", "complete",
                                            actor);
}

absl::StatusOr<v1::Rollout> Catalog::AbortRollout(absl::string_view tier, absl::string_view channel,
                                                  absl::string_view actor) {
  return impl_->TransitionRolloutAtomically(tier, channel, v1::Rollout::STATE_UNSPECIFIED, "",
                                            v1::Rollout::ABORTED, "AbortRollout", "abort", actor);
}

absl::StatusOr<ListPage<v1::Rollout>> Catalog::ListRollouts(absl::string_view tier,
                                                            absl::string_view channel,
                                                            int page_size,
                                                            absl::string_view page_token) {
  MD_ASSIGN_OR_RETURN(const int limit, EffectivePageSize(page_size));
  int64_t before = std::numeric_limits<int64_t>::max();
  if (!page_token.empty()) {
    // The filter is part of the token: with another filter the cursor would skip rows.
    MD_ASSIGN_OR_RETURN(std::vector<std::string> after, DecodePageToken(page_token, "rollouts", 3));
    if (after[0] != tier || after[1] != channel || !absl::SimpleAtoi(after[2], &before)) {
      return InvalidPageToken();
    }
  }
  absl::MutexLock lock(&impl_->mu);
  MD_ASSIGN_OR_RETURN(Statement s, impl_->Prepare(kListRollouts));
  s.BindText(0, tier);
  s.BindText(1, channel);
  s.BindInt64(2, before);
  s.BindInt64(3, limit + 1);
  ListPage<v1::Rollout> page;
  int64_t last_id = 0;
  while (true) {
    MD_ASSIGN_OR_RETURN(bool row, s.Step());
    if (!row) break;
    if (static_cast<int>(page.items.size()) == limit) {
      page.next_page_token = EncodePageToken(
          {"rollouts", std::string(tier), std::string(channel), absl::StrCat(last_id)});
      break;
    }
    StoredRollout stored = ReadRollout(s);
    last_id = stored.id;
    page.items.push_back(std::move(stored.rollout));
  }
  return page;
}

// ---------------------------------------------------------------------------------------------
// Device pins.

absl::StatusOr<Catalog::PinChange> Catalog::PinDevices(absl::string_view tier,
                                                       absl::string_view channel,
                                                       const std::vector<std::string>& device_ids,
                                                       const VersionName& version,
                                                       absl::string_view actor) {
  absl::MutexLock lock(&impl_->mu);
  Impl::Transaction txn(impl_.get());
  MD_RETURN_IF_ERROR(txn.BeginWrite());
  MD_ASSIGN_OR_RETURN(v1::TierBinding binding, impl_->LoadBinding(tier, channel));
  MD_ASSIGN_OR_RETURN(v1::Version pinned, impl_->LoadVersion(version));
  if (pinned.state() != v1::Version::PUBLISHED)
    return VersionNotPublished(pinned, "pin devices to");

  const int64_t now = impl_->NowMicros();
  PinChange change;
  change.sequence = binding.sequence();
  for (const std::string& device_id : device_ids) {
    MD_ASSIGN_OR_RETURN(Statement s, impl_->Prepare(kUpsertPin));
    s.BindText(0, tier);
    s.BindText(1, channel);
    s.BindText(2, device_id);
    s.BindText(3, version.model);
    s.BindText(4, version.version);
    s.BindInt64(5, now);
    MD_RETURN_IF_ERROR(s.Run());
    change.changed += static_cast<int32_t>(impl_->Changes());
  }
  if (change.changed > 0) {
    MD_ASSIGN_OR_RETURN(change.sequence, impl_->BumpSequence(tier, channel, now));
  }
  MD_RETURN_IF_ERROR(impl_->Audit(
      now, actor, "PinDevices", TierResource(tier, channel),
      absl::StrCat("pinned ", device_ids.size(), " device(s) to ", version.ToString(), ", ",
                   change.changed, " changed (sequence ", change.sequence, ")")));
  MD_RETURN_IF_ERROR(txn.Commit());
  return change;
}

absl::StatusOr<Catalog::PinChange> Catalog::UnpinDevices(absl::string_view tier,
                                                         absl::string_view channel,
                                                         const std::vector<std::string>& device_ids,
                                                         absl::string_view actor) {
  absl::MutexLock lock(&impl_->mu);
  Impl::Transaction txn(impl_.get());
  MD_RETURN_IF_ERROR(txn.BeginWrite());
  MD_ASSIGN_OR_RETURN(v1::TierBinding binding, impl_->LoadBinding(tier, channel));
  const int64_t now = impl_->NowMicros();
  PinChange change;
  change.sequence = binding.sequence();
  for (const std::string& device_id : device_ids) {
    MD_ASSIGN_OR_RETURN(Statement s, impl_->Prepare(kDeletePin));
    s.BindText(0, tier);
    s.BindText(1, channel);
    s.BindText(2, device_id);
    MD_RETURN_IF_ERROR(s.Run());
    change.changed += static_cast<int32_t>(impl_->Changes());
  }
  if (change.changed > 0) {
    MD_ASSIGN_OR_RETURN(change.sequence, impl_->BumpSequence(tier, channel, now));
  }
  MD_RETURN_IF_ERROR(
      impl_->Audit(now, actor, "UnpinDevices", TierResource(tier, channel),
                   absl::StrCat("unpinned ", change.changed, " of ", device_ids.size(),
                                " device(s) (sequence ", change.sequence, ")")));
  MD_RETURN_IF_ERROR(txn.Commit());
  return change;
}

absl::StatusOr<ListPage<v1::DevicePin>> Catalog::ListPins(int page_size,
                                                          absl::string_view page_token) {
  MD_ASSIGN_OR_RETURN(const int limit, EffectivePageSize(page_size));
  std::vector<std::string> after;
  if (!page_token.empty()) {
    MD_ASSIGN_OR_RETURN(after, DecodePageToken(page_token, "pins", 3));
  }
  absl::MutexLock lock(&impl_->mu);
  MD_ASSIGN_OR_RETURN(Statement s, impl_->Prepare(after.empty() ? kListPinsFirst : kListPinsAfter));
  int bind = 0;
  for (const std::string& part : after) s.BindText(bind++, part);
  s.BindInt64(bind, limit + 1);
  ListPage<v1::DevicePin> page;
  while (true) {
    MD_ASSIGN_OR_RETURN(bool row, s.Step());
    if (!row) break;
    if (static_cast<int>(page.items.size()) == limit) {
      const v1::DevicePin& last = page.items.back();
      page.next_page_token =
          EncodePageToken({"pins", last.tier(), last.channel(), last.device_id()});
      break;
    }
    page.items.push_back(ReadPin(s));
  }
  return page;
}

// ---------------------------------------------------------------------------------------------
// Audit log.

absl::StatusOr<ListPage<v1::AuditEntry>> Catalog::ListAuditLog(int page_size,
                                                               absl::string_view page_token) {
  MD_ASSIGN_OR_RETURN(const int limit, EffectivePageSize(page_size));
  int64_t before = std::numeric_limits<int64_t>::max();
  if (!page_token.empty()) {
    MD_ASSIGN_OR_RETURN(std::vector<std::string> after, DecodePageToken(page_token, "audit", 1));
    if (!absl::SimpleAtoi(after[0], &before)) return InvalidPageToken();
  }
  absl::MutexLock lock(&impl_->mu);
  MD_ASSIGN_OR_RETURN(Statement s, impl_->Prepare(kListAudit));
  s.BindInt64(0, before);
  s.BindInt64(1, limit + 1);
  ListPage<v1::AuditEntry> page;
  while (true) {
    MD_ASSIGN_OR_RETURN(bool row, s.Step());
    if (!row) break;
    if (static_cast<int>(page.items.size()) == limit) {
      page.next_page_token = EncodePageToken({"audit", absl::StrCat(page.items.back().id())});
      break;
    }
    page.items.push_back(ReadAuditEntry(s));
  }
  return page;
}

absl::Status Catalog::AppendAudit(absl::string_view actor, absl::string_view action,
                                  absl::string_view resource, absl::string_view details) {
  absl::MutexLock lock(&impl_->mu);
  Impl::Transaction txn(impl_.get());
  MD_RETURN_IF_ERROR(txn.BeginWrite());
  MD_RETURN_IF_ERROR(impl_->Audit(impl_->NowMicros(), actor, action, resource, details));
  return txn.Commit();
}

// ---------------------------------------------------------------------------------------------
// Trust roots.

absl::Status Catalog::AppendTrustRoot(int64_t version, absl::string_view signed_root,
                                      absl::string_view actor) {
  absl::MutexLock lock(&impl_->mu);
  Impl::Transaction txn(impl_.get());
  MD_RETURN_IF_ERROR(txn.BeginWrite());
  int64_t newest = 0;
  {
    MD_ASSIGN_OR_RETURN(Statement s, impl_->Prepare(kSelectNewestTrustRootVersion));
    MD_ASSIGN_OR_RETURN(bool row, s.Step());
    if (row) newest = s.ColumnInt64(0);
  }
  // Devices walk the chain one version at a time, each root signed by its predecessor; a gap
  // or a second root with one number would strand them.
  if (version != newest + 1) {
    return MakeError(absl::StatusCode::kFailedPrecondition, "ROOT_VERSION_GAP",
                     absl::StrCat("trust root version ", version, " cannot follow version ", newest,
                                  "; the next root must be version ", newest + 1),
                     {{"version", absl::StrCat(version)}, {"expected", absl::StrCat(newest + 1)}});
  }
  const int64_t now = impl_->NowMicros();
  {
    MD_ASSIGN_OR_RETURN(Statement s, impl_->Prepare(kInsertTrustRoot));
    s.BindInt64(0, version);
    s.BindBlob(1, signed_root);
    s.BindInt64(2, now);
    MD_RETURN_IF_ERROR(s.Run());
  }
  MD_RETURN_IF_ERROR(impl_->Audit(
      now, actor, "AppendTrustRoot", absl::StrCat("trustRoots/", version),
      absl::StrCat("trust root version ", version, " (", signed_root.size(), " bytes)")));
  return txn.Commit();
}

absl::StatusOr<std::string> Catalog::GetTrustRoot(int64_t version) {
  absl::MutexLock lock(&impl_->mu);
  Impl::Transaction txn(impl_.get());
  MD_RETURN_IF_ERROR(txn.BeginRead());
  int64_t wanted = version;
  if (wanted == 0) {
    MD_ASSIGN_OR_RETURN(Statement s, impl_->Prepare(kSelectNewestTrustRootVersion));
    MD_ASSIGN_OR_RETURN(bool row, s.Step());
    if (row) wanted = s.ColumnInt64(0);
  }
  std::string root;
  bool found = false;
  if (wanted > 0) {
    MD_ASSIGN_OR_RETURN(Statement s, impl_->Prepare(kSelectTrustRoot));
    s.BindInt64(0, wanted);
    MD_ASSIGN_OR_RETURN(found, s.Step());
    if (found) root = s.ColumnBlob(0);
  }
  MD_RETURN_IF_ERROR(txn.Commit());
  if (!found) {
    return MakeError(absl::StatusCode::kNotFound, "TRUST_ROOT_NOT_FOUND",
                     version == 0 ? std::string("no trust root is stored yet")
                                  : absl::StrCat("trust root version ", version, " does not exist"),
                     {{"version", absl::StrCat(version)}});
  }
  return root;
}

absl::StatusOr<int64_t> Catalog::DeclaredSize(absl::string_view digest) {
  absl::MutexLock lock(&impl_->mu);
  MD_ASSIGN_OR_RETURN(Statement s, impl_->Prepare(kSelectDeclaredSize));
  s.BindText(0, digest);
  MD_ASSIGN_OR_RETURN(bool found, s.Step());
  if (!found) {
    return MakeError(absl::StatusCode::kNotFound, "DIGEST_NOT_DECLARED",
                     absl::StrCat("no version declares an artifact with digest ", digest),
                     {{"digest", std::string(digest)}});
  }
  return s.ColumnInt64(0);
}

// ---------------------------------------------------------------------------------------------
// Damaged blobs.

absl::StatusOr<bool> Catalog::MarkBlobDamaged(absl::string_view digest, absl::string_view details,
                                              absl::string_view actor) {
  absl::MutexLock lock(&impl_->mu);
  Impl::Transaction txn(impl_.get());
  MD_RETURN_IF_ERROR(txn.BeginWrite());
  const int64_t now = impl_->NowMicros();
  {
    MD_ASSIGN_OR_RETURN(Statement s, impl_->Prepare(kInsertDamagedBlob));
    s.BindText(0, digest);
    s.BindText(1, details);
    s.BindInt64(2, now);
    MD_RETURN_IF_ERROR(s.Run());
  }
  if (impl_->Changes() == 0) return false;  // already recorded: one audit entry per incident
  MD_RETURN_IF_ERROR(impl_->Audit(now, actor, "BlobDamaged", digest, details));
  MD_RETURN_IF_ERROR(txn.Commit());
  return true;
}

absl::StatusOr<bool> Catalog::ClearBlobDamaged(absl::string_view digest, absl::string_view details,
                                               absl::string_view actor) {
  absl::MutexLock lock(&impl_->mu);
  Impl::Transaction txn(impl_.get());
  MD_RETURN_IF_ERROR(txn.BeginWrite());
  {
    MD_ASSIGN_OR_RETURN(Statement s, impl_->Prepare(kDeleteDamagedBlob));
    s.BindText(0, digest);
    MD_RETURN_IF_ERROR(s.Run());
  }
  if (impl_->Changes() == 0) return false;
  MD_RETURN_IF_ERROR(impl_->Audit(impl_->NowMicros(), actor, "BlobRestored", digest, details));
  MD_RETURN_IF_ERROR(txn.Commit());
  return true;
}

absl::StatusOr<std::vector<DamagedBlob>> Catalog::ListDamagedBlobs() {
  absl::MutexLock lock(&impl_->mu);
  MD_ASSIGN_OR_RETURN(Statement s, impl_->Prepare(kListDamagedBlobs));
  std::vector<DamagedBlob> out;
  for (;;) {
    MD_ASSIGN_OR_RETURN(bool row, s.Step());
    if (!row) break;
    out.push_back({s.ColumnText(0), s.ColumnText(1), absl::FromUnixMicros(s.ColumnInt64(2))});
  }
  return out;
}

absl::StatusOr<bool> Catalog::IsDigestPublished(absl::string_view digest) {
  absl::MutexLock lock(&impl_->mu);
  MD_ASSIGN_OR_RETURN(Statement s, impl_->Prepare(kSelectDigestPublished));
  s.BindText(0, digest);
  return s.Step();
}

absl::StatusOr<std::vector<std::string>> Catalog::ListPublishedDigests() {
  absl::MutexLock lock(&impl_->mu);
  MD_ASSIGN_OR_RETURN(Statement s, impl_->Prepare(kSelectPublishedDigests));
  std::vector<std::string> out;
  for (;;) {
    MD_ASSIGN_OR_RETURN(bool row, s.Step());
    if (!row) break;
    out.push_back(s.ColumnText(0));
  }
  return out;
}

absl::StatusOr<std::string> Catalog::IntegrityCheck() {
  absl::MutexLock lock(&impl_->mu);
  MD_ASSIGN_OR_RETURN(Statement s, impl_->Prepare(kIntegrityCheck));
  std::vector<std::string> lines;
  while (true) {
    MD_ASSIGN_OR_RETURN(bool row, s.Step());
    if (!row) break;
    lines.push_back(s.ColumnText(0));
  }
  return absl::StrJoin(lines, "\n");
}

}  // namespace modeldist::storage
