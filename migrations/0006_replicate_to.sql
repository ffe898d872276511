-- 0006_replicate_to: which origins a model's or a version's blobs are copied to
-- (Model.replicate_to, Version.replicate_to; services/replicator.h). The origin names, joined
-- with commas (origin names are [a-z0-9-]); '' means "as the model says" for a version and
-- "every origin with `replicate: true`" for a model. Existing rows keep '' and so keep being
-- copied everywhere, as before.
ALTER TABLE models ADD COLUMN replicate_to TEXT NOT NULL DEFAULT '';
ALTER TABLE versions ADD COLUMN replicate_to TEXT NOT NULL DEFAULT '';
