-- Purpose: change detection: the rows of a probe (_key, input_hash) that are not stored with this
--          model and prompt version — new ids and changed inputs, the only rows the LLM sees.
-- Grain:   one row per probe row needing work (the rest are skipped as already profiled).
-- Columns: _key.
-- Params:  $kind ('items' or 'users'), $model, $prompt_version; the probe is registered as
--          enrich_probe by the caller.
WITH stored AS (
    SELECT 'items' AS kind, item_id AS id, input_hash, model, prompt_version FROM item_profiles
    UNION ALL
    SELECT 'users' AS kind, user_id AS id, input_hash, model, prompt_version FROM user_profiles
)
SELECT p._key
FROM enrich_probe AS p
ANTI JOIN (
    SELECT id, input_hash FROM stored
    WHERE kind = $kind AND model = $model AND prompt_version = $prompt_version
) AS s ON s.id = p._key AND s.input_hash = p.input_hash;
