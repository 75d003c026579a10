-- Purpose: the k items whose profiles are nearest to one item's profile (cosine of embeddings).
-- Grain:   one row per neighbour.
-- Columns: item_id, similarity, profile_text.
-- Parameters: $item_id (VARCHAR), $k (INTEGER).

SELECT other.item_id,
       array_cosine_similarity(other.embedding, this.embedding) AS similarity,
       other.profile_text
FROM item_features AS this
JOIN item_features AS other ON other.item_id <> this.item_id
WHERE this.item_id = $item_id
ORDER BY similarity DESC
LIMIT $k;
