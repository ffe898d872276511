// Tier bindings: binding a tier/channel to a version, its history and sequence, and what each
// tier/channel resolves to (with its rollout and pins) for the manifest cache.
#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/status.h"
#include "storage/catalog.h"
#include "storage/catalog_internal.h"
#include "storage/page_token.h"

namespace modeldist::storage {
namespace {

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

#undef MD_TIER_COLUMNS

// Columns of MD_TIER_COLUMNS; `version` is filled in by resolving.
v1::TierBinding ReadTier(const Statement& s) {
  v1::TierBinding binding;
  binding.set_tier(s.ColumnText(0));
  binding.set_channel(s.ColumnText(1));
  binding.set_sequence(s.ColumnInt64(2));
  *binding.mutable_update_time() = ToTimestamp(s.ColumnInt64(3));
  return binding;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Impl.

absl::StatusOr<std::optional<VersionName>> Catalog::Impl::Resolve(absl::string_view tier,
                                                                  absl::string_view channel) {
  MD_ASSIGN_OR_RETURN(Statement s, Prepare(kResolveTier));
  s.BindText(0, tier);
  s.BindText(1, channel);
  s.BindInt64(2, v1::Version::PUBLISHED);
  MD_ASSIGN_OR_RETURN(bool found, s.Step());
  if (!found) return std::nullopt;
  return VersionName{s.ColumnText(0), s.ColumnText(1)};
}

absl::Status Catalog::Impl::FillResolvedVersion(v1::TierBinding* binding) {
  MD_ASSIGN_OR_RETURN(std::optional<VersionName> resolved,
                      Resolve(binding->tier(), binding->channel()));
  binding->set_version(resolved ? resolved->ToString() : "");
  return absl::OkStatus();
}

absl::StatusOr<v1::TierBinding> Catalog::Impl::LoadBinding(absl::string_view tier,
                                                           absl::string_view channel) {
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

absl::StatusOr<std::optional<VersionName>> Catalog::Impl::NewestBind(absl::string_view tier,
                                                                     absl::string_view channel) {
  MD_ASSIGN_OR_RETURN(Statement s, Prepare(kSelectNewestBind));
  s.BindText(0, tier);
  s.BindText(1, channel);
  MD_ASSIGN_OR_RETURN(bool found, s.Step());
  if (!found) return std::nullopt;
  return VersionName{s.ColumnText(0), s.ColumnText(1)};
}

absl::StatusOr<TierChannels> Catalog::Impl::TiersResolvingTo(const VersionName& version) {
  std::vector<std::pair<std::string, std::string>> ever_bound;
  {
    MD_ASSIGN_OR_RETURN(Statement s, Prepare(kSelectTiersEverBoundTo));
    s.BindText(0, version.model);
    s.BindText(1, version.version);
    while (true) {
      MD_ASSIGN_OR_RETURN(bool row, s.Step());
      if (!row) break;
      ever_bound.emplace_back(s.ColumnText(0), s.ColumnText(1));
    }
  }
  TierChannels resolving;
  for (const auto& [tier, channel] : ever_bound) {
    MD_ASSIGN_OR_RETURN(std::optional<VersionName> resolved, Resolve(tier, channel));
    if (resolved && resolved->model == version.model && resolved->version == version.version) {
      resolving.emplace(tier, channel);
    }
  }
  return resolving;
}

absl::Status Catalog::Impl::InsertTierHistory(absl::string_view tier, absl::string_view channel,
                                              int64_t sequence, const VersionName& version,
                                              int64_t now) {
  MD_ASSIGN_OR_RETURN(Statement s, Prepare(kInsertTierHistory));
  s.BindText(0, tier);
  s.BindText(1, channel);
  s.BindInt64(2, sequence);
  s.BindText(3, version.model);
  s.BindText(4, version.version);
  s.BindInt64(5, now);
  return s.Run();
}

absl::StatusOr<int64_t> Catalog::Impl::BumpSequence(absl::string_view tier,
                                                    absl::string_view channel, int64_t now,
                                                    IfAbsent if_absent) {
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

// ---------------------------------------------------------------------------------------------
// Catalog.

absl::StatusOr<v1::TierBinding> Catalog::SetTier(absl::string_view tier, absl::string_view channel,
                                                 const VersionName& version_name,
                                                 absl::string_view actor) {
  absl::MutexLock lock(&impl_->mu);
  Transaction txn(&impl_->statements);
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
  Transaction txn(&impl_->statements);
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
  Transaction txn(&impl_->statements);
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
  Transaction txn(&impl_->statements);
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
    MD_ASSIGN_OR_RETURN(std::vector<StoredPin> pins,
                        impl_->LoadPins(binding.tier(), binding.channel()));
    for (StoredPin& pin : pins) {
      std::string key = pin.version.ToString();
      if (tier.pinned_versions.count(key) == 0) {
        MD_ASSIGN_OR_RETURN(tier.pinned_versions[key], impl_->LoadVersion(pin.version));
      }
      tier.pins.push_back(std::move(pin.pin));
    }
    tier.binding = std::move(binding);
    tier.version = std::move(version);
    resolved.push_back(std::move(tier));
  }
  MD_RETURN_IF_ERROR(txn.Commit());
  return resolved;
}

}  // namespace modeldist::storage
