-- Purpose: failure memory, and unknown prices. An answer that failed validation with one
--          request (the same input, model, decoding, prompt version and schema: the LLM cache
--          key) is not asked again on every run: it waits by a backoff schedule
--          (sql/queries/held_requests.sql). The key tells a retry of the same request from one
--          whose input changed (asked at once).
-- Grain:   unchanged: one enrich_errors row per failed entity per run.
-- Columns: request_key: the cache key of the request that failed (NULL for input and budget
--          errors, which made no request).

ALTER TABLE enrich_errors ADD COLUMN IF NOT EXISTS request_key VARCHAR;

-- runs.cost: NULL when the model's price is unknown (enrich/prices.py), never a made-up 0.
ALTER TABLE runs ALTER COLUMN cost DROP NOT NULL;
ALTER TABLE runs ALTER COLUMN cost DROP DEFAULT;
