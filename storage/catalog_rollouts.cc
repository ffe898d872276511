// Rollouts: moving a growing share of a tier/channel's devices to another version, and the
// state machine ACTIVE <-> PAUSED -> COMPLETED or ABORTED.
#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/limits.h"
#include "common/status.h"
#include "storage/catalog.h"
#include "storage/catalog_internal.h"
#include "storage/page_token.h"

namespace modeldist::storage {
namespace {

// Rollout states as stored (migrations/0002_rollouts_pins_audit.sql): the open ones are the
// ACTIVE and PAUSED rollouts, at most one per tier/channel.
#define MD_ROLLOUT_COLUMNS                                                         \
  "id, tier, channel, from_model_id, from_version_id, to_model_id, to_version_id," \
  " basis_points, state, create_time, update_time, policy, state_reason, next_step_time"
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
constexpr char kSelectNewestRollout[] = "SELECT " MD_ROLLOUT_COLUMNS
                                        " FROM rollouts WHERE tier = ? AND channel = ?"
                                        " ORDER BY id DESC LIMIT 1";
constexpr char kSelectGatedRollouts[] = "SELECT " MD_ROLLOUT_COLUMNS
                                        " FROM rollouts WHERE state = 1 AND policy IS NOT NULL"
                                        " ORDER BY id";
constexpr char kInsertRollout[] =
    "INSERT INTO rollouts (tier, channel, from_model_id, from_version_id, to_model_id,"
    " to_version_id, basis_points, state, create_time, update_time, policy, next_step_time)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)";
constexpr char kUpdateRollout[] =
    "UPDATE rollouts SET basis_points = ?, state = ?, update_time = ?, state_reason = ?,"
    " next_step_time = ? WHERE id = ?";

#undef MD_ROLLOUT_COLUMNS

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
  // Written by this catalog from a message it serialized: a parse failure cannot happen short
  // of a corrupt row, which the integrity check reports; the rollout then reads as ungated.
  if (!s.ColumnIsNull(11)) (void)rollout.mutable_policy()->ParseFromString(s.ColumnBlob(11));
  rollout.set_state_reason(s.ColumnText(12));
  if (!s.ColumnIsNull(13)) *rollout.mutable_next_step_time() = ToTimestamp(s.ColumnInt64(13));
  return stored;
}

std::string RolloutStateName(v1::Rollout::State state) {
  std::string name = v1::Rollout::State_Name(state);
  return name.empty() ? absl::StrCat(static_cast<int>(state)) : name;
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

absl::Status RolloutNotInState(const v1::Rollout& rollout, v1::Rollout::State wanted,
                               absl::string_view reason, absl::string_view what) {
  std::string state = RolloutStateName(rollout.state());
  return MakeError(absl::StatusCode::kFailedPrecondition, reason,
                   absl::StrCat("cannot ", what, " rollout ", rollout.id(), ": it is ", state,
                                ", not ", RolloutStateName(wanted)),
                   {{"rollout", rollout.id()}, {"state", state}});
}

}  // namespace

absl::Status RolloutInProgress(const v1::Rollout& rollout, absl::string_view what) {
  return MakeError(
      absl::StatusCode::kFailedPrecondition, "ROLLOUT_IN_PROGRESS",
      absl::StrCat("cannot ", what, ": rollout ", rollout.id(), " of tier \"", rollout.tier(),
                   "\" on channel \"", rollout.channel(), "\" is ",
                   RolloutStateName(rollout.state()), "; complete or abort it first"),
      {{"rollout", rollout.id()}, {"tier", rollout.tier()}, {"channel", rollout.channel()}});
}

// ---------------------------------------------------------------------------------------------
// Impl.

absl::StatusOr<std::optional<StoredRollout>> Catalog::Impl::LoadOpenRollout(
    absl::string_view tier, absl::string_view channel) {
  MD_ASSIGN_OR_RETURN(Statement s, Prepare(kSelectOpenRollout));
  s.BindText(0, tier);
  s.BindText(1, channel);
  MD_ASSIGN_OR_RETURN(bool found, s.Step());
  if (!found) return std::nullopt;
  return ReadRollout(s);
}

absl::StatusOr<StoredRollout> Catalog::Impl::RequireOpenRollout(absl::string_view tier,
                                                                absl::string_view channel) {
  MD_ASSIGN_OR_RETURN(std::optional<StoredRollout> open, LoadOpenRollout(tier, channel));
  if (!open) return RolloutNotFound(tier, channel);
  return *std::move(open);
}

absl::Status Catalog::Impl::UpdateRollout(StoredRollout* stored, int32_t basis_points,
                                          v1::Rollout::State state, int64_t now,
                                          absl::string_view state_reason) {
  v1::Rollout& rollout = stored->rollout;
  rollout.set_basis_points(basis_points);
  rollout.set_state(state);
  rollout.set_state_reason(std::string(state_reason));
  *rollout.mutable_update_time() = ToTimestamp(now);
  const std::optional<int64_t> next = NextStepTime(rollout, now);
  if (next) {
    *rollout.mutable_next_step_time() = ToTimestamp(*next);
  } else {
    rollout.clear_next_step_time();
  }
  MD_ASSIGN_OR_RETURN(Statement s, Prepare(kUpdateRollout));
  s.BindInt64(0, basis_points);
  s.BindInt64(1, state);
  s.BindInt64(2, now);
  s.BindText(3, state_reason);
  if (next) {
    s.BindInt64(4, *next);
  } else {
    s.BindNull(4);
  }
  s.BindInt64(5, stored->id);
  return s.Run();
}

absl::StatusOr<std::optional<StoredRollout>> Catalog::Impl::LoadNewestRollout(
    absl::string_view tier, absl::string_view channel) {
  MD_ASSIGN_OR_RETURN(std::optional<StoredRollout> open, LoadOpenRollout(tier, channel));
  if (open) return open;
  MD_ASSIGN_OR_RETURN(Statement s, Prepare(kSelectNewestRollout));
  s.BindText(0, tier);
  s.BindText(1, channel);
  MD_ASSIGN_OR_RETURN(bool found, s.Step());
  if (!found) return std::nullopt;
  return ReadRollout(s);
}

absl::StatusOr<std::vector<StoredRollout>> Catalog::Impl::LoadGatedRollouts() {
  std::vector<StoredRollout> gated;
  MD_ASSIGN_OR_RETURN(Statement s, Prepare(kSelectGatedRollouts));
  while (true) {
    MD_ASSIGN_OR_RETURN(bool row, s.Step());
    if (!row) break;
    gated.push_back(ReadRollout(s));
  }
  return gated;
}

absl::StatusOr<std::vector<StoredRollout>> Catalog::Impl::AbortRolloutsTo(
    const VersionName& version, int64_t now) {
  std::vector<StoredRollout> aborted;
  {
    MD_ASSIGN_OR_RETURN(Statement s, Prepare(kSelectOpenRolloutsTo));
    s.BindText(0, version.model);
    s.BindText(1, version.version);
    while (true) {
      MD_ASSIGN_OR_RETURN(bool row, s.Step());
      if (!row) break;
      aborted.push_back(ReadRollout(s));
    }
  }
  for (StoredRollout& rollout : aborted) {
    MD_RETURN_IF_ERROR(
        UpdateRollout(&rollout, rollout.rollout.basis_points(), v1::Rollout::ABORTED, now));
  }
  return aborted;
}

absl::StatusOr<v1::Rollout> Catalog::Impl::TransitionRollout(
    absl::string_view tier, absl::string_view channel, v1::Rollout::State required,
    absl::string_view reason, v1::Rollout::State target, absl::string_view action,
    absl::string_view verb, absl::string_view actor, const RolloutNote& note) {
  MD_ASSIGN_OR_RETURN(StoredRollout stored, RequireOpenRollout(tier, channel));
  MD_RETURN_IF_ERROR(CheckNoteRollout(stored, note));
  if (required != v1::Rollout::STATE_UNSPECIFIED && stored.rollout.state() != required) {
    return RolloutNotInState(stored.rollout, required, reason, verb);
  }
  const int64_t now = NowMicros();
  MD_RETURN_IF_ERROR(
      UpdateRollout(&stored, stored.rollout.basis_points(), target, now, note.state_reason));
  if (target == v1::Rollout::COMPLETED || target == v1::Rollout::ABORTED) {
    MD_RETURN_IF_ERROR(InsertRolloutStep(stored, RolloutStepRecord::kEnd, now, actor, note));
  }
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
                             " bp: everyone back on ", stored.rollout.from_version(), " (sequence ",
                             sequence, ")");
      break;
    default:
      details = absl::StrCat(stored.rollout.id(), " ", RolloutStateName(target), " at ",
                             stored.rollout.basis_points(), " bp (sequence ", sequence, ")");
      break;
  }
  MD_RETURN_IF_ERROR(Audit(now, actor, action, TierResource(tier, channel),
                           absl::StrCat(details, ReasonSuffix(note))));
  return std::move(stored.rollout);
}

