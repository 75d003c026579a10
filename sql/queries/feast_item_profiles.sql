-- Purpose: the item profiles a Feast repository serves (enrich export --feast): every stored
--          profile, its created_at as the event time, so Feast's newest row per item is the
--          item_features row.
-- Grain:   one row per item_profiles row.
SELECT
    item_id,
    created_at AS event_timestamp,
    created_at,
    profile_text,
    attributes::VARCHAR AS attributes,
    model,
    prompt_version,
    embedding::FLOAT[] AS embedding
FROM item_profiles
ORDER BY item_id, created_at;
