-- Purpose: what the neighbour index (enrich.neighbours) holds: each item's current profile and
--          its version; a re-profiled item (new text, model, prompt or embedder) has a new
--          version, so its vector is replaced.
-- Grain:   one row per item_id (item_features).
SELECT
    item_id,
    strftime(created_at, '%Y-%m-%dT%H:%M:%S.%f') || ' ' || embedding_model AS version,
    embedding_model
FROM item_features;
