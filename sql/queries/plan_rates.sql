-- Purpose: what one LLM call of a model has cost so far, for the planner (enrich/plan.py):
--          prompt and completion tokens and LLM seconds, for one prompt version and for the
--          model overall; and how many calls a request took (re-asks of answers that failed
--          validation, retries) in runs with the same number of re-asks allowed.
-- Grain:   two rows: scope 'prompt' (this model and prompt version), scope 'model' (any prompt).
-- Columns: scope, tokens_in, tokens_out, llm_seconds (sums over every online run on record;
--          a batch-mode run's LLM time is the provider's queue, not the model's), calls;
--          requests, requests_calls: first requests and all calls of the online runs that
--          recorded their first requests (runs.llm_requests) with $fix_attempts re-asks allowed;
--          scope 'prompt' only (0 for 'model': another prompt's failure rate says little of
--          this one's).
-- Parameters: $model (VARCHAR), $prompt_version (VARCHAR), $fix_attempts (INTEGER).

WITH wanted AS (SELECT $model::VARCHAR AS model, $prompt_version::VARCHAR AS prompt_version),
online AS (
    SELECT r.*,
           r.model = w.model AND r.prompt_version = w.prompt_version AS same_prompt,
           r.llm_requests > 0
               AND json_extract(r.settings, '$.fix_attempts')::INTEGER = $fix_attempts::INTEGER
               AS counts_requests
    FROM runs AS r, wanted AS w
    WHERE r.model = w.model AND r.llm_calls > 0
      AND NOT coalesce(json_extract(r.settings, '$.batch')::BOOLEAN, false)
)
SELECT 'prompt' AS scope,
       sum(tokens_in)::DOUBLE AS tokens_in,
       sum(tokens_out)::DOUBLE AS tokens_out,
       sum(llm_seconds) AS llm_seconds,
       coalesce(sum(llm_calls), 0) AS calls,
       coalesce(sum(llm_requests) FILTER (counts_requests), 0) AS requests,
       coalesce(sum(llm_calls) FILTER (counts_requests), 0) AS requests_calls
FROM online
WHERE same_prompt
UNION ALL
SELECT 'model',
       sum(tokens_in)::DOUBLE,
       sum(tokens_out)::DOUBLE,
       sum(llm_seconds),
       coalesce(sum(llm_calls), 0),
       0,  -- re-asks are planned from this prompt's runs only
       0
FROM online;
