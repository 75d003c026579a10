-- Purpose: what profiling with one model and prompt version has cost so far, over every run.
-- Grain:   one row.
-- Columns: llm_calls, tokens_in, tokens_out, llm_seconds (sums over the runs on record).
-- Parameters: $kind ('items' or 'users'), $model (VARCHAR), $prompt_version (VARCHAR).

SELECT coalesce(sum(llm_calls), 0) AS llm_calls,
       coalesce(sum(tokens_in), 0) AS tokens_in,
       coalesce(sum(tokens_out), 0) AS tokens_out,
       coalesce(sum(llm_seconds), 0) AS llm_seconds
FROM runs
WHERE kind = $kind AND model = $model AND prompt_version = $prompt_version;
