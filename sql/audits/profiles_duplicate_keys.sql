-- Purpose: audit — more than one row per key. Store.upsert_profiles keeps one (the tables have
--          no PRIMARY KEY since migration 0008: its index must fit in memory); this catches rows
--          written by anything else.
-- Grain:   one row per duplicated key.
-- Columns: kind, entity_id, model, prompt_version, as_of, n.

SELECT 'items' AS kind, item_id AS entity_id, model, prompt_version, NULL::TIMESTAMP AS as_of,
       count(*) AS n
FROM item_profiles GROUP BY ALL HAVING count(*) > 1
UNION ALL
SELECT 'users', user_id, model, prompt_version, as_of, count(*)
FROM user_profiles GROUP BY ALL HAVING count(*) > 1;
