-- 0005_blob_chains: the chunk chain of each blob the server may have to read through from its
-- origins (services/read_through.h): a blob whose local file is gone while an origin holds a
-- confirmed copy. The chain, recorded from the verified local copy, is what the fetched bytes
-- are checked against chunk by chunk before any of them is served or stored.
--
-- Same conventions as 0001_init.sql. A row is written when the first replica of the blob is
-- confirmed (the local copy is then still there and verified) and kept: the chain of a digest
-- never changes.
CREATE TABLE blob_chains (
  -- "sha256:<64 hex>", as artifacts.digest.
  digest TEXT NOT NULL PRIMARY KEY,
  size_bytes INTEGER NOT NULL CHECK (size_bytes >= 0),
  -- The chunk size the chain covers (storage/blob_record.h kChunkDigestBytes when written).
  chunk_size INTEGER NOT NULL CHECK (chunk_size > 0),
  -- ceil(size_bytes / chunk_size) entries of 32 bytes (common/chunk_chain.h).
  chain BLOB NOT NULL
) STRICT;
