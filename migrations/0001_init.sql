-- 0001_init: the initial catalog schema.
--
-- Conventions (see storage/catalog.cc):
--   * Times are INTEGER microseconds since the Unix epoch, UTC; NULL means "not set".
--   * Enum columns hold the modeldist.v1 enum numbers (Platform, Arch, Format, Version.State).
--   * Tables are STRICT so a wrongly typed bind fails loudly instead of being stored as is.
--   * A migration runs inside one transaction opened by the runner: no BEGIN/COMMIT here.

CREATE TABLE models (
  id TEXT NOT NULL PRIMARY KEY,
  description TEXT NOT NULL DEFAULT '',
  create_time INTEGER NOT NULL
) STRICT;

CREATE TABLE versions (
  model_id TEXT NOT NULL REFERENCES models (id),
  version_id TEXT NOT NULL,
  -- 1 DRAFT, 2 PUBLISHED, 3 YANKED.
  state INTEGER NOT NULL CHECK (state IN (1, 2, 3)),
  create_time INTEGER NOT NULL,
  publish_time INTEGER,
  yank_time INTEGER,
  yank_reason TEXT NOT NULL DEFAULT '',
  PRIMARY KEY (model_id, version_id)
) STRICT;

-- At most one artifact per (platform, arch, format) of a version.
CREATE TABLE artifacts (
  model_id TEXT NOT NULL,
  version_id TEXT NOT NULL,
  platform INTEGER NOT NULL,
  arch INTEGER NOT NULL,
  format INTEGER NOT NULL,
  digest TEXT NOT NULL,
  size_bytes INTEGER NOT NULL,
  PRIMARY KEY (model_id, version_id, platform, arch, format),
  FOREIGN KEY (model_id, version_id) REFERENCES versions (model_id, version_id)
) STRICT;

-- DeclaredSize and the size-conflict check look artifacts up by content.
CREATE INDEX artifacts_by_digest ON artifacts (digest);

-- The current state of each tier/channel: `sequence` grows by one with every bind and with
-- every yank of the version it resolved to.
CREATE TABLE tiers (
  tier TEXT NOT NULL,
  channel TEXT NOT NULL,
  sequence INTEGER NOT NULL,
  update_time INTEGER NOT NULL,
  PRIMARY KEY (tier, channel)
) STRICT;

-- Every bind ever made, append-only. A tier resolves to the newest row (by sequence) whose
-- version is still PUBLISHED, which is how a yank falls back to the previous binding.
CREATE TABLE tier_history (
  tier TEXT NOT NULL,
  channel TEXT NOT NULL,
  sequence INTEGER NOT NULL,
  model_id TEXT NOT NULL,
  version_id TEXT NOT NULL,
  create_time INTEGER NOT NULL,
  PRIMARY KEY (tier, channel, sequence),
  FOREIGN KEY (tier, channel) REFERENCES tiers (tier, channel),
  FOREIGN KEY (model_id, version_id) REFERENCES versions (model_id, version_id)
) STRICT;

-- YankVersion finds the tiers that were ever bound to a version.
CREATE INDEX tier_history_by_version ON tier_history (model_id, version_id);
