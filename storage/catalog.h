// File: catalog.h
//
// The versioned catalog of models, versions, artifacts and tier bindings, in SQLite.
//
// Opening the catalog applies the numbered migrations from migrations/ (embedded into the
// binary at build time), each in one transaction, recording the schema version in
// `schema_migrations`; a database whose version is newer than this binary knows is refused
// with FAILED_PRECONDITION. The database runs in WAL mode with foreign keys on and
// synchronous=FULL, so every acknowledged write survives a crash or power loss.
//
// Records are the modeldist.v1 protos (the API is the schema's manual). Validation of request
// syntax (ids, digests) is the caller's; the catalog enforces relations and state rules and
// returns NOT_FOUND / ALREADY_EXISTS / FAILED_PRECONDITION with an ErrorInfo reason.
//
// Sequences: every tier/channel has one (TierBinding.sequence, signed into each manifest), and
// every change of what its devices get (bind, yank, rollout step, pin change) gives it a new
// one, in the change's transaction. One rule computes every new sequence, the first bind's
// too: max(previous + 1, the clock (CatalogOptions::now) in microseconds since the Unix epoch),
// with previous = 0 before the first bind. The + 1 keeps sequences strictly increasing even
// when the clock stands still or goes back. The clock keeps a catalog restored from an older
// copy (a backup, the other side of a split brain) from issuing again a sequence the lost
// catalog issued for other content, which devices that saw it would install or refuse wrongly:
// the restored catalog's sequences are at least its clock, which is past every sequence the
// lost one issued, unless the lost one ran more than one change per microsecond ahead of its
// clock, or its clock was ahead of the restored one's (a clock that went back). A catalog from
// before this rule has small sequences; each jumps to the clock on its next change, which
// devices accept (it is higher).
//
// Thread-safe: one connection guarded by a mutex.
#ifndef MODELDIST_STORAGE_CATALOG_H_
#define MODELDIST_STORAGE_CATALOG_H_

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "common/names.h"
#include "modeldist/v1/registry.pb.h"
#include "modeldist/v1/resources.pb.h"
#include "storage/fleet_rows.h"

