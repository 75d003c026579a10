-- Purpose: failure memory (enrich/job.py): which of a run's requests failed validation before
--          and still wait. The n-th failure of a request waits $base_s * 2^(n-1) seconds, at most
--          $max_s; a request is the LLM cache key, so a changed input is a new request.
-- Grain:   one row per held request.
-- Columns: request_key, attempts (runs in which it failed validation), last_error, retry_at.
-- Parameters: $now (TIMESTAMP, UTC), $base_s (DOUBLE), $max_s (DOUBLE); relation `wanted`
--          (request_key) registered by the caller.

WITH failed AS (
    SELECT e.request_key,
           count(DISTINCT e.run_id) AS attempts,
           max(e.created_at) AS last_failed_at,
           arg_max(e.error, e.created_at) AS last_error
    FROM enrich_errors AS e
    SEMI JOIN wanted AS w ON e.request_key = w.request_key
    WHERE e.stage = 'validation'
    GROUP BY e.request_key
),
scheduled AS (
    SELECT request_key, attempts, last_error,
           last_failed_at + to_microseconds(
               (least($base_s * pow(2, attempts - 1), $max_s) * 1e6)::BIGINT) AS retry_at
    FROM failed
)
SELECT request_key, attempts, last_error, retry_at
FROM scheduled
WHERE retry_at > $now::TIMESTAMP;
