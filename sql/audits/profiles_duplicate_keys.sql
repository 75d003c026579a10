-- Purpose: audit — more than one row per key (the primary keys forbid it; this catches tables
--          copied or rebuilt without them).
-- Grain:   one row per duplicated key.
-- Columns: kind, entity_id, model, prompt_version, as_of, n.

SELECT 'items' AS kind, item_id AS entity_id, model, prompt_version, NULL::TIMESTAMP AS as_of,
       count(*) AS n
FROM item_profiles GROUP BY ALL HAVING count(*) > 1
UNION ALL
SELECT 'users', user_id, model, prompt_version, as_of, count(*)
FROM user_profiles GROUP BY ALL HAVING count(*) > 1;
