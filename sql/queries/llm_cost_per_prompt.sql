-- Purpose: what the LLM work cost, per model, kind and prompt version, over every run in the
--          store: the basis of "LLM calls / tokens / seconds per 1,000 entities".
-- Grain:   one row per (model, kind, prompt_version).
-- Columns: calls, tokens (in + out), llm_seconds, cost; entities = rows that needed an answer
--          and got one or had their request sent (cache hits, generated rows, rows failed by
--          the LLM, validation or embedding; = rows_in - rows_skipped once a run ends, less the
--          rows no request was sent for: held by the failure memory, empty input, over budget),
--          so re-runs that skipped or held everything do not dilute the figures, and a killed run
--          counts only the chunks it committed (its counters are written with each chunk).

WITH unasked AS (
    SELECT run_id, count(*) AS rows_unasked
    FROM enrich_errors
    WHERE stage IN ('held', 'input', 'budget')
    GROUP BY run_id
)
SELECT r.model,
       r.kind,
       r.prompt_version,
       sum(r.llm_calls)                 AS calls,
       sum(r.tokens_in + r.tokens_out)  AS tokens,
       sum(r.llm_seconds)               AS llm_seconds,
       sum(r.cost)                      AS cost,
       sum(r.cache_hits + r.rows_generated + r.rows_failed - coalesce(u.rows_unasked, 0))
                                        AS entities
FROM runs AS r
LEFT JOIN unasked AS u USING (run_id)
GROUP BY ALL
ORDER BY r.model, r.kind, r.prompt_version;
