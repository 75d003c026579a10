-- Purpose: what keeps failing (`enrich errors`): each entity whose newest record is an error
--          rather than a profile, with why, how often its request was tried, and when it is
--          asked again.
-- Grain:   one row per (kind, entity_id) still failing.
-- Columns: kind, entity_id, stage (of the newest error), error (a held row: the validation
--          error that holds it), attempts (runs in which its
--          request failed validation; 0 for other stages), first_failed_at, last_failed_at,
--          retry_at (validation failures: when the backoff lets it be asked again; else NULL:
--          input and budget errors and transient LLM errors are retried by the next run).
-- Parameters: $base_s (DOUBLE), $max_s (DOUBLE); relation `profiled` (kind, entity_id, at:
--          the newest profile of each entity) registered by the caller.

WITH newest AS (
    SELECT kind, entity_id, stage, error, request_key, created_at
    FROM enrich_errors
    QUALIFY row_number() OVER (
        PARTITION BY kind, entity_id ORDER BY created_at DESC, stage = 'held'
    ) = 1
),
history AS (
    SELECT kind, entity_id, min(created_at) AS first_failed_at
    FROM enrich_errors
    GROUP BY kind, entity_id
),
asked AS (
    SELECT request_key, count(DISTINCT run_id) AS attempts, max(created_at) AS last_asked_at,
           arg_max(error, created_at) AS last_error
    FROM enrich_errors
    WHERE stage = 'validation' AND request_key IS NOT NULL
    GROUP BY request_key
)
SELECT n.kind, n.entity_id, n.stage,
       CASE WHEN n.stage = 'held' THEN a.last_error ELSE n.error END AS error,
       coalesce(a.attempts, 0) AS attempts,
       h.first_failed_at,
       n.created_at AS last_failed_at,
       a.last_asked_at + to_microseconds(
           (least($base_s * pow(2, a.attempts - 1), $max_s) * 1e6)::BIGINT) AS retry_at
FROM newest AS n
JOIN history AS h USING (kind, entity_id)
LEFT JOIN asked AS a ON n.request_key = a.request_key AND n.stage IN ('validation', 'held')
LEFT JOIN profiled AS p ON p.kind = n.kind AND p.entity_id = n.entity_id
WHERE p.at IS NULL OR p.at < n.created_at
ORDER BY attempts DESC, n.kind, n.entity_id;
