-- Purpose: cosine similarity between user and item profile embeddings for a candidate list,
--          the feature rankers use; as_of pins user profiles to a cut-off (no leakage).
-- Grain:   one row per candidate (user_id, item_id) pair.
-- Columns: the candidate table's columns, similarity (NULL where either profile is missing).
-- Usage:   SELECT * FROM user_item_similarity('candidates');
--          SELECT * FROM user_item_similarity_as_of('candidates', TIMESTAMP '1998-01-01');
--          'candidates' names a table or view with user_id and item_id columns.

CREATE OR REPLACE MACRO user_item_similarity(candidates) AS TABLE
SELECT c.*, array_cosine_similarity(u.embedding, i.embedding) AS similarity
FROM query_table(candidates) AS c
LEFT JOIN user_features AS u ON u.user_id = c.user_id::VARCHAR
LEFT JOIN item_features AS i ON i.item_id = c.item_id::VARCHAR;

CREATE OR REPLACE MACRO user_item_similarity_as_of(candidates, cutoff) AS TABLE
SELECT c.*, array_cosine_similarity(u.embedding, i.embedding) AS similarity
FROM query_table(candidates) AS c
LEFT JOIN user_features_as_of(cutoff) AS u ON u.user_id = c.user_id::VARCHAR
LEFT JOIN item_features AS i ON i.item_id = c.item_id::VARCHAR;
