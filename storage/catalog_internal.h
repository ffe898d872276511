// File: catalog_internal.h
//
// The catalog's private parts, shared by the files it is split into (leveldb's db_impl shape):
// the connection (Catalog::Impl) and what more than one resource needs. Not for use outside
// storage/catalog*.cc.
//
//   catalog.cc           opening, connection settings, the clock, the sequence rule, integrity
//   catalog_models.cc    models, versions, artifacts and the digests they declare
//   catalog_tiers.cc     tier bindings: history, sequences, resolution
//   catalog_rollouts.cc  rollouts
//   catalog_rollout_steps.cc  the steps of rollouts, with their report-count snapshots
//   catalog_pins.cc      device pins
//   catalog_audit.cc     the audit log, trust roots, damaged blobs
//   catalog_replicas.cc  the replication queue
//   catalog_releases.cc  release statements of versions
//   catalog_credentials.cc  named admin credentials
//   catalog_fleet.cc     what the fleet reported (services/fleet_stats.h)
//
// Each file holds the SQL of the tables it owns, as string constants (the statement cache is
// keyed by their addresses); another resource's table is reached through an Impl method of
// that resource's file. Times are microseconds since the Unix epoch (migrations/0001_init.sql).
#ifndef MODELDIST_STORAGE_CATALOG_INTERNAL_H_
#define MODELDIST_STORAGE_CATALOG_INTERNAL_H_

#include <cstdint>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "common/names.h"
#include "google/protobuf/timestamp.pb.h"
#include "modeldist/v1/resources.pb.h"
#include "storage/catalog.h"
#include "storage/sqlite.h"

namespace modeldist::storage {

// A set of (tier, channel), ordered.
using TierChannels = std::set<std::pair<std::string, std::string>>;

// --- catalog.cc

google::protobuf::Timestamp ToTimestamp(int64_t micros);

// The one rule for a tier/channel's next sequence (catalog.h, "Sequences"); FAILED_PRECONDITION
// (SEQUENCE_EXHAUSTED) when `previous` cannot grow.
absl::StatusOr<int64_t> NextSequence(int64_t previous, int64_t now_micros);

// The audit resource of a tier/channel.
std::string TierResource(absl::string_view tier, absl::string_view channel);

// --- catalog_models.cc

// The name of a Version::State value, or its number for one newer than this binary.
std::string StateName(int state);

// FAILED_PRECONDITION (VERSION_NOT_PUBLISHED): `what` ("roll out", "pin devices to") needs a
// PUBLISHED version and `version` is not.
absl::Status VersionNotPublished(const v1::Version& version, absl::string_view what);

// --- catalog_rollouts.cc

// A rollout row: the proto plus the keys that updates and version lookups need.
struct StoredRollout {
  int64_t id = 0;
  VersionName from;
  VersionName to;
  v1::Rollout rollout;
};

// FAILED_PRECONDITION (ROLLOUT_IN_PROGRESS): `what` cannot be done while `rollout` is open.
absl::Status RolloutInProgress(const v1::Rollout& rollout, absl::string_view what);

// --- catalog_rollout_steps.cc

// When the schedule takes its next step after a change of `rollout` at `now` (micros), if any.
std::optional<int64_t> NextStepTime(const v1::Rollout& rollout, int64_t now);
// NOT_FOUND (ROLLOUT_NOT_FOUND) when the note names another rollout than `stored`.
absl::Status CheckNoteRollout(const StoredRollout& stored, const RolloutNote& note);
// The audit details' tail for a change a gate made ("" otherwise).
std::string ReasonSuffix(const RolloutNote& note);

// --- catalog_pins.cc

// A pin row: the proto plus the version it names.
struct StoredPin {
  v1::DevicePin pin;
  VersionName version;
};

// ---------------------------------------------------------------------------------------------
// The connection and its statement cache. Every method with `mu` held, inside the caller's
// transaction where it reads or writes more than one statement.

struct Catalog::Impl {
  Impl(SqliteHandle handle, Options opts);

  // Declared first so that it is closed last, after the cache has finalized its statements.
  const SqliteHandle connection;
  absl::Mutex mu;
  Options options;
  int schema_version = 0;
  StatementCache statements ABSL_GUARDED_BY(mu);

  // --- catalog.cc

