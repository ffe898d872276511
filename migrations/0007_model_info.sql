-- 0007_model_info: what the publish-time model checks read from an artifact's file
-- (common/model_check/model_check.h): a serialized modeldist.v1.ModelInfo, written in the
-- transaction that publishes the version. NULL for formats without a check, for servers run
-- with --model-checks off, and for versions published before this migration.
ALTER TABLE artifacts ADD COLUMN model_info BLOB;
