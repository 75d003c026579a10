-- Purpose: audit — embeddings whose length differs from the store's embedding_dim (possible in
--          tables written by other tools, e.g. the embedding cache or an external loader).
-- Grain:   one row per offending cached embedding.
-- Columns: text_hash, embedding_model, dims, expected.

SELECT c.text_hash, c.embedding_model, len(c.embedding) AS dims, m.value::INTEGER AS expected
FROM embedding_cache AS c
JOIN store_meta AS m ON m.key = 'embedding_dim'
JOIN (SELECT DISTINCT embedding_model FROM item_profiles
      UNION SELECT DISTINCT embedding_model FROM user_profiles) AS used USING (embedding_model)
WHERE len(c.embedding) <> m.value::INTEGER;
