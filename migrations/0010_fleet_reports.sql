-- 0010_fleet_reports: what devices report (fleet.proto, FleetService.ReportStatus), as
-- services/fleet_stats.h keeps it: statistics only, never trusted for anything else. What is
-- stored and for how long is documented in docs/fleet.md; no device id is stored, only its
-- SHA-256.
--
-- Same conventions as 0001_init.sql. Rows are written by FleetStats::Flush with absolute
-- counts (upserts), so a flush that failed is simply repeated.

-- Every report ever counted per tier/channel/version/event: what rollout gates diff. Only
-- names the catalog knows are counted, so this grows with the catalog, not with the reports.
CREATE TABLE fleet_totals (
  tier TEXT NOT NULL,
  channel TEXT NOT NULL,
  -- `models/{model}/versions/{version}`, or '' for a sync failure before a manifest named one.
  version TEXT NOT NULL,
  -- modeldist.v1.StatusEvent number.
  event INTEGER NOT NULL,
  count INTEGER NOT NULL,
  PRIMARY KEY (tier, channel, version, event)
) STRICT, WITHOUT ROWID;

-- Reports per hour of receipt (by the server's clock), kept for 48 hours; older hours are
-- rolled up into fleet_daily (docs/fleet.md).
CREATE TABLE fleet_hourly (
  -- The hour's start, microseconds since the Unix epoch.
  hour INTEGER NOT NULL,
  tier TEXT NOT NULL,
  channel TEXT NOT NULL,
  version TEXT NOT NULL,
  platform INTEGER NOT NULL,
  arch INTEGER NOT NULL,
  event INTEGER NOT NULL,
  -- The reported reason ('' for none; OTHER once the hour holds too many distinct rows).
  reason TEXT NOT NULL,
  count INTEGER NOT NULL,
  PRIMARY KEY (hour, tier, channel, version, platform, arch, event, reason)
) STRICT, WITHOUT ROWID;

-- Reports per day of receipt (UTC days), rolled up from fleet_hourly's older hours: the same
-- columns, `day` the day's start. Kept for the retention (30 days).
CREATE TABLE fleet_daily (
  day INTEGER NOT NULL,
  tier TEXT NOT NULL,
  channel TEXT NOT NULL,
  version TEXT NOT NULL,
  platform INTEGER NOT NULL,
  arch INTEGER NOT NULL,
  event INTEGER NOT NULL,
  reason TEXT NOT NULL,
  count INTEGER NOT NULL,
  PRIMARY KEY (day, tier, channel, version, platform, arch, event, reason)
) STRICT, WITHOUT ROWID;

-- Each device's newest state (version of its newest ACTIVATED, LOAD_CONFIRMED or ROLLED_BACK
-- report), by the SHA-256 of its id. Dropped when not heard from for the retention.
CREATE TABLE fleet_devices (
  -- The 32 raw bytes of SHA-256(device id). The id itself is never stored.
  device_sha256 BLOB NOT NULL PRIMARY KEY,
  tier TEXT NOT NULL,
  channel TEXT NOT NULL,
  version TEXT NOT NULL,
  platform INTEGER NOT NULL,
  arch INTEGER NOT NULL,
  -- 1 when the newest state report was a rollback away from `version`.
  rolled_back INTEGER NOT NULL,
  -- When the server last heard from the device (to the hour at least).
  last_heard INTEGER NOT NULL
) STRICT, WITHOUT ROWID;
CREATE INDEX fleet_devices_by_last_heard ON fleet_devices (last_heard);

-- A bounded sample of the newest failures (LOAD_FAILED, ROLLED_BACK, SYNC_FAILED), without
-- device ids.
CREATE TABLE fleet_failures (
  -- Increases with every failure received; the oldest are deleted past the sample's size.
  seq INTEGER NOT NULL PRIMARY KEY,
  time INTEGER NOT NULL,
  tier TEXT NOT NULL,
  channel TEXT NOT NULL,
  version TEXT NOT NULL,
  event INTEGER NOT NULL,
  reason TEXT NOT NULL,
  platform INTEGER NOT NULL,
  arch INTEGER NOT NULL,
  app_version TEXT NOT NULL
) STRICT;
