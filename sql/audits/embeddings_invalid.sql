-- Purpose: audit — profiles whose embedding is null, has a null or non-finite component, or has
--          zero norm (cosine similarity would be meaningless).
-- Grain:   one row per offending profile.
-- Columns: kind, entity_id, model, prompt_version, problem.

SELECT 'items' AS kind, item_id AS entity_id, model, prompt_version,
       CASE WHEN embedding IS NULL THEN 'null embedding'
            WHEN list_has_any(embedding::FLOAT[], [NULL]::FLOAT[]) THEN 'null component'
            WHEN NOT isfinite(list_sum(embedding::FLOAT[])) THEN 'non-finite component'
            ELSE 'zero norm' END AS problem
FROM item_profiles
WHERE embedding IS NULL
   OR list_has_any(embedding::FLOAT[], [NULL]::FLOAT[])
   OR NOT isfinite(list_sum(embedding::FLOAT[]))
   OR list_dot_product(embedding::FLOAT[], embedding::FLOAT[]) < 1e-12
UNION ALL
SELECT 'users', user_id, model, prompt_version,
       CASE WHEN embedding IS NULL THEN 'null embedding'
            WHEN list_has_any(embedding::FLOAT[], [NULL]::FLOAT[]) THEN 'null component'
            WHEN NOT isfinite(list_sum(embedding::FLOAT[])) THEN 'non-finite component'
            ELSE 'zero norm' END
FROM user_profiles
WHERE embedding IS NULL
   OR list_has_any(embedding::FLOAT[], [NULL]::FLOAT[])
   OR NOT isfinite(list_sum(embedding::FLOAT[]))
   OR list_dot_product(embedding::FLOAT[], embedding::FLOAT[]) < 1e-12;
