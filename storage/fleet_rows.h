// File: fleet_rows.h
//
// The rows of what the fleet reported (migrations/0010_fleet_reports.sql), as
// services/fleet_stats.h keeps them in memory and Catalog::SaveFleet / LoadFleet store them.
// Enum columns hold the modeldist.v1 enum numbers; times are microseconds since the Unix epoch.
#ifndef MODELDIST_STORAGE_FLEET_ROWS_H_
#define MODELDIST_STORAGE_FLEET_ROWS_H_

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace modeldist::storage {

// Every report counted about a tier/channel/version with one event.
struct FleetTotalRow {
  std::string tier;
  std::string channel;
  std::string version;
  int event = 0;
  int64_t count = 0;
};

// Reports received in one hour (fleet_hourly) or one day (fleet_daily) with the same fields.
struct FleetHourRow {
  int64_t hour = 0;  // the hour's start (the day's start in fleet_daily)
  std::string tier;
  std::string channel;
  std::string version;
  int platform = 0;
  int arch = 0;
  int event = 0;
  std::string reason;
  int64_t count = 0;
};

// One device's newest state, by the SHA-256 of its id (32 raw bytes).
struct FleetDeviceRow {
  std::string device_sha256;
  std::string tier;
  std::string channel;
  std::string version;
  int platform = 0;
  int arch = 0;
  bool rolled_back = false;
  int64_t last_heard = 0;
};

// One failure of the recent sample.
struct FleetFailureRow {
  int64_t seq = 0;
  int64_t time = 0;
  std::string tier;
  std::string channel;
  std::string version;
  int event = 0;
  std::string reason;
  int platform = 0;
  int arch = 0;
  std::string app_version;
};

// The names the catalog knows, that reports are counted about (services/fleet_stats.h).
struct FleetNames {
  // Moves whenever a version is created or a tier/channel first bound (neither is ever
  // deleted): the lists are read again only then.
  std::vector<int64_t> stamp;
  std::vector<std::string> versions;  // `models/{model}/versions/{version}`
  std::vector<std::pair<std::string, std::string>> tier_channels;
};

struct FleetRows {
  std::vector<FleetTotalRow> totals;
  std::vector<FleetHourRow> hours;
  std::vector<FleetHourRow> days;  // older hours rolled up by day
  std::vector<FleetDeviceRow> devices;
  std::vector<FleetFailureRow> failures;  // by seq, ascending
  FleetNames names;                       // filled by LoadFleet
};

// One flush: rows written with their absolute counts (insert or replace), then what retention
// drops. A zero bound drops nothing.
struct FleetChanges {
  FleetRows upserts;                    // `names` unused
  int64_t drop_hours_before = 0;        // hourly rows with hour < this (rolled up into days)
  int64_t drop_days_before = 0;         // daily rows with day < this
  int64_t drop_devices_before = 0;      // devices with last_heard < this
  int64_t drop_failures_below_seq = 0;  // failures with seq < this
  // When set, SaveFleet reads the catalog's names in the same transaction: the lists only
  // when the stamp differs from `names->stamp` (else they are left empty), and the stamp.
  FleetNames* names = nullptr;
};

}  // namespace modeldist::storage

#endif  // MODELDIST_STORAGE_FLEET_ROWS_H_
