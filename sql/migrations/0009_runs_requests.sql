-- Purpose: first requests beside calls, so the planner can count re-asks. runs.llm_calls counts
--          every request sent, re-asks of answers that failed validation included; a plan
--          counts distinct requests. llm_requests is how many of a run's calls were first
--          requests, so llm_calls / llm_requests is the calls a request costs with this model
--          and prompt (sql/queries/plan_rates.sql); ml-latest-small's items took 1.26.
-- Grain:   unchanged: one row per run.
-- Columns: llm_requests: distinct requests sent once each (NULL: a run recorded before this
--          column, left out of the re-ask rate).

ALTER TABLE runs ADD COLUMN IF NOT EXISTS llm_requests BIGINT;