namespace modeldist::storage {

// `PLATFORM/ARCH/FORMAT` of an artifact, as messages name it (numbers for values newer than
// this binary).
std::string ArtifactKey(const v1::Artifact& artifact);

template <typename T>
struct ListPage {
  std::vector<T> items;
  std::string next_page_token;  // empty on the last page
};

// Everything the manifest cache needs to answer one tier/channel: the binding with the version
// it resolves to (only PUBLISHED versions are ever resolved), the ACTIVE or PAUSED rollout with
// its target version, and the device pins with their versions.
struct ResolvedTier {
  v1::TierBinding binding;
  v1::Version version;
  std::optional<v1::Rollout> rollout;
  std::optional<v1::Version> rollout_version;  // set iff rollout is
  std::vector<v1::DevicePin> pins;             // ordered by device_id
  // Every version a pin names, by resource name.
  std::map<std::string, v1::Version> pinned_versions;
};

// The audit actor recorded when a caller names none.
inline constexpr absl::string_view kDefaultActor = "admin";

// Cumulative fleet report counts about one version on one tier/channel, as a rollout step
// keeps them (services/fleet_stats.h VersionCounts; catalog_rollout_steps.cc).
struct ReportCounts {
  int64_t activated = 0;
  int64_t load_confirmed = 0;
  int64_t load_failed = 0;
  int64_t rolled_back = 0;
  int64_t sync_failed = 0;
};

// What a rollout change records besides the change itself.
struct RolloutNote {
  // The counts about `counts_version` (a version's resource name) read just before the
  // change: the snapshot of the step it writes. They are read outside the catalog's lock, so
  // they are used only when `counts_version` is the rollout's to_version; otherwise (a racing
  // change, or none given) the rollout's previous snapshot is repeated.
  std::string counts_version;
  ReportCounts counts;
  // The same about the rollout's from_version.
  std::string from_counts_version;
  ReportCounts from_counts;
  // When set (`r-<n>`): change only this rollout; NOT_FOUND (ROLLOUT_NOT_FOUND) when the open
  // rollout of the tier/channel is another one. The autopilot acts on what it judged.
  std::string rollout_id;
  // When set (with rollout_id): the rollout's update_time, in microseconds since the Unix
  // epoch, when it was judged; NOT_FOUND (ROLLOUT_NOT_FOUND) when it changed since (an admin
  // paused, resumed or advanced it in between), so the judgement is not applied to a rollout
  // it did not see.
  int64_t judged_update_micros = 0;
  // Rollout.state_reason afterwards (a gate's verdict); empty clears it. Also audited.
  std::string state_reason;
};

// One share a rollout took (kind kShare), or its end (kEnd: completed or aborted).
struct RolloutStepRecord {
  enum Kind { kShare = 1, kEnd = 2 };
  Kind kind = kShare;
  int32_t basis_points = 0;
  absl::Time time;
  std::string actor;
  ReportCounts counts;       // about to_version, cumulative, when the step was taken
  ReportCounts from_counts;  // about from_version, likewise
};

// A rollout with its steps, oldest first (none for a rollout older than the steps table).
struct RolloutRecord {
  v1::Rollout rollout;
  std::vector<RolloutStepRecord> steps;
};

// A blob recorded as damaged: its digest (`sha256:<hex>`), what was found, and when.
struct DamagedBlob {
  std::string digest;
  std::string details;
  absl::Time detect_time;
};

// One row of the replication queue: blob `digest` (`sha256:<hex>`) on origin
// `replica.origin()`.
struct ReplicaRow {
  std::string digest;
  v1::Replica replica;
};

// The chunk chain of a blob as recorded for read-through (migrations/0005_blob_chains.sql).
struct RecordedChain {
  int64_t size = 0;
  int64_t chunk_size = 0;
  std::string chain;  // ceil(size / chunk_size) entries of 32 bytes, concatenated
};

struct CatalogOptions {
  // The clock for create/publish/yank/update times and the floor of new sequences (see
  // "Sequences" above); tests inject a fake.
  std::function<absl::Time()> now = [] { return absl::Now(); };
  // The SQLite VFS to open the file with; empty: SQLite's default. For tests only: a shim that
  // fails writes and syncs on demand (tests/testing/fault_vfs.h).
  std::string sqlite_vfs;
};

class Catalog {
 public:
  using Options = CatalogOptions;

  // Opens or creates the catalog at `path` (its folder must exist).
  // FAILED_PRECONDITION when the schema is newer than this binary; UNAVAILABLE on I/O errors.
  static absl::StatusOr<std::unique_ptr<Catalog>> Open(const std::string& path,
                                                       Options options = {});
  ~Catalog();

  // The schema version after migrations (the highest migration number applied).
  int SchemaVersion() const;
  // The highest migration number this binary carries.
  static int LatestSchemaVersion();

  // ALREADY_EXISTS if the model exists. `replicate_to`: Model.replicate_to, checked by the
  // caller (origin names).
  absl::StatusOr<v1::Model> CreateModel(absl::string_view model_id, absl::string_view description,
                                        absl::string_view actor = kDefaultActor,
                                        const std::vector<std::string>& replicate_to = {});
  // NOT_FOUND if absent.
  absl::StatusOr<v1::Model> GetModel(absl::string_view model_id);
  // page_size: 0 means 100, values above 1000 are treated as 1000, negative is
  // INVALID_ARGUMENT (field page_size). A malformed page_token is INVALID_ARGUMENT (field
  // page_token). Ordered by model id.
  absl::StatusOr<ListPage<v1::Model>> ListModels(int page_size, absl::string_view page_token);

