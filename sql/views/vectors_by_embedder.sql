-- Purpose: several embedders side by side. A profile's vector under the embedder that wrote it
--          lives in its row; vectors under other embedders (`enrich reembed`) live in
--          embedding_cache, keyed by the profile text's sha256 and the embedder. These views put
--          them together, so a store keeps every embedder's vectors without regenerating text.
-- Grain:   item_vectors: one row per (item profile row, embedder); user_vectors: one row per
--          (user profile row, embedder); embedders: one row per embedder;
--          item_features_with / user_features_with(_as_of): one row per entity, as
--          item_features / user_features(_as_of), with `embedding` the chosen embedder's vector;
--          user_item_similarity_with(_as_of): one row per candidate pair.
-- Columns: embedding is FLOAT[] (dimensions differ between embedders); embedders.dims lists
--          the lengths found (more than one is an audit failure); embedder := NULL picks the
--          newest embedder (the one whose vectors were written last).
-- Usage:   SELECT * FROM item_features_with(embedder := 'bge-small-en-v1.5');
--          SELECT * FROM user_item_similarity_with('candidates', embedder := 'bge-small-en-v1.5');

CREATE OR REPLACE VIEW item_vectors AS
SELECT p.item_id, p.model, p.prompt_version, p.input_hash, p.embedding_model,
       p.embedding::FLOAT[] AS embedding, p.created_at
FROM item_profiles AS p
UNION ALL
SELECT p.item_id, p.model, p.prompt_version, p.input_hash, c.embedding_model, c.embedding,
       c.created_at
FROM item_profiles AS p
JOIN embedding_cache AS c
  ON c.text_hash = sha256(p.profile_text) AND c.embedding_model <> p.embedding_model;

CREATE OR REPLACE VIEW user_vectors AS
SELECT p.user_id, p.model, p.prompt_version, p.as_of, p.input_hash, p.embedding_model,
       p.embedding::FLOAT[] AS embedding, p.created_at
FROM user_profiles AS p
UNION ALL
SELECT p.user_id, p.model, p.prompt_version, p.as_of, p.input_hash, c.embedding_model,
       c.embedding, c.created_at
FROM user_profiles AS p
JOIN embedding_cache AS c
  ON c.text_hash = sha256(p.profile_text) AND c.embedding_model <> p.embedding_model;

CREATE OR REPLACE VIEW embedders AS
SELECT embedding_model,
       list_sort(list_distinct(list(len(embedding)))) AS dims,
       count(*) FILTER (WHERE kind = 'items') AS item_vectors,
       count(*) FILTER (WHERE kind = 'users') AS user_vectors,
       max(created_at) AS newest
FROM (
    SELECT 'items' AS kind, embedding_model, embedding, created_at FROM item_vectors
    UNION ALL
    SELECT 'users', embedding_model, embedding, created_at FROM user_vectors
)
GROUP BY embedding_model;

CREATE OR REPLACE MACRO newest_embedder() AS (
    SELECT embedding_model FROM embedders ORDER BY newest DESC, embedding_model LIMIT 1
);

CREATE OR REPLACE MACRO item_features_with(embedder := NULL) AS TABLE
SELECT f.* EXCLUDE (embedding, embedding_model), v.embedding_model, v.embedding
FROM item_features AS f
JOIN item_vectors AS v USING (item_id, model, prompt_version)
WHERE v.embedding_model = coalesce(embedder, newest_embedder());

CREATE OR REPLACE MACRO user_features_with(embedder := NULL) AS TABLE
SELECT f.* EXCLUDE (embedding, embedding_model), v.embedding_model, v.embedding
FROM user_features AS f
JOIN user_vectors AS v USING (user_id, model, prompt_version, as_of)
WHERE v.embedding_model = coalesce(embedder, newest_embedder());

CREATE OR REPLACE MACRO user_features_as_of_with(cutoff, embedder := NULL) AS TABLE
SELECT f.* EXCLUDE (embedding, embedding_model), v.embedding_model, v.embedding
FROM user_features_as_of(cutoff) AS f
JOIN user_vectors AS v USING (user_id, model, prompt_version, as_of)
WHERE v.embedding_model = coalesce(embedder, newest_embedder());

CREATE OR REPLACE MACRO user_item_similarity_with(candidates, embedder := NULL) AS TABLE
SELECT c.*, list_cosine_similarity(u.embedding, i.embedding) AS similarity
FROM query_table(candidates) AS c
LEFT JOIN user_features_with(embedder := embedder) AS u ON u.user_id = c.user_id::VARCHAR
LEFT JOIN item_features_with(embedder := embedder) AS i ON i.item_id = c.item_id::VARCHAR;

CREATE OR REPLACE MACRO user_item_similarity_as_of_with(candidates, cutoff, embedder := NULL)
AS TABLE
SELECT c.*, list_cosine_similarity(u.embedding, i.embedding) AS similarity
FROM query_table(candidates) AS c
LEFT JOIN user_features_as_of_with(cutoff, embedder := embedder) AS u
  ON u.user_id = c.user_id::VARCHAR
LEFT JOIN item_features_with(embedder := embedder) AS i ON i.item_id = c.item_id::VARCHAR;
