-- Purpose: how the LLM's attributes spread over the newest item profiles: how many items carry
--          each value of each field (list fields counted per label). A controlled field shows
--          its vocabulary; a free-text field that the ranker cannot group shows as many values
--          as items. The free summary is left out.
-- Grain:   one row per (field, value).
-- Columns: field, value (as text), items, distinct_values (of the field).

WITH pairs AS (
    SELECT f.item_id,
           k.field,
           unnest(
               CASE WHEN json_type(f.attributes -> k.field) = 'ARRAY'
                    THEN CAST(f.attributes -> k.field AS VARCHAR[])
                    ELSE [f.attributes ->> k.field] END
           ) AS value
    FROM item_features AS f, unnest(json_keys(f.attributes)) AS k(field)
    WHERE k.field <> 'summary'
)
SELECT field,
       value,
       count(DISTINCT item_id) AS items,
       count(*) OVER (PARTITION BY field) AS distinct_values
FROM pairs
GROUP BY field, value
ORDER BY field, items DESC, value;
