-- Purpose: change detection for a source read in batches (enrich.changes): the probe keys not
--          stored with this model, prompt version and input. The input hash is compared through
--          a 64-bit digest (DuckDB's hash() of the hex SHA-256, computed on both sides here), so
--          the probe holds 8 bytes per row instead of 64 and a 10M-row anti-join fits in memory.
--          A changed row is taken for unchanged only if its new and stored hashes share a digest:
--          2^-64 per changed row.
-- Grain:   one row per probe row needing work.
-- Columns: _key.
-- Params:  $kind ('items' or 'users'), $model, $prompt_version; reads the temporary table
--          enrich_digests (_key, digest) the caller filled.
WITH stored AS (
    SELECT 'items' AS kind, item_id AS id, input_hash, model, prompt_version FROM item_profiles
    UNION ALL
    SELECT 'users' AS kind, user_id AS id, input_hash, model, prompt_version FROM user_profiles
)
SELECT p._key
FROM enrich_digests AS p
ANTI JOIN (
    SELECT id, hash(input_hash) AS digest FROM stored
    WHERE kind = $kind AND model = $model AND prompt_version = $prompt_version
) AS s ON s.id = p._key AND s.digest = p.digest;