  int64_t NowMicros();
  // The cached statement for `sql`, one of the SQL constants of the catalog's files.
  absl::StatusOr<Statement> Prepare(const char* sql) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu);
  // Rows changed by the last INSERT/UPDATE/DELETE on this connection.
  int64_t Changes() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu);
  // The connection settings, all in one place.
  absl::Status Configure() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu);

  // --- catalog_audit.cc

  // Appends one audit entry inside the caller's write transaction, so an entry exists exactly
  // when its change was committed.
  absl::Status Audit(int64_t now, absl::string_view actor, absl::string_view action,
                     absl::string_view resource, absl::string_view details)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu);

  // --- catalog_models.cc

  // NOT_FOUND (MODEL_NOT_FOUND) when the model does not exist.
  absl::Status CheckModelExists(absl::string_view model_id) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu);
  absl::Status LoadArtifacts(const VersionName& name, v1::Version* version)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu);
  // The version with its artifacts. NOT_FOUND names the model when it is the model that is
  // missing.
  absl::StatusOr<v1::Version> LoadVersion(const VersionName& name)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu);

  // --- catalog_tiers.cc

  // What tier/channel resolves to now, if anything.
  absl::StatusOr<std::optional<VersionName>> Resolve(absl::string_view tier,
                                                     absl::string_view channel)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu);
  // Fills binding->version from the tier's history.
  absl::Status FillResolvedVersion(v1::TierBinding* binding) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu);
  // NOT_FOUND (TIER_NOT_FOUND) when tier/channel was never bound.
  absl::StatusOr<v1::TierBinding> LoadBinding(absl::string_view tier, absl::string_view channel)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu);
  // The version of tier/channel's newest bind, whether or not the tier resolves to it;
  // nullopt when it was never bound.
  absl::StatusOr<std::optional<VersionName>> NewestBind(absl::string_view tier,
                                                        absl::string_view channel)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu);
  // The tiers/channels that resolve to `version` now.
  absl::StatusOr<TierChannels> TiersResolvingTo(const VersionName& version)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu);
  // Appends a bind of tier/channel to `version` at `sequence` (already bumped or created).
  absl::Status InsertTierHistory(absl::string_view tier, absl::string_view channel,
                                 int64_t sequence, const VersionName& version, int64_t now)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu);

  // What BumpSequence does when tier/channel has no row yet.
  enum class IfAbsent { kFail, kCreate };

  // Gives tier/channel its next sequence (NextSequence) and `now` as its update time, and
  // returns the sequence. Only a first bind creates the row (kCreate); anywhere else a missing
  // row is a bug. Devices refuse answers with a lower sequence than one they saw, so every
  // change of what they get goes through here exactly once per tier/channel and transaction.
  absl::StatusOr<int64_t> BumpSequence(absl::string_view tier, absl::string_view channel,
                                       int64_t now, IfAbsent if_absent = IfAbsent::kFail)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu);

  // --- catalog_rollouts.cc

  // The ACTIVE or PAUSED rollout of tier/channel, if any.
  absl::StatusOr<std::optional<StoredRollout>> LoadOpenRollout(absl::string_view tier,
                                                               absl::string_view channel)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu);
  // As LoadOpenRollout, but NOT_FOUND (ROLLOUT_NOT_FOUND) when there is none.
  absl::StatusOr<StoredRollout> RequireOpenRollout(absl::string_view tier,
                                                   absl::string_view channel)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu);
  // Stores a new share, state and state_reason, and reflects them in `stored`; sets
  // next_step_time from the policy (catalog.h, StartRollout).
  absl::Status UpdateRollout(StoredRollout* stored, int32_t basis_points, v1::Rollout::State state,
                             int64_t now, absl::string_view state_reason = "")
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu);
  // The open rollout of tier/channel, or else its newest, if any.
  absl::StatusOr<std::optional<StoredRollout>> LoadNewestRollout(absl::string_view tier,
                                                                 absl::string_view channel)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu);
  // Every ACTIVE rollout with a policy, oldest first.
  absl::StatusOr<std::vector<StoredRollout>> LoadGatedRollouts() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu);
  // Aborts every ACTIVE/PAUSED rollout whose to_version is `version` and returns them, ABORTED.
  // Sequences are the caller's to bump.
  absl::StatusOr<std::vector<StoredRollout>> AbortRolloutsTo(const VersionName& version,
                                                             int64_t now)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu);
  // Pause, resume, complete and abort: moves the open rollout of tier/channel to `target`,
  // bumps the sequence and audits, all in the caller's write transaction. `required` is the
  // state the rollout must be in (UNSPECIFIED: ACTIVE or PAUSED); otherwise FAILED_PRECONDITION
  // with `reason`. Pause and resume bump too: the answers are re-signed with the rollout's new
  // state, and one rule (every rollout change bumps) is simpler for devices and operators.
  absl::StatusOr<v1::Rollout> TransitionRollout(absl::string_view tier, absl::string_view channel,
                                                v1::Rollout::State required,
                                                absl::string_view reason, v1::Rollout::State target,
                                                absl::string_view action, absl::string_view verb,
                                                absl::string_view actor,
                                                const RolloutNote& note = RolloutNote())
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu);
  // TransitionRollout in a write transaction of its own, under the catalog lock: the whole of
  // PauseRollout, ResumeRollout, CompleteRollout and AbortRollout.
  absl::StatusOr<v1::Rollout> TransitionRolloutAtomically(
      absl::string_view tier, absl::string_view channel, v1::Rollout::State required,
      absl::string_view reason, v1::Rollout::State target, absl::string_view action,
      absl::string_view verb, absl::string_view actor, const RolloutNote& note = RolloutNote())
      ABSL_LOCKS_EXCLUDED(mu);

  // --- catalog_rollout_steps.cc

  // Appends a step of `kind` at the rollout's current share, with the note's snapshot when it
  // is about the rollout's to_version (else the previous step's, or zeros for the first).
  absl::Status InsertRolloutStep(const StoredRollout& stored, RolloutStepRecord::Kind kind,
                                 int64_t now, absl::string_view actor, const RolloutNote& note)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu);
  // The steps of rollout `rollout_id`, oldest first.
  absl::StatusOr<std::vector<RolloutStepRecord>> LoadRolloutSteps(int64_t rollout_id)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu);

  // --- catalog_pins.cc

  // The pins of tier/channel, ordered by device id.
  absl::StatusOr<std::vector<StoredPin>> LoadPins(absl::string_view tier, absl::string_view channel)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu);
  // Removes every pin to `version`, adding the tiers/channels that had one to `affected`, and
  // returns how many were removed. Sequences are the caller's to bump.
  absl::StatusOr<int64_t> RemovePinsTo(const VersionName& version, TierChannels* affected)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu);
};

}  // namespace modeldist::storage

#endif  // MODELDIST_STORAGE_CATALOG_INTERNAL_H_
