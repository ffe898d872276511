// FleetStats's load from the catalog and its flush to it: what changed, the rollup of old hours
// into days, retention, and the catalog's names that reports are counted about.
#include <algorithm>
#include <utility>

#include "common/status.h"
#include "services/fleet_stats.h"
#include "services/fleet_stats_internal.h"

namespace modeldist::services {

using fleet_internal::DayOf;
using fleet_internal::HourOf;
using fleet_internal::kDayMicros;
using fleet_internal::kHourMicros;

absl::StatusOr<std::unique_ptr<FleetStats>> FleetStats::Load(storage::Catalog* catalog,
                                                             FleetLimits limits) {
  MD_ASSIGN_OR_RETURN(storage::FleetRows rows, catalog->LoadFleet());
  std::unique_ptr<FleetStats> stats(new FleetStats(catalog, limits));
  absl::MutexLock lock(&stats->mu_);
  stats->SetNames(std::move(rows.names));
  for (storage::FleetTotalRow& r : rows.totals) {
    stats->totals_[TotalKey(std::move(r.tier), std::move(r.channel), std::move(r.version),
                            r.event)] = r.count;
  }
  for (storage::FleetHourRow& r : rows.hours) {
    stats->hours_[r.hour]
        .counts[HourKey(std::move(r.tier), std::move(r.channel), std::move(r.version), r.platform,
                        r.arch, r.event, std::move(r.reason))] = r.count;
  }
  for (storage::FleetHourRow& r : rows.days) {
    stats->days_[r.hour]
        .counts[HourKey(std::move(r.tier), std::move(r.channel), std::move(r.version), r.platform,
                        r.arch, r.event, std::move(r.reason))] = r.count;
  }
  // Which hours were rolled up is not stored: the newest day may hold some of its hours.
  if (!stats->days_.empty()) stats->rolled_before_ = stats->days_.rbegin()->first + kDayMicros;
  for (storage::FleetDeviceRow& r : rows.devices) {
    const int64_t place = stats->PlaceIndex(Place(r.tier, r.channel, r.version));
    if (place < 0) continue;
    Device& d = stats->devices_[r.device_sha256];
    d.place = static_cast<uint32_t>(place);
    d.platform = r.platform;
    d.arch = r.arch;
    d.rolled_back = r.rolled_back;
    d.last_heard = d.stored_heard = r.last_heard;
    ++stats->devices_per_version_[r.version];
    ++stats->field_[FieldKey(d.place, d.platform, d.arch, d.rolled_back)];
  }
  for (storage::FleetFailureRow& r : rows.failures) {
    stats->failures_.push_back({r.seq, r.time, std::move(r.tier), std::move(r.channel),
                                std::move(r.version), r.event, std::move(r.reason), r.platform,
                                r.arch, std::move(r.app_version)});
    stats->next_failure_seq_ = r.seq + 1;
    stats->stored_failure_seq_ = r.seq;
  }
  while (static_cast<int64_t>(stats->failures_.size()) > limits.recent_failures) {
    stats->failures_.pop_front();
  }
  return stats;
}

void FleetStats::SetNames(storage::FleetNames names) {
  known_versions_.clear();
  known_tiers_.clear();
  for (std::string& v : names.versions) known_versions_.insert(std::move(v));
  for (auto& tc : names.tier_channels) known_tiers_.insert(std::move(tc));
}

storage::FleetChanges FleetStats::TakeChanges(int64_t now) {
  storage::FleetChanges changes;
  storage::FleetRows& rows = changes.upserts;
  for (const TotalKey& key : dirty_totals_) {
    auto it = totals_.find(key);
    if (it == totals_.end()) continue;
    const auto& [t, c, v, event] = key;
    rows.totals.push_back({t, c, v, event, it->second});
  }
  dirty_totals_.clear();
  // Retention: once an hour is enough, since hours are kept for two days and days for 30.
  if (last_sweep_ == 0 || now - last_sweep_ >= kHourMicros) {
    RollUp(HourOf(now - absl::ToInt64Microseconds(kFleetHourlyRetention)), &changes);
  }
  for (auto* buckets : {&hours_, &days_}) {
    std::vector<storage::FleetHourRow>& out = buckets == &hours_ ? rows.hours : rows.days;
    for (auto& [start, h] : *buckets) {
      for (const HourKey& key : h.dirty) {
        auto it = h.counts.find(key);
        if (it == h.counts.end()) continue;
        const auto& [t, c, v, platform, arch, event, reason] = key;
        out.push_back({start, t, c, v, platform, arch, event, reason, it->second});
      }
      h.dirty.clear();
    }
  }
  for (const DeviceKey& key : dirty_devices_) {
    auto it = devices_.find(key);
    if (it == devices_.end()) continue;
    Device& d = it->second;
    const auto& [t, c, v] = places_[d.place];
    rows.devices.push_back({key, t, c, v, d.platform, d.arch, d.rolled_back, d.last_heard});
    d.stored_heard = d.last_heard;
  }
  dirty_devices_.clear();
  for (const Failure& f : failures_) {
    if (f.seq <= stored_failure_seq_) continue;
    rows.failures.push_back({f.seq, f.time, f.tier, f.channel, f.version, f.event, f.reason,
                             f.platform, f.arch, f.app_version});
  }
  if (!failures_.empty()) {
    stored_failure_seq_ = failures_.back().seq;
    changes.drop_failures_below_seq = failures_.front().seq;
  }
  if (last_sweep_ == 0 || now - last_sweep_ >= kHourMicros) {
    last_sweep_ = now;
    const int64_t cutoff = now - absl::ToInt64Microseconds(kFleetRetention);
    changes.drop_days_before = DayOf(cutoff);
    changes.drop_devices_before = cutoff;
    days_.erase(days_.begin(), days_.lower_bound(changes.drop_days_before));
    // The device walk holds mu_ for a moment once an hour; Summary never walks devices.
    for (auto it = devices_.begin(); it != devices_.end();) {
      if (it->second.last_heard >= cutoff) {
        ++it;
        continue;
      }
      ForgetDevice(it->second);
      devices_.erase(it++);
    }
  }
  return changes;
}

void FleetStats::RollUp(int64_t before, storage::FleetChanges* changes) {
  changes->drop_hours_before = before;
  rolled_before_ = std::max(rolled_before_, before);
  auto end = hours_.lower_bound(before);
  for (auto h = hours_.begin(); h != end; ++h) {
    Hour& day = days_[DayOf(h->first)];
    for (auto& [key, count] : h->second.counts) {
      CountIn(day, key, count, limits_.max_rows_per_day);
    }
  }
  hours_.erase(hours_.begin(), end);
}

void FleetStats::Restore(const storage::FleetChanges& changes) {
  for (const storage::FleetTotalRow& r : changes.upserts.totals) {
    dirty_totals_.insert(TotalKey(r.tier, r.channel, r.version, r.event));
  }
  for (auto* buckets : {&hours_, &days_}) {
    for (const storage::FleetHourRow& r :
         buckets == &hours_ ? changes.upserts.hours : changes.upserts.days) {
      auto h = buckets->find(r.hour);
      if (h == buckets->end()) continue;
      h->second.dirty.insert(
          HourKey(r.tier, r.channel, r.version, r.platform, r.arch, r.event, r.reason));
    }
  }
  for (const storage::FleetDeviceRow& r : changes.upserts.devices) {
    auto it = devices_.find(r.device_sha256);
    if (it == devices_.end()) continue;
    it->second.stored_heard = 0;
    dirty_devices_.insert(r.device_sha256);
  }
  if (!changes.upserts.failures.empty()) {
    stored_failure_seq_ = std::min(stored_failure_seq_, changes.upserts.failures.front().seq - 1);
  }
  // The rollup and drops are done in memory; the next flush repeats them in the catalog.
  if (changes.drop_devices_before != 0 || changes.drop_hours_before != 0) last_sweep_ = 0;
}

absl::Status FleetStats::Flush(absl::Time now) {
  absl::MutexLock flushing(&flush_mu_);
  storage::FleetChanges changes;
  {
    absl::MutexLock lock(&mu_);
    changes = TakeChanges(absl::ToUnixMicros(now));
  }
  // The names are read in the same transaction: a stamp query when nothing changed.
  storage::FleetNames names;
  names.stamp = names_read_.stamp;
  changes.names = &names;
  absl::Status saved = catalog_->SaveFleet(changes);
  absl::MutexLock lock(&mu_);
  if (!saved.ok()) {
    Restore(changes);
    return saved;
  }
  if (names.stamp != names_read_.stamp) {
    names_read_.stamp = names.stamp;
    SetNames(std::move(names));
  }
  TakePending();
  return saved;
}

}  // namespace modeldist::services
