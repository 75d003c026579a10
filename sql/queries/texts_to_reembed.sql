-- Purpose: the profile texts an embedder has no vector for yet (`enrich reembed`): neither in
--          the profile row it wrote nor in embedding_cache.
-- Grain:   one row per distinct profile text.
-- Columns: text_hash (sha256 of the text, as embedding_cache keys it), profile_text.
-- Params:  $embedder.
WITH texts AS (
    SELECT profile_text, embedding_model FROM item_profiles
    UNION ALL
    SELECT profile_text, embedding_model FROM user_profiles
),
own AS (SELECT DISTINCT profile_text FROM texts WHERE embedding_model = $embedder)
SELECT DISTINCT sha256(t.profile_text) AS text_hash, t.profile_text
FROM texts AS t
ANTI JOIN own USING (profile_text)
ANTI JOIN (SELECT text_hash FROM embedding_cache WHERE embedding_model = $embedder) AS c
  ON c.text_hash = sha256(t.profile_text)
ORDER BY text_hash;
