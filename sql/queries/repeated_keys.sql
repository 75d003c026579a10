-- Purpose: ids that appear more than once in a source read in batches (each id must appear once;
--          a batch checks itself, this checks across batches).
-- Grain:   one row per repeated id, at most 5.
-- Columns: _key, n (times it appears).
-- Params:  none; reads the temporary table enrich_digests (_key, digest) the caller filled.
SELECT _key, count(*) AS n
FROM enrich_digests
GROUP BY _key
HAVING count(*) > 1
ORDER BY _key
LIMIT 5;