  // Creates a DRAFT version with `artifacts` (platform, arch, format, digest, size_bytes,
  // constraints and unpacked_size_bytes are stored).
  // NOT_FOUND: no model. ALREADY_EXISTS: version exists. INVALID_ARGUMENT: two artifacts for
  // the same (platform, arch, format) (field artifacts), or a digest already declared
  // elsewhere with another size (field artifacts[i].size_bytes).
  // `replicate_to`: Version.replicate_to, checked by the caller.
  absl::StatusOr<v1::Version> CreateVersion(const VersionName& name,
                                            const std::vector<v1::Artifact>& artifacts,
                                            absl::string_view actor = kDefaultActor,
                                            const std::vector<std::string>& replicate_to = {});
  // NOT_FOUND if the model or version is absent. `uploaded` is left false: the catalog does
  // not know the blob store.
  absl::StatusOr<v1::Version> GetVersion(const VersionName& name);
  // Ordered by version id. Same paging rules as ListModels. NOT_FOUND if no model.
  absl::StatusOr<ListPage<v1::Version>> ListVersions(absl::string_view model_id, int page_size,
                                                     absl::string_view page_token);

  // DRAFT -> PUBLISHED, atomically. `is_uploaded(digest)` is asked for every artifact inside
  // the transaction; the first that is not gives FAILED_PRECONDITION naming its digest and
  // platform/arch/format. FAILED_PRECONDITION when not a DRAFT; NOT_FOUND when absent.
  // `model_infos` (by digest: what the model checks read from the file) is stored on the
  // version's artifacts in the same transaction, and so is `release` (a serialized
  // SignedRelease the caller verified; empty: none).
  absl::StatusOr<v1::Version> PublishVersion(
      const VersionName& name, const std::function<bool(const std::string& digest)>& is_uploaded,
      absl::string_view actor = kDefaultActor,
      const std::map<std::string, v1::ModelInfo>& model_infos = {}, absl::string_view release = {});

  // PUBLISHED -> YANKED, atomically with bumping the sequence of every tier/channel that
  // resolved to this version (they now resolve to their newest earlier binding that is not
  // yanked, or to nothing). In the same transaction: an ACTIVE/PAUSED rollout whose
  // to_version is this version becomes ABORTED, pins to it are removed, and every tier/channel
  // affected by either gets its sequence bumped. FAILED_PRECONDITION when not PUBLISHED.
  absl::StatusOr<v1::Version> YankVersion(const VersionName& name, absl::string_view reason,
                                          absl::string_view actor = kDefaultActor);

  // Binds tier/channel to a PUBLISHED version, appending to the tier's history and giving it a
  // new sequence (see "Sequences" above), with an audit entry. Binding the version that the
  // tier/channel's newest binding names and that it resolves to changes nothing (no history
  // row, no new sequence, no audit entry) and returns the current binding: publishing the same
  // thing twice is a no-op. (A newest binding naming a version the tier does not resolve to
  // means that version was yanked, which this refuses anyway.) NOT_FOUND: no version.
  // FAILED_PRECONDITION: the version is not PUBLISHED.
  // FAILED_PRECONDITION too while a rollout of the tier/channel is ACTIVE or PAUSED (complete
  // or abort it first), also for the version already bound: the operator decides the
  // rollout's fate first.
  absl::StatusOr<v1::TierBinding> SetTier(absl::string_view tier, absl::string_view channel,
                                          const VersionName& version,
                                          absl::string_view actor = kDefaultActor);
  // The current binding; NOT_FOUND if the tier/channel was never bound.
  absl::StatusOr<v1::TierBinding> GetTier(absl::string_view tier, absl::string_view channel);
  // Ordered by (tier, channel). Same paging rules as ListModels.
  absl::StatusOr<ListPage<v1::TierBinding>> ListTiers(int page_size, absl::string_view page_token);

  // Every tier/channel that resolves to a version, with its rollout and pins.
  absl::StatusOr<std::vector<ResolvedTier>> ResolveAllTiers();

  // --- Rollouts. Each change bumps the tier/channel's sequence and appends an audit entry,
  // in one transaction. Rollout ids are `r-<n>`, unique and never reused.

