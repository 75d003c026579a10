-- Purpose: what the LLM work cost, per model, kind and prompt version, over every run in the
--          store: the basis of "LLM calls / tokens / seconds per 1,000 entities".
-- Grain:   one row per (model, kind, prompt_version).
-- Columns: calls, tokens (in + out), llm_seconds, cost; entities = rows that needed an answer
--          (cache hits, generated and failed rows; = rows_in - rows_skipped once a run ends), so
--          re-runs that skipped everything do not dilute the figures, and a killed run counts
--          only the chunks it committed (its counters are written with each chunk).

SELECT model,
       kind,
       prompt_version,
       sum(llm_calls)                 AS calls,
       sum(tokens_in + tokens_out)    AS tokens,
       sum(llm_seconds)               AS llm_seconds,
       sum(cost)                      AS cost,
       sum(cache_hits + rows_generated + rows_failed) AS entities
FROM runs
GROUP BY ALL
ORDER BY model, kind, prompt_version;
