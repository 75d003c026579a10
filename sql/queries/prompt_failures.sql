-- Purpose: why entities still have no profile of one model and prompt version: the errors their
--          runs recorded, for entities that no later run profiled.
-- Grain:   one row per distinct error.
-- Columns: error, entities (distinct entities that ended with it).
-- Parameters: $kind ('items' or 'users'), $model (VARCHAR), $prompt_version (VARCHAR).

WITH version_runs AS (
    SELECT run_id FROM runs
    WHERE kind = $kind AND model = $model AND prompt_version = $prompt_version
),
profiled AS (
    SELECT item_id AS entity_id FROM item_profiles
    WHERE $kind = 'items' AND model = $model AND prompt_version = $prompt_version
    UNION ALL
    SELECT user_id FROM user_profiles
    WHERE $kind = 'users' AND model = $model AND prompt_version = $prompt_version
)
SELECT e.error, count(DISTINCT e.entity_id) AS entities
FROM enrich_errors AS e
WHERE e.run_id IN (SELECT run_id FROM version_runs)
  AND e.entity_id NOT IN (SELECT entity_id FROM profiled)
GROUP BY e.error
ORDER BY entities DESC, e.error;
