-- Purpose: what the LLM work cost, per model, kind and prompt version, over every run in the
--          store: the basis of "LLM calls / tokens / seconds per 1,000 entities".
-- Grain:   one row per (model, kind, prompt_version).
-- Columns: calls, tokens (in + out), llm_seconds, cost; entities = rows that needed an answer
--          (rows_in - rows_skipped: cache hits, generated and failed rows), so re-runs that
--          skipped everything do not dilute the figures.

SELECT model,
       kind,
       prompt_version,
       sum(llm_calls)                 AS calls,
       sum(tokens_in + tokens_out)    AS tokens,
       sum(llm_seconds)               AS llm_seconds,
       sum(cost)                      AS cost,
       sum(rows_in - rows_skipped)    AS entities
FROM runs
GROUP BY ALL
ORDER BY model, kind, prompt_version;
