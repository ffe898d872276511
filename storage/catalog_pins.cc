// Device pins: devices of a tier/channel held on a version of their own, whatever the tier's
// binding or rollout says.
#include <cstdint>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/status.h"
#include "storage/catalog.h"
#include "storage/catalog_internal.h"
#include "storage/page_token.h"

namespace modeldist::storage {
namespace {

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

#undef MD_PIN_COLUMNS

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

}  // namespace

// ---------------------------------------------------------------------------------------------
// Impl.

absl::StatusOr<std::vector<StoredPin>> Catalog::Impl::LoadPins(absl::string_view tier,
                                                               absl::string_view channel) {
  MD_ASSIGN_OR_RETURN(Statement s, Prepare(kSelectPinsOfTier));
  s.BindText(0, tier);
  s.BindText(1, channel);
  std::vector<StoredPin> pins;
  while (true) {
    MD_ASSIGN_OR_RETURN(bool row, s.Step());
    if (!row) return pins;
    pins.push_back({ReadPin(s), VersionName{s.ColumnText(3), s.ColumnText(4)}});
  }
}

absl::StatusOr<int64_t> Catalog::Impl::RemovePinsTo(const VersionName& version,
                                                    TierChannels* affected) {
  int64_t removed = 0;
  {
    MD_ASSIGN_OR_RETURN(Statement s, Prepare(kSelectTiersPinnedTo));
    s.BindText(0, version.model);
    s.BindText(1, version.version);
    while (true) {
      MD_ASSIGN_OR_RETURN(bool row, s.Step());
      if (!row) break;
      affected->emplace(s.ColumnText(0), s.ColumnText(1));
      removed += s.ColumnInt64(2);
    }
  }
  if (removed > 0) {
    MD_ASSIGN_OR_RETURN(Statement s, Prepare(kDeletePinsTo));
    s.BindText(0, version.model);
    s.BindText(1, version.version);
    MD_RETURN_IF_ERROR(s.Run());
  }
  return removed;
}

// ---------------------------------------------------------------------------------------------
// Catalog.

absl::StatusOr<Catalog::PinChange> Catalog::PinDevices(absl::string_view tier,
                                                       absl::string_view channel,
                                                       const std::vector<std::string>& device_ids,
                                                       const VersionName& version,
                                                       absl::string_view actor) {
  absl::MutexLock lock(&impl_->mu);
  Transaction txn(&impl_->statements);
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
  Transaction txn(&impl_->statements);
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

}  // namespace modeldist::storage