absl::StatusOr<v1::Rollout> Catalog::Impl::TransitionRolloutAtomically(
    absl::string_view tier, absl::string_view channel, v1::Rollout::State required,
    absl::string_view reason, v1::Rollout::State target, absl::string_view action,
    absl::string_view verb, absl::string_view actor, const RolloutNote& note) {
  absl::MutexLock lock(&mu);
  Transaction txn(&statements);
  MD_RETURN_IF_ERROR(txn.BeginWrite());
  MD_ASSIGN_OR_RETURN(v1::Rollout rollout, TransitionRollout(tier, channel, required, reason,
                                                             target, action, verb, actor, note));
  MD_RETURN_IF_ERROR(txn.Commit());
  return rollout;
}

// ---------------------------------------------------------------------------------------------
// Catalog.

absl::StatusOr<v1::Rollout> Catalog::StartRollout(absl::string_view tier, absl::string_view channel,
                                                  const VersionName& to_version,
                                                  int32_t basis_points, absl::string_view actor,
                                                  const v1::RolloutPolicy& policy,
                                                  const RolloutNote& note) {
  MD_RETURN_IF_ERROR(CheckBasisPoints(basis_points));
  absl::MutexLock lock(&impl_->mu);
  Transaction txn(&impl_->statements);
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
    v1::Rollout started;
    started.set_state(v1::Rollout::ACTIVE);
    started.set_basis_points(basis_points);
    const bool gated = policy.ByteSizeLong() > 0;
    if (gated) *started.mutable_policy() = policy;
    if (gated) {
      s.BindBlob(10, policy.SerializeAsString());
    } else {
      s.BindNull(10);
    }
    if (std::optional<int64_t> next = NextStepTime(started, now)) {
      s.BindInt64(11, *next);
    } else {
      s.BindNull(11);
    }
    MD_RETURN_IF_ERROR(s.Run());
  }
  MD_ASSIGN_OR_RETURN(StoredRollout stored, impl_->RequireOpenRollout(tier, channel));
  MD_RETURN_IF_ERROR(impl_->InsertRolloutStep(stored, RolloutStepRecord::kShare, now, actor, note));
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
                                                    absl::string_view actor,
                                                    const RolloutNote& note) {
  MD_RETURN_IF_ERROR(CheckBasisPoints(basis_points));
  absl::MutexLock lock(&impl_->mu);
  Transaction txn(&impl_->statements);
  MD_RETURN_IF_ERROR(txn.BeginWrite());
  MD_ASSIGN_OR_RETURN(StoredRollout stored, impl_->RequireOpenRollout(tier, channel));
  MD_RETURN_IF_ERROR(CheckNoteRollout(stored, note));
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
    MD_RETURN_IF_ERROR(
        impl_->InsertRolloutStep(stored, RolloutStepRecord::kShare, now, actor, note));
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
                                                  absl::string_view actor,
                                                  const RolloutNote& note) {
  return impl_->TransitionRolloutAtomically(tier, channel, v1::Rollout::ACTIVE,
                                            "ROLLOUT_NOT_ACTIVE", v1::Rollout::PAUSED,
                                            "PauseRollout", "pause", actor, note);
}