  // Starts a rollout from the current resolved version to `to_version` at `basis_points`.
  // INVALID_ARGUMENT: basis_points not 0..10000 (field basis_points). NOT_FOUND: tier/channel
  // not bound or no such version. FAILED_PRECONDITION: to_version not PUBLISHED, or equal to
  // the current version, or a rollout is already ACTIVE/PAUSED. `policy` (validated by the
  // caller, services/rollout_autopilot.h) is stored with it. Every change records a step
  // (each new share, and the end) with the note's snapshot, and keeps next_step_time: now +
  // the policy's step_interval while ACTIVE with a schedule step above the share, else unset.
  absl::StatusOr<v1::Rollout> StartRollout(absl::string_view tier, absl::string_view channel,
                                           const VersionName& to_version, int32_t basis_points,
                                           absl::string_view actor = kDefaultActor,
                                           const v1::RolloutPolicy& policy = v1::RolloutPolicy(),
                                           const RolloutNote& note = RolloutNote());
  // INVALID_ARGUMENT: out of range or lower than now. NOT_FOUND: no ACTIVE/PAUSED rollout.
  // FAILED_PRECONDITION: PAUSED.
  absl::StatusOr<v1::Rollout> AdvanceRollout(absl::string_view tier, absl::string_view channel,
                                             int32_t basis_points,
                                             absl::string_view actor = kDefaultActor,
                                             const RolloutNote& note = RolloutNote());
  // ACTIVE -> PAUSED. NOT_FOUND: none ACTIVE/PAUSED. FAILED_PRECONDITION: not ACTIVE.
  absl::StatusOr<v1::Rollout> PauseRollout(absl::string_view tier, absl::string_view channel,
                                           absl::string_view actor = kDefaultActor,
                                           const RolloutNote& note = RolloutNote());
  // PAUSED -> ACTIVE. NOT_FOUND: none ACTIVE/PAUSED. FAILED_PRECONDITION: not PAUSED.
  absl::StatusOr<v1::Rollout> ResumeRollout(absl::string_view tier, absl::string_view channel,
                                            absl::string_view actor = kDefaultActor,
                                            const RolloutNote& note = RolloutNote());
  // -> COMPLETED, binding the tier to to_version (a tier history entry). NOT_FOUND: none.
  absl::StatusOr<v1::Rollout> CompleteRollout(absl::string_view tier, absl::string_view channel,
                                              absl::string_view actor = kDefaultActor,
                                              const RolloutNote& note = RolloutNote());
  // -> ABORTED. NOT_FOUND: none ACTIVE/PAUSED.
  absl::StatusOr<v1::Rollout> AbortRollout(absl::string_view tier, absl::string_view channel,
                                           absl::string_view actor = kDefaultActor,
                                           const RolloutNote& note = RolloutNote());
  // Newest first; `tier`/`channel` empty = no filter. Same paging rules as ListModels.
  absl::StatusOr<ListPage<v1::Rollout>> ListRollouts(absl::string_view tier,
                                                     absl::string_view channel, int page_size,
                                                     absl::string_view page_token);
  // The ACTIVE or PAUSED rollout of tier/channel, or else its newest, with its steps
  // (catalog_rollout_steps.cc). NOT_FOUND (ROLLOUT_NOT_FOUND): it never had one.
  absl::StatusOr<RolloutRecord> GetRolloutRecord(absl::string_view tier, absl::string_view channel);
  // Every ACTIVE rollout that has a policy, with its steps: what the autopilot judges.
  absl::StatusOr<std::vector<RolloutRecord>> ListGatedRollouts();

