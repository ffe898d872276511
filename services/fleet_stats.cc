#include "services/fleet_stats.h"

#include <google/protobuf/util/time_util.h>

#include <algorithm>
#include <utility>

#include "common/digest.h"
#include "common/names.h"
#include "common/status.h"
#include "services/fleet_stats_internal.h"

namespace modeldist::services {
namespace {

using fleet_internal::DayOf;
using fleet_internal::HourOf;
using fleet_internal::kDayMicros;
using fleet_internal::kHourMicros;

using ::google::protobuf::util::TimeUtil;

// What a reason beyond an hour's distinct rows is counted as.
constexpr absl::string_view kOtherReason = "OTHER";

bool IsFailure(int event) {
  return event == v1::STATUS_EVENT_LOAD_FAILED || event == v1::STATUS_EVENT_ROLLED_BACK ||
         event == v1::STATUS_EVENT_SYNC_FAILED;
}

// The events that say which version a device runs (FleetSummary.versions).
bool IsState(int event) {
  return event == v1::STATUS_EVENT_ACTIVATED || event == v1::STATUS_EVENT_LOAD_CONFIRMED ||
         event == v1::STATUS_EVENT_ROLLED_BACK;
}

std::string ChannelOrDefault(absl::string_view channel) {
  return std::string(channel.empty() ? kDefaultChannel : channel);
}

bool Wanted(absl::string_view tier, absl::string_view channel, absl::string_view row_tier,
            absl::string_view row_channel) {
  return (tier.empty() || tier == row_tier) && (channel.empty() || channel == row_channel);
}

}  // namespace

VersionCounts Minus(const VersionCounts& now, const VersionCounts& earlier) {
  VersionCounts out;
  out.activated = now.activated - earlier.activated;
  out.load_confirmed = now.load_confirmed - earlier.load_confirmed;
  out.load_failed = now.load_failed - earlier.load_failed;
  out.rolled_back = now.rolled_back - earlier.rolled_back;
  out.sync_failed = now.sync_failed - earlier.sync_failed;
  return out;
}

std::string FleetStats::DeviceKeyOf(absl::string_view device_id) {
  Sha256 hash;
  hash.Update(device_id);
  return hash.FinishRaw();
}

void FleetStats::CountDropsIn(metrics::CounterFamily* dropped) {
  dropped_tier_ = dropped->With({"unknown_tier"});
  dropped_version_ = dropped->With({"unknown_version"});
}

void FleetStats::Record(const v1::ReportStatusRequest& request, absl::string_view device_key,
                        absl::Time now) {
  const DeviceKey device(device_key);
  const int64_t micros = absl::ToUnixMicros(now);
  absl::MutexLock lock(&mu_);
  for (const v1::StatusReport& r : request.reports()) {
    const std::string channel = ChannelOrDefault(r.channel());
    const Known known = Check(r, channel);
    if (known == Known::kYes) {
      Count(r, channel, request.app_version(), device, micros);
    } else if (static_cast<int64_t>(pending_.size()) < limits_.max_pending) {
      pending_.push_back({r, request.app_version(), device, micros});
    } else {
      Drop(known, 1);
    }
  }
  auto d = devices_.find(device);
  if (d != devices_.end()) {
    d->second.last_heard = std::max(d->second.last_heard, micros);
    // Written again once an hour at most: retention needs no finer time.
    if (micros - d->second.stored_heard >= kHourMicros) dirty_devices_.insert(device);
  }
}

FleetStats::Known FleetStats::Check(const v1::StatusReport& report,
                                    absl::string_view channel) const {
  // A pair of views would need a heterogeneous lookup the set does not offer for pairs.
  if (!known_tiers_.contains(std::make_pair(report.tier(), std::string(channel)))) {
    return Known::kNoTier;
  }
  // An empty version is a sync failure before a manifest named one: counted under its
  // tier/channel.
  if (!report.version().empty() && !known_versions_.contains(report.version())) {
    return Known::kNoVersion;
  }
  return Known::kYes;
}

void FleetStats::Drop(Known why, int64_t n) const {
  metrics::Counter* counter = why == Known::kNoTier ? dropped_tier_ : dropped_version_;
  if (counter != nullptr) counter->Add(n);
}

void FleetStats::Count(const v1::StatusReport& r, const std::string& channel,
                       absl::string_view app_version, const DeviceKey& device, int64_t micros) {
  TotalKey total(r.tier(), channel, r.version(), r.event());
  auto it = totals_.find(total);
  if (it != totals_.end()) {
    ++it->second;
    dirty_totals_.insert(it->first);
  } else if (static_cast<int64_t>(totals_.size()) < limits_.max_totals) {
    totals_.emplace(total, 1);
    dirty_totals_.insert(std::move(total));
  }
  const int64_t hour = HourOf(micros);
  HourKey key(r.tier(), channel, r.version(), r.platform(), r.arch(), r.event(), r.reason());
  if (hour >= rolled_before_) {
    CountIn(hours_[hour], std::move(key), 1, limits_.max_rows_per_hour);
  } else {  // a report that waited for a flush across a rollup
    CountIn(days_[DayOf(micros)], std::move(key), 1, limits_.max_rows_per_day);
  }
  if (IsFailure(r.event())) {
    failures_.push_back({next_failure_seq_++, micros, r.tier(), channel, r.version(), r.event(),
                         r.reason(), r.platform(), r.arch(), std::string(app_version)});
    if (static_cast<int64_t>(failures_.size()) > limits_.recent_failures) failures_.pop_front();
  }
  if (IsState(r.event()) && !r.version().empty()) SetDevice(device, r, channel, micros);
}

void FleetStats::CountIn(Hour& bucket, HourKey key, int64_t n, int64_t max_rows) {
  auto it = bucket.counts.find(key);
  if (it == bucket.counts.end()) {
    const int64_t rows = static_cast<int64_t>(bucket.counts.size());
    if (rows >= max_rows && !std::get<6>(key).empty()) {
      std::get<6>(key) = std::string(kOtherReason);
      it = bucket.counts.find(key);
    }
    if (it == bucket.counts.end()) {
      if (rows >= 2 * max_rows) return;
      it = bucket.counts.emplace(std::move(key), 0).first;
    }
  }
  it->second += n;
  bucket.dirty.insert(it->first);
}

void FleetStats::TakePending() {
  std::vector<Pending> pending;
  pending.swap(pending_);
  for (const Pending& p : pending) {
    const std::string channel = ChannelOrDefault(p.report.channel());
    const Known known = Check(p.report, channel);
    if (known == Known::kYes) {
      Count(p.report, channel, p.app_version, p.device, p.time);
    } else {
      Drop(known, 1);
    }
  }
}

int64_t FleetStats::PlaceIndex(const Place& place) {
  auto it = place_index_.find(place);
  if (it != place_index_.end()) return it->second;
  if (static_cast<int64_t>(places_.size()) >= limits_.max_places) return -1;
  places_.push_back(place);
  const uint32_t index = static_cast<uint32_t>(places_.size() - 1);
  place_index_.emplace(place, index);
  return index;
}

void FleetStats::SetDevice(const DeviceKey& key, const v1::StatusReport& report,
                           absl::string_view channel, int64_t now) {
  const int64_t place = PlaceIndex(Place(report.tier(), channel, report.version()));
  if (place < 0) return;
  auto it = devices_.find(key);
  if (it == devices_.end()) {
    if (static_cast<int64_t>(devices_.size()) >= limits_.max_devices) return;
    it = devices_.emplace(key, Device()).first;
  } else {
    // A report that waited for a flush is older than what the device said since.
    if (it->second.last_heard > now) return;
    ForgetDevice(it->second);
  }
  Device& d = it->second;
  d.place = static_cast<uint32_t>(place);
  d.platform = report.platform();
  d.arch = report.arch();
  d.rolled_back = report.event() == v1::STATUS_EVENT_ROLLED_BACK;
  d.last_heard = now;
  ++devices_per_version_[std::get<2>(places_[d.place])];
  ++field_[FieldKey(d.place, d.platform, d.arch, d.rolled_back)];
  dirty_devices_.insert(key);
}

void FleetStats::ForgetDevice(const Device& device) {
  auto it = devices_per_version_.find(std::get<2>(places_[device.place]));
  if (it != devices_per_version_.end() && --it->second <= 0) devices_per_version_.erase(it);
  auto f = field_.find(FieldKey(device.place, device.platform, device.arch, device.rolled_back));
  if (f != field_.end() && --f->second <= 0) field_.erase(f);
}

VersionCounts FleetStats::Totals(absl::string_view tier, absl::string_view channel,
                                 absl::string_view version) const {
  VersionCounts out;
  const std::pair<v1::StatusEvent, int64_t*> fields[] = {
      {v1::STATUS_EVENT_ACTIVATED, &out.activated},
      {v1::STATUS_EVENT_LOAD_CONFIRMED, &out.load_confirmed},
      {v1::STATUS_EVENT_LOAD_FAILED, &out.load_failed},
      {v1::STATUS_EVENT_ROLLED_BACK, &out.rolled_back},
      {v1::STATUS_EVENT_SYNC_FAILED, &out.sync_failed}};
  TotalKey key(std::string(tier), ChannelOrDefault(channel), std::string(version), 0);
  absl::MutexLock lock(&mu_);
  for (const auto& [event, field] : fields) {
    std::get<3>(key) = event;
    auto it = totals_.find(key);
    *field = it == totals_.end() ? 0 : it->second;
  }
  return out;
}

v1::FleetSummary FleetStats::Summary(absl::string_view tier, absl::string_view channel,
                                     absl::Time since) const {
  int64_t from = HourOf(absl::ToUnixMicros(since));
  // Ordered maps: the answer lists rows in a stable order.
  std::map<std::tuple<std::string, std::string, std::string, int, int, bool>, int64_t> versions;
  std::map<TotalKey, int64_t> events;
  std::map<std::tuple<std::string, int, std::string, int, int>, int64_t> reasons;
  v1::FleetSummary out;
  {
    absl::MutexLock lock(&mu_);
    for (const auto& [key, devices] : field_) {
      const auto& [place, platform, arch, rolled_back] = key;
      const auto& [t, c, v] = places_[place];
      if (!Wanted(tier, channel, t, c)) continue;
      versions[{t, c, v, platform, arch, rolled_back}] += devices;
    }
    // Older hours are kept by day only: such a window starts at its day's start.
    if (from < rolled_before_) from = DayOf(from);
    auto add = [&](const Hour& bucket) {
      for (const auto& [key, count] : bucket.counts) {
        const auto& [t, c, v, platform, arch, event, reason] = key;
        if (!Wanted(tier, channel, t, c)) continue;
        events[{t, c, v, event}] += count;
        if (IsFailure(event) && !reason.empty()) {
          reasons[{v, event, reason, platform, arch}] += count;
        }
      }
    };
    if (from < rolled_before_) {
      for (auto d = days_.lower_bound(from); d != days_.end(); ++d) add(d->second);
    }
    for (auto h = hours_.lower_bound(from); h != hours_.end(); ++h) add(h->second);
    for (auto f = failures_.rbegin(); f != failures_.rend() && f->time >= from; ++f) {
      if (!Wanted(tier, channel, f->tier, f->channel)) continue;
      v1::RecentFailure* r = out.add_recent_failures();
      *r->mutable_time() = TimeUtil::MicrosecondsToTimestamp(f->time);
      r->set_tier(f->tier);
      r->set_version(f->version);
      r->set_event(static_cast<v1::StatusEvent>(f->event));
      r->set_reason(f->reason);
      r->set_platform(static_cast<v1::Platform>(f->platform));
      r->set_arch(static_cast<v1::Arch>(f->arch));
      r->set_app_version(f->app_version);
    }
  }
  *out.mutable_since() = TimeUtil::MicrosecondsToTimestamp(from);
  for (const auto& [key, devices] : versions) {
    const auto& [t, c, v, platform, arch, rolled_back] = key;
    v1::FieldVersion* f = out.add_versions();
    f->set_tier(t);
    f->set_channel(c);
    f->set_version(v);
    f->set_platform(static_cast<v1::Platform>(platform));
    f->set_arch(static_cast<v1::Arch>(arch));
    f->set_rolled_back(rolled_back);
    f->set_devices(devices);
  }
  for (const auto& [key, count] : events) {
    const auto& [t, c, v, event] = key;
    v1::EventCount* e = out.add_events();
    e->set_tier(t);
    e->set_channel(c);
    e->set_version(v);
    e->set_event(static_cast<v1::StatusEvent>(event));
    e->set_count(count);
  }
  std::vector<std::pair<int64_t, const decltype(reasons)::key_type*>> by_count;
  for (const auto& [key, count] : reasons) by_count.emplace_back(count, &key);
  std::stable_sort(by_count.begin(), by_count.end(),
                   [](const auto& a, const auto& b) { return a.first > b.first; });
  for (const auto& [count, key] : by_count) {
    const auto& [v, event, reason, platform, arch] = *key;
    v1::ReasonCount* r = out.add_reasons();
    r->set_version(v);
    r->set_event(static_cast<v1::StatusEvent>(event));
    r->set_reason(reason);
    r->set_platform(static_cast<v1::Platform>(platform));
    r->set_arch(static_cast<v1::Arch>(arch));
    r->set_count(count);
  }
  return out;
}

std::vector<std::pair<std::string, int64_t>> FleetStats::DevicesPerVersion(size_t max) const {
  std::vector<std::pair<std::string, int64_t>> out;
  {
    absl::MutexLock lock(&mu_);
    out.assign(devices_per_version_.begin(), devices_per_version_.end());
  }
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) {
    return a.second != b.second ? a.second > b.second : a.first < b.first;
  });
  if (out.size() > max) out.resize(max);
  return out;
}

}  // namespace modeldist::services