absl::StatusOr<v1::Rollout> Catalog::ResumeRollout(absl::string_view tier,
                                                   absl::string_view channel,
                                                   absl::string_view actor,
                                                   const RolloutNote& note) {
  return impl_->TransitionRolloutAtomically(tier, channel, v1::Rollout::PAUSED,
                                            "ROLLOUT_NOT_PAUSED", v1::Rollout::ACTIVE,
                                            "ResumeRollout", "resume", actor, note);
}

absl::StatusOr<v1::Rollout> Catalog::CompleteRollout(absl::string_view tier,
                                                     absl::string_view channel,
                                                     absl::string_view actor,
                                                     const RolloutNote& note) {
  return impl_->TransitionRolloutAtomically(tier, channel, v1::Rollout::STATE_UNSPECIFIED, "",
                                            v1::Rollout::COMPLETED, "CompleteRollout", "complete",
                                            actor, note);
}

absl::StatusOr<v1::Rollout> Catalog::AbortRollout(absl::string_view tier, absl::string_view channel,
                                                  absl::string_view actor,
                                                  const RolloutNote& note) {
  return impl_->TransitionRolloutAtomically(tier, channel, v1::Rollout::STATE_UNSPECIFIED, "",
                                            v1::Rollout::ABORTED, "AbortRollout", "abort", actor,
                                            note);
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

}  // namespace modeldist::storage
