-- 0003_damaged_blobs: blobs whose stored bytes failed a check (a digest or size mismatch found
-- while serving or scrubbing, or a file gone while a published version declares it).
--
-- Same conventions as 0001_init.sql. A row exists from the moment the server quarantined the
-- blob until a verified copy is stored again (a re-publish); manifests for artifacts with a
-- row are withheld in the meantime. Both changes also write an audit_log row.
CREATE TABLE damaged_blobs (
  -- "sha256:<64 hex>", as artifacts.digest.
  digest TEXT NOT NULL PRIMARY KEY,
  -- What was found, for operators ("chunk 3 of 12 does not match its chain", ...).
  details TEXT NOT NULL,
  detect_time INTEGER NOT NULL
) STRICT;
