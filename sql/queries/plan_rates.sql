-- Purpose: what one LLM call of a model has cost so far, for the planner (enrich/plan.py):
--          prompt and completion tokens and LLM seconds, for one prompt version and for the
--          model overall.
-- Grain:   two rows: scope 'prompt' (this model and prompt version), scope 'model' (any prompt).
-- Columns: scope, tokens_in, tokens_out, llm_seconds (sums over every online run on record;
--          a batch-mode run's LLM time is the provider's queue, not the model's), calls.
-- Parameters: $model (VARCHAR), $prompt_version (VARCHAR).

WITH wanted AS (SELECT $model::VARCHAR AS model, $prompt_version::VARCHAR AS prompt_version)
SELECT 'prompt' AS scope,
       sum(r.tokens_in)::DOUBLE AS tokens_in,
       sum(r.tokens_out)::DOUBLE AS tokens_out,
       sum(r.llm_seconds) AS llm_seconds,
       coalesce(sum(r.llm_calls), 0) AS calls
FROM runs AS r, wanted AS w
WHERE r.model = w.model AND r.prompt_version = w.prompt_version AND r.llm_calls > 0
  AND NOT coalesce(json_extract(r.settings, '$.batch')::BOOLEAN, false)
UNION ALL
SELECT 'model',
       sum(r.tokens_in)::DOUBLE,
       sum(r.tokens_out)::DOUBLE,
       sum(r.llm_seconds),
       coalesce(sum(r.llm_calls), 0)
FROM runs AS r, wanted AS w
WHERE r.model = w.model AND r.llm_calls > 0
  AND NOT coalesce(json_extract(r.settings, '$.batch')::BOOLEAN, false);
