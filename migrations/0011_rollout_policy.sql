-- 0011_rollout_policy: health gates and automatic schedules of rollouts (RolloutPolicy), and
-- the steps a rollout took, each with the fleet's report counts about its to_version at that
-- moment, so the reports of one step are the difference of two rows (docs/fleet.md).
--
-- Same conventions as 0001_init.sql. Existing rollouts get no policy and no steps: their
-- status counts from their create_time with a zero snapshot.

-- The serialized modeldist.v1.RolloutPolicy; NULL: none (advanced by hand only).
ALTER TABLE rollouts ADD COLUMN policy BLOB;
-- Why a gate paused or aborted it; empty when an admin changed its state.
ALTER TABLE rollouts ADD COLUMN state_reason TEXT NOT NULL DEFAULT '';
-- When the schedule takes its next step; NULL when none is due.
ALTER TABLE rollouts ADD COLUMN next_step_time INTEGER;

-- One row per share a rollout took (kind 1: its start and each advance) and one when it ended
-- (kind 2: completed or aborted), numbered from 0 within the rollout. The counts are the
-- cumulative reports about to_version (and, from_*, about from_version) on the rollout's
-- tier/channel (services/fleet_stats.h FleetStats::Totals) when the row was written.
CREATE TABLE rollout_steps (
  rollout_id INTEGER NOT NULL REFERENCES rollouts (id),
  step INTEGER NOT NULL CHECK (step >= 0),
  kind INTEGER NOT NULL CHECK (kind IN (1, 2)),
  basis_points INTEGER NOT NULL CHECK (basis_points BETWEEN 0 AND 10000),
  time INTEGER NOT NULL,
  actor TEXT NOT NULL,
  activated INTEGER NOT NULL CHECK (activated >= 0),
  load_confirmed INTEGER NOT NULL CHECK (load_confirmed >= 0),
  load_failed INTEGER NOT NULL CHECK (load_failed >= 0),
  rolled_back INTEGER NOT NULL CHECK (rolled_back >= 0),
  sync_failed INTEGER NOT NULL CHECK (sync_failed >= 0),
  from_activated INTEGER NOT NULL CHECK (from_activated >= 0),
  from_load_confirmed INTEGER NOT NULL CHECK (from_load_confirmed >= 0),
  from_load_failed INTEGER NOT NULL CHECK (from_load_failed >= 0),
  from_rolled_back INTEGER NOT NULL CHECK (from_rolled_back >= 0),
  from_sync_failed INTEGER NOT NULL CHECK (from_sync_failed >= 0),
  PRIMARY KEY (rollout_id, step)
) STRICT;
