-- Purpose: the user profiles a Feast repository serves (enrich export --feast): every stored
--          profile, its as_of as the event time and created_at to break ties, so Feast's
--          point-in-time join for (user, t) is user_features_as_of(t).
-- Grain:   one row per user_profiles row.
SELECT
    user_id,
    as_of AS event_timestamp,
    created_at,
    profile_text,
    attributes::VARCHAR AS attributes,
    n_interactions::BIGINT AS n_interactions,
    is_cold,
    model,
    prompt_version,
    embedding::FLOAT[] AS embedding
FROM user_profiles
ORDER BY user_id, as_of, created_at;
