-- 0004_replicas: copies of published blobs on the origins that replicate them (the server's
-- --origins file, origins with `replicate` set): the durable replication queue and what came
-- of each copy.
--
-- Same conventions as 0001_init.sql. A row is queued for every (published digest, replicating
-- origin) that has none, by the replicator's sweep (at start and after each publish), so a
-- publish that crashed before its rows were written is queued at the next start. A row stays
-- until the blob is confirmed on the origin; a crash or kill -9 mid-copy leaves it due, and the
-- next attempt resumes the origin's multipart upload. Rows of origins no longer configured are
-- kept (and shown) but not worked on.
CREATE TABLE replicas (
  -- "sha256:<64 hex>", as artifacts.digest.
  digest TEXT NOT NULL,
  -- The origin's name in the origins file.
  origin TEXT NOT NULL,
  -- modeldist.v1.Replica.State: 1 PENDING, 2 COPYING, 3 CONFIRMED, 4 FAILING.
  state INTEGER NOT NULL CHECK (state IN (1, 2, 3, 4)),
  -- Failed attempts since the last success; the backoff before the next grows with it.
  attempts INTEGER NOT NULL DEFAULT 0,
  -- Bytes the current or last copy got to the origin.
  bytes_done INTEGER NOT NULL DEFAULT 0,
  -- Why the last attempt failed ('' after a success); never holds a credential.
  last_error TEXT NOT NULL DEFAULT '',
  -- When the row is next worked on (rows not CONFIRMED whose time has come).
  next_attempt_time INTEGER NOT NULL,
  update_time INTEGER NOT NULL,
  PRIMARY KEY (digest, origin)
) STRICT;

CREATE INDEX replicas_by_due_time ON replicas (state, next_attempt_time);
