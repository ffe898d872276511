-- 0008_releases: the release statement of a version (a serialized modeldist.v1.SignedRelease,
-- signed offline by the trust root's release keys; common/release.h), stored by the
-- transaction that publishes the version or attached later (AttachRelease). Every manifest of
-- the version carries it. NULL for versions published without one.
ALTER TABLE versions ADD COLUMN release BLOB;
