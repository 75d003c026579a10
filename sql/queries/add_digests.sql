-- Purpose: append a batch's keys and input-hash digests to the change-detection probe
--          (enrich.changes; the digest is the one not_profiled_digests.sql compares).
-- Grain:   one row per source row.
-- Columns: none (an INSERT).
-- Params:  none; reads the registered batch enrich_batch (_key, input_hash).
INSERT INTO enrich_digests
SELECT _key, hash(input_hash) FROM enrich_batch;
