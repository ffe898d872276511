-- 0009_credentials: named admin credentials (registry.proto, Credential): a name, the scopes
-- it grants and the SHA-256 of its bearer token. The token itself is never stored: it is shown
-- once, by CreateCredential. Rows are never deleted, so a revoked name is never reused and the
-- audit log's actors stay unambiguous.
--
-- Same conventions as 0001_init.sql.
CREATE TABLE credentials (
  -- Same syntax as a model id; `admin` is the bootstrap token's and never stored.
  name TEXT NOT NULL PRIMARY KEY,
  -- modeldist.v1.Scope numbers joined with commas, ascending ("1,2").
  scopes TEXT NOT NULL,
  -- Lowercase hex SHA-256 of the token: what an incoming token is looked up by.
  token_sha256 TEXT NOT NULL UNIQUE,
  -- The authenticated name that created it.
  created_by TEXT NOT NULL,
  create_time INTEGER NOT NULL,
  -- NULL while it works.
  revoke_time INTEGER
) STRICT;
