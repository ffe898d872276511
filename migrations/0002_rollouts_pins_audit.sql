-- 0002_rollouts_pins_audit: device-aware artifacts, staged rollouts, device pins, the audit log
-- and the trust root chain.
--
-- Same conventions as 0001_init.sql: INTEGER microseconds since the Unix epoch, enum numbers of
-- modeldist.v1, STRICT tables, no BEGIN/COMMIT. Existing rows get the column defaults, which
-- mean "nothing set": no constraints, unpacked size = size_bytes.

-- The serialized modeldist.v1.ArtifactConstraints; NULL when the artifact declared none (an
-- empty BLOB is a declared but empty message, so a read gives back exactly what was written).
ALTER TABLE artifacts ADD COLUMN constraints BLOB;
-- 0 means "same as size_bytes" (resources.proto).
ALTER TABLE artifacts ADD COLUMN unpacked_size_bytes INTEGER NOT NULL DEFAULT 0
  CHECK (unpacked_size_bytes >= 0);

-- Staged moves of a tier/channel. Rows are never deleted, and AUTOINCREMENT never hands out an
-- id twice even if they were, so `r-<id>` names one rollout forever.
CREATE TABLE rollouts (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  tier TEXT NOT NULL,
  channel TEXT NOT NULL,
  from_model_id TEXT NOT NULL,
  from_version_id TEXT NOT NULL,
  to_model_id TEXT NOT NULL,
  to_version_id TEXT NOT NULL,
  basis_points INTEGER NOT NULL CHECK (basis_points BETWEEN 0 AND 10000),
  -- Rollout.State: 1 ACTIVE, 2 PAUSED, 3 COMPLETED, 4 ABORTED.
  state INTEGER NOT NULL CHECK (state IN (1, 2, 3, 4)),
  create_time INTEGER NOT NULL,
  update_time INTEGER NOT NULL,
  FOREIGN KEY (tier, channel) REFERENCES tiers (tier, channel),
  FOREIGN KEY (from_model_id, from_version_id) REFERENCES versions (model_id, version_id),
  FOREIGN KEY (to_model_id, to_version_id) REFERENCES versions (model_id, version_id)
) STRICT;

-- At most one ACTIVE or PAUSED rollout per tier/channel; the catalog checks first and reports
-- FAILED_PRECONDITION, this index keeps the rule even against a bug or a second writer.
CREATE UNIQUE INDEX rollouts_one_open_per_tier ON rollouts (tier, channel) WHERE state IN (1, 2);
-- YankVersion aborts the open rollouts towards the yanked version.
CREATE INDEX rollouts_by_to_version ON rollouts (to_model_id, to_version_id);

-- Devices held on a version of a tier/channel, one pin per device.
CREATE TABLE device_pins (
  tier TEXT NOT NULL,
  channel TEXT NOT NULL,
  device_id TEXT NOT NULL,
  model_id TEXT NOT NULL,
  version_id TEXT NOT NULL,
  create_time INTEGER NOT NULL,
  PRIMARY KEY (tier, channel, device_id),
  FOREIGN KEY (tier, channel) REFERENCES tiers (tier, channel),
  FOREIGN KEY (model_id, version_id) REFERENCES versions (model_id, version_id)
) STRICT;

-- YankVersion removes the pins to the yanked version.
CREATE INDEX device_pins_by_version ON device_pins (model_id, version_id);

-- Every change made through the catalog, append-only; listed newest first by id.
CREATE TABLE audit_log (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  time INTEGER NOT NULL,
  actor TEXT NOT NULL,
  action TEXT NOT NULL,
  resource TEXT NOT NULL,
  details TEXT NOT NULL
) STRICT;

-- The serialized SignedTrustRoot of every root version, 1, 2, 3, ... without gaps.
CREATE TABLE trust_roots (
  version INTEGER PRIMARY KEY CHECK (version >= 1),
  signed_root BLOB NOT NULL,
  create_time INTEGER NOT NULL
) STRICT;