  // --- Device pins. Bumps the sequence; returns {changed, new sequence}.
  struct PinChange {
    int32_t changed = 0;
    int64_t sequence = 0;
  };
  // Pins (or re-pins) each device. NOT_FOUND: tier/channel not bound or no such version.
  // FAILED_PRECONDITION: the version is not PUBLISHED.
  absl::StatusOr<PinChange> PinDevices(absl::string_view tier, absl::string_view channel,
                                       const std::vector<std::string>& device_ids,
                                       const VersionName& version,
                                       absl::string_view actor = kDefaultActor);
  // Unknown ids are ignored (changed counts only removed pins). The sequence is bumped only
  // when something changed. NOT_FOUND: tier/channel not bound.
  absl::StatusOr<PinChange> UnpinDevices(absl::string_view tier, absl::string_view channel,
                                         const std::vector<std::string>& device_ids,
                                         absl::string_view actor = kDefaultActor);
  // Ordered by (tier, channel, device_id). Same paging rules as ListModels.
  absl::StatusOr<ListPage<v1::DevicePin>> ListPins(int page_size, absl::string_view page_token);

  // --- Audit log: every mutating method above appends one entry in its own transaction.
  // Newest first. Same paging rules as ListModels.
  absl::StatusOr<ListPage<v1::AuditEntry>> ListAuditLog(int page_size,
                                                        absl::string_view page_token);
  // Appends an entry on its own (for changes outside the catalog, e.g. key files).
  absl::Status AppendAudit(absl::string_view actor, absl::string_view action,
                           absl::string_view resource, absl::string_view details);

  // --- Trust roots: the serialized SignedTrustRoot of each version. The caller verifies
  // signatures; the catalog only keeps the chain gap-free.
  // FAILED_PRECONDITION unless `version` is the newest stored + 1 (1 for the first).
  absl::Status AppendTrustRoot(int64_t version, absl::string_view signed_root,
                               absl::string_view actor = kDefaultActor);
  // `version` 0 means the newest. NOT_FOUND when absent (or none stored).
  absl::StatusOr<std::string> GetTrustRoot(int64_t version);

  // The size that versions declare for `digest` (`sha256:<hex>`); NOT_FOUND if none does.
  absl::StatusOr<int64_t> DeclaredSize(absl::string_view digest);

  // --- Damaged blobs: digests whose stored bytes failed a check (see services/blob_health.h).
  // Records `digest` (`sha256:<hex>`) as damaged, with an audit entry (action BlobDamaged).
  // Returns false, writing nothing, when it is recorded already: one entry per incident.
  absl::StatusOr<bool> MarkBlobDamaged(absl::string_view digest, absl::string_view details,
                                       absl::string_view actor);
  // Removes the record, with an audit entry (action BlobRestored). False when there was none.
  absl::StatusOr<bool> ClearBlobDamaged(absl::string_view digest, absl::string_view details,
                                        absl::string_view actor);
  // Ordered by digest.
  absl::StatusOr<std::vector<DamagedBlob>> ListDamagedBlobs();
  // Whether a PUBLISHED version declares `digest`.
  absl::StatusOr<bool> IsDigestPublished(absl::string_view digest);
  // Every digest a PUBLISHED version declares, ordered: the bytes the fleet may be sent.
  absl::StatusOr<std::vector<std::string>> ListPublishedDigests();

  // --- Replicas: copies of published blobs on origins (migrations/0004_replicas.sql,
  // services/replicator.h). Not audited: the server does this on its own, and every change
  // of what devices may be sent is audited where it starts (the publish).

  // Queues a PENDING row, due now, for every digest a PUBLISHED version declares and each of
  // `origins` (names) that the version wants (its replicate_to, else its model's, else all)
  // and that has no row for it yet. Returns how many rows were queued.
  absl::StatusOr<int64_t> QueueReplicas(const std::vector<std::string>& origins);
  // Up to `limit` rows of `origins` not CONFIRMED whose next attempt is due at `now`,
  // earliest first.
  absl::StatusOr<std::vector<ReplicaRow>> DueReplicas(const std::vector<std::string>& origins,
                                                      absl::Time now, int limit);
  // The earliest next attempt of a row of `origins` not CONFIRMED; nullopt when there is none.
  absl::StatusOr<std::optional<absl::Time>> NextReplicaAttempt(
      const std::vector<std::string>& origins);
  // Stores `row`'s state, bytes_done, attempts, last_error and next_attempt_time, with the
  // clock's time as its update time. NOT_FOUND (REPLICA_NOT_FOUND) when it was never queued.
  absl::Status UpdateReplica(const ReplicaRow& row);
  // The rows of blob `digest`, ordered by origin.
  absl::StatusOr<std::vector<v1::Replica>> ListReplicas(absl::string_view digest);
  // Every CONFIRMED row as {digest, origin}, ordered.
  absl::StatusOr<std::vector<std::pair<std::string, std::string>>> ListConfirmedReplicas();

