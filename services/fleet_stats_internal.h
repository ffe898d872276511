// File: fleet_stats_internal.h
//
// The time buckets shared by services/fleet_stats.cc (counting) and fleet_stats_flush.cc
// (loading, flushing, the rollup). Not for use elsewhere.
#ifndef MODELDIST_SERVICES_FLEET_STATS_INTERNAL_H_
#define MODELDIST_SERVICES_FLEET_STATS_INTERNAL_H_

#include <cstdint>

namespace modeldist::services::fleet_internal {

inline constexpr int64_t kHourMicros = int64_t{3600} * 1000 * 1000;
inline constexpr int64_t kDayMicros = 24 * kHourMicros;

// The start of the `span` (an hour, a day: UTC) that `micros` falls in.
inline int64_t StartOf(int64_t micros, int64_t span) {
  return micros - ((micros % span) + span) % span;
}
inline int64_t HourOf(int64_t micros) { return StartOf(micros, kHourMicros); }
inline int64_t DayOf(int64_t micros) { return StartOf(micros, kDayMicros); }

}  // namespace modeldist::services::fleet_internal

#endif  // MODELDIST_SERVICES_FLEET_STATS_INTERNAL_H_
