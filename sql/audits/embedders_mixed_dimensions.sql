-- Purpose: audit — an embedder whose vectors do not all have one length (written by another
--          tool, or two different models recorded under one name): its similarities are wrong.
-- Grain:   one row per offending embedder.
-- Columns: embedding_model, dims (the lengths found).

SELECT embedding_model, dims
FROM embedders
WHERE len(dims) > 1;
