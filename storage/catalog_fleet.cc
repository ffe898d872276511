// What the fleet reported (migrations/0010_fleet_reports.sql): totals, hourly and daily counts,
// each device's newest state by the SHA-256 of its id, and a sample of recent failures. Written
// only by services/fleet_stats.h's flush, with absolute counts, so a repeated flush is harmless.
#include <cstdint>
#include <utility>

#include "common/names.h"
#include "common/status.h"
#include "storage/catalog.h"
#include "storage/catalog_internal.h"

namespace modeldist::storage {
namespace {

constexpr char kUpsertTotal[] =
    "INSERT INTO fleet_totals (tier, channel, version, event, count) VALUES (?, ?, ?, ?, ?)"
    " ON CONFLICT (tier, channel, version, event) DO UPDATE SET count = excluded.count";
constexpr char kUpsertHour[] =
    "INSERT INTO fleet_hourly (hour, tier, channel, version, platform, arch, event, reason, count)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (hour, tier, channel, version, platform,"
    " arch, event, reason) DO UPDATE SET count = excluded.count";
constexpr char kUpsertDay[] =
    "INSERT INTO fleet_daily (day, tier, channel, version, platform, arch, event, reason, count)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (day, tier, channel, version, platform,"
    " arch, event, reason) DO UPDATE SET count = excluded.count";
constexpr char kUpsertDevice[] =
    "INSERT INTO fleet_devices (device_sha256, tier, channel, version, platform, arch,"
    " rolled_back, last_heard) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (device_sha256) DO"
    " UPDATE SET tier = excluded.tier, channel = excluded.channel, version = excluded.version,"
    " platform = excluded.platform, arch = excluded.arch, rolled_back = excluded.rolled_back,"
    " last_heard = excluded.last_heard";
constexpr char kInsertFailure[] =
    "INSERT OR REPLACE INTO fleet_failures (seq, time, tier, channel, version, event, reason,"
    " platform, arch, app_version) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)";
constexpr char kDropHours[] = "DELETE FROM fleet_hourly WHERE hour < ?";
constexpr char kDropDays[] = "DELETE FROM fleet_daily WHERE day < ?";
constexpr char kDropDevices[] = "DELETE FROM fleet_devices WHERE last_heard < ?";
constexpr char kDropFailures[] = "DELETE FROM fleet_failures WHERE seq < ?";
constexpr char kSelectTotals[] = "SELECT tier, channel, version, event, count FROM fleet_totals";
constexpr char kSelectHours[] =
    "SELECT hour, tier, channel, version, platform, arch, event, reason, count FROM fleet_hourly";
constexpr char kSelectDays[] =
    "SELECT day, tier, channel, version, platform, arch, event, reason, count FROM fleet_daily";
// Versions and tier/channels are never deleted, so their counts and largest rowids move with
// every insert: a cheap check (each is an index's end or a count of small tables) before
// reading the names again.
constexpr char kSelectNamesStamp[] =
    "SELECT (SELECT count(*) FROM versions), (SELECT coalesce(max(rowid), 0) FROM versions),"
    " (SELECT count(*) FROM tiers), (SELECT coalesce(max(rowid), 0) FROM tiers)";
constexpr char kSelectVersionNames[] = "SELECT model_id, version_id FROM versions";
constexpr char kSelectTierChannels[] = "SELECT tier, channel FROM tiers";
constexpr char kSelectDevices[] =
    "SELECT device_sha256, tier, channel, version, platform, arch, rolled_back, last_heard"
    " FROM fleet_devices";
constexpr char kSelectFailures[] =
    "SELECT seq, time, tier, channel, version, event, reason, platform, arch, app_version"
    " FROM fleet_failures ORDER BY seq";

// Templates over Catalog::Impl, whose name is private to Catalog's members.

// Reads the names reports are counted about into `names` when its stamp moved.
template <typename Impl>
absl::Status ReadFleetNames(Impl* impl, FleetNames* names) {
  std::vector<int64_t> stamp;
  {
    MD_ASSIGN_OR_RETURN(Statement s, impl->Prepare(kSelectNamesStamp));
    MD_ASSIGN_OR_RETURN(bool row, s.Step());
    if (row) {
      for (int i = 0; i < 4; ++i) stamp.push_back(s.ColumnInt64(i));
    }
  }
  if (stamp == names->stamp) return absl::OkStatus();
  names->stamp = std::move(stamp);
  {
    MD_ASSIGN_OR_RETURN(Statement s, impl->Prepare(kSelectVersionNames));
    while (true) {
      MD_ASSIGN_OR_RETURN(bool row, s.Step());
      if (!row) break;
      names->versions.push_back(VersionName{s.ColumnText(0), s.ColumnText(1)}.ToString());
    }
  }
  MD_ASSIGN_OR_RETURN(Statement s, impl->Prepare(kSelectTierChannels));
  while (true) {
    MD_ASSIGN_OR_RETURN(bool row, s.Step());
    if (!row) break;
    names->tier_channels.emplace_back(s.ColumnText(0), s.ColumnText(1));
  }
  return absl::OkStatus();
}

template <typename Impl>
absl::Status UpsertCounts(Impl* impl, const char* sql, const std::vector<FleetHourRow>& rows) {
  for (const FleetHourRow& r : rows) {
    MD_ASSIGN_OR_RETURN(Statement s, impl->Prepare(sql));
    s.BindInt64(0, r.hour);
    s.BindText(1, r.tier);
    s.BindText(2, r.channel);
    s.BindText(3, r.version);
    s.BindInt64(4, r.platform);
    s.BindInt64(5, r.arch);
    s.BindInt64(6, r.event);
    s.BindText(7, r.reason);
    s.BindInt64(8, r.count);
    MD_RETURN_IF_ERROR(s.Run());
  }
  return absl::OkStatus();
}

template <typename Impl>
absl::StatusOr<std::vector<FleetHourRow>> SelectCounts(Impl* impl, const char* sql) {
  std::vector<FleetHourRow> rows;
  MD_ASSIGN_OR_RETURN(Statement s, impl->Prepare(sql));
  while (true) {
    MD_ASSIGN_OR_RETURN(bool row, s.Step());
    if (!row) break;
    rows.push_back({s.ColumnInt64(0), s.ColumnText(1), s.ColumnText(2), s.ColumnText(3),
                    s.ColumnInt(4), s.ColumnInt(5), s.ColumnInt(6), s.ColumnText(7),
                    s.ColumnInt64(8)});
  }
  return rows;
}

}  // namespace

absl::Status Catalog::SaveFleet(const FleetChanges& changes) {
  absl::MutexLock lock(&impl_->mu);
  Transaction txn(&impl_->statements);
  MD_RETURN_IF_ERROR(txn.BeginWrite());
  for (const FleetTotalRow& r : changes.upserts.totals) {
    MD_ASSIGN_OR_RETURN(Statement s, impl_->Prepare(kUpsertTotal));
    s.BindText(0, r.tier);
    s.BindText(1, r.channel);
    s.BindText(2, r.version);
    s.BindInt64(3, r.event);
    s.BindInt64(4, r.count);
    MD_RETURN_IF_ERROR(s.Run());
  }
  MD_RETURN_IF_ERROR(UpsertCounts(impl_.get(), kUpsertHour, changes.upserts.hours));
  MD_RETURN_IF_ERROR(UpsertCounts(impl_.get(), kUpsertDay, changes.upserts.days));
  for (const FleetDeviceRow& r : changes.upserts.devices) {
    MD_ASSIGN_OR_RETURN(Statement s, impl_->Prepare(kUpsertDevice));
    s.BindBlob(0, r.device_sha256);
    s.BindText(1, r.tier);
    s.BindText(2, r.channel);
    s.BindText(3, r.version);
    s.BindInt64(4, r.platform);
    s.BindInt64(5, r.arch);
    s.BindInt64(6, r.rolled_back ? 1 : 0);
    s.BindInt64(7, r.last_heard);
    MD_RETURN_IF_ERROR(s.Run());
  }
  for (const FleetFailureRow& r : changes.upserts.failures) {
    MD_ASSIGN_OR_RETURN(Statement s, impl_->Prepare(kInsertFailure));
    s.BindInt64(0, r.seq);
    s.BindInt64(1, r.time);
    s.BindText(2, r.tier);
    s.BindText(3, r.channel);
    s.BindText(4, r.version);
    s.BindInt64(5, r.event);
    s.BindText(6, r.reason);
    s.BindInt64(7, r.platform);
    s.BindInt64(8, r.arch);
    s.BindText(9, r.app_version);
    MD_RETURN_IF_ERROR(s.Run());
  }
  const std::pair<const char*, int64_t> drops[] = {
      {kDropHours, changes.drop_hours_before},
      {kDropDays, changes.drop_days_before},
      {kDropDevices, changes.drop_devices_before},
      {kDropFailures, changes.drop_failures_below_seq}};
  for (const auto& [sql, bound] : drops) {
    if (bound == 0) continue;
    MD_ASSIGN_OR_RETURN(Statement s, impl_->Prepare(sql));
    s.BindInt64(0, bound);
    MD_RETURN_IF_ERROR(s.Run());
  }
  if (changes.names != nullptr) MD_RETURN_IF_ERROR(ReadFleetNames(impl_.get(), changes.names));
  return txn.Commit();
}

absl::StatusOr<FleetRows> Catalog::LoadFleet() {
  absl::MutexLock lock(&impl_->mu);
  Transaction txn(&impl_->statements);
  MD_RETURN_IF_ERROR(txn.BeginRead());
  FleetRows rows;
  {
    MD_ASSIGN_OR_RETURN(Statement s, impl_->Prepare(kSelectTotals));
    while (true) {
      MD_ASSIGN_OR_RETURN(bool row, s.Step());
      if (!row) break;
      rows.totals.push_back(
          {s.ColumnText(0), s.ColumnText(1), s.ColumnText(2), s.ColumnInt(3), s.ColumnInt64(4)});
    }
  }
  MD_ASSIGN_OR_RETURN(rows.hours, SelectCounts(impl_.get(), kSelectHours));
  MD_ASSIGN_OR_RETURN(rows.days, SelectCounts(impl_.get(), kSelectDays));
  {
    MD_ASSIGN_OR_RETURN(Statement s, impl_->Prepare(kSelectDevices));
    while (true) {
      MD_ASSIGN_OR_RETURN(bool row, s.Step());
      if (!row) break;
      rows.devices.push_back({s.ColumnBlob(0), s.ColumnText(1), s.ColumnText(2), s.ColumnText(3),
                              s.ColumnInt(4), s.ColumnInt(5), s.ColumnInt64(6) != 0,
                              s.ColumnInt64(7)});
    }
  }
  {
    MD_ASSIGN_OR_RETURN(Statement s, impl_->Prepare(kSelectFailures));
    while (true) {
      MD_ASSIGN_OR_RETURN(bool row, s.Step());
      if (!row) break;
      rows.failures.push_back({s.ColumnInt64(0), s.ColumnInt64(1), s.ColumnText(2), s.ColumnText(3),
                               s.ColumnText(4), s.ColumnInt(5), s.ColumnText(6), s.ColumnInt(7),
                               s.ColumnInt(8), s.ColumnText(9)});
    }
  }
  MD_RETURN_IF_ERROR(ReadFleetNames(impl_.get(), &rows.names));
  MD_RETURN_IF_ERROR(txn.Commit());
  return rows;
}

}  // namespace modeldist::storage