  // --- Release statements (migrations/0008_releases.sql, storage/catalog_releases.cc): the
  // serialized SignedRelease of a version, verified by the caller (services/release_admin.h).
  // Stores `release` on a PUBLISHED version, replacing an earlier one, with an audit entry.
  // NOT_FOUND: no model or version. FAILED_PRECONDITION (VERSION_NOT_PUBLISHED): not PUBLISHED.
  absl::StatusOr<v1::Version> AttachRelease(const VersionName& name, absl::string_view release,
                                            absl::string_view actor = kDefaultActor);
  // The release statement stored for `name`, as stored; empty when it has none. NOT_FOUND when
  // the version is absent.
  absl::StatusOr<std::string> GetRelease(const VersionName& name);

  // --- Chunk chains kept for read-through (services/read_through.h).
  // Records the chain of blob `digest`; a digest already recorded keeps its first record.
  absl::Status RecordChain(absl::string_view digest, const RecordedChain& chain);
  // NOT_FOUND (CHAIN_NOT_RECORDED) when none is recorded.
  absl::StatusOr<RecordedChain> GetRecordedChain(absl::string_view digest);

  // --- Named admin credentials (migrations/0009_credentials.sql; services/credentials.h).
  // The token is never given to the catalog, only its SHA-256 (lowercase hex).
  // Creates one with an audit entry (action CreateCredential, the token left out).
  // ALREADY_EXISTS (CREDENTIAL_EXISTS) when the name is taken, revoked ones included.
  absl::StatusOr<v1::Credential> CreateCredential(absl::string_view name,
                                                  const std::vector<v1::Scope>& scopes,
                                                  absl::string_view token_sha256,
                                                  absl::string_view actor);
  // Ordered by name, revoked ones included. Same paging rules as ListModels.
  absl::StatusOr<ListPage<v1::Credential>> ListCredentials(int page_size,
                                                           absl::string_view page_token);
  // Sets its revoke time, with an audit entry. NOT_FOUND (CREDENTIAL_NOT_FOUND);
  // FAILED_PRECONDITION (CREDENTIAL_REVOKED) when it already is.
  absl::StatusOr<v1::Credential> RevokeCredential(absl::string_view name, absl::string_view actor);
  // The credential whose token hashes to `token_sha256`, revoked or not (the caller checks
  // revoke_time); NOT_FOUND (CREDENTIAL_NOT_FOUND) when none does.
  absl::StatusOr<v1::Credential> FindCredentialByTokenHash(absl::string_view token_sha256);
  // By name, revoked or not; NOT_FOUND (CREDENTIAL_NOT_FOUND).
  absl::StatusOr<v1::Credential> FindCredentialByName(absl::string_view name);

  // --- Fleet reports (storage/fleet_rows.h; services/fleet_stats.h keeps them in memory and
  // is their only writer). Not audited: statistics, not changes of what devices get.
  // Writes `changes` in one transaction.
  absl::Status SaveFleet(const FleetChanges& changes);
  // Every stored row.
  absl::StatusOr<FleetRows> LoadFleet();

  // Runs PRAGMA integrity_check; returns its text ("ok" when healthy).
  absl::StatusOr<std::string> IntegrityCheck();

 private:
  struct Impl;
  explicit Catalog(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace modeldist::storage

#endif  // MODELDIST_STORAGE_CATALOG_H_
