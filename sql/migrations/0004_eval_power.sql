-- Purpose: user-level statistics in eval_runs. n_users now counts distinct users; n_rows the
--          (seed, window, user) rows behind a mean; mde is the minimum detectable effect of
--          delta_vs_2 at 80% power and a two-sided 5% test (2.80 x its cluster-robust standard
--          error, users as clusters). Intervals written from this version on resample users.
--          delta_vs_0 (with delta_vs_0_low/high) is the difference to rung 0, ALS alone: does
--          the re-ranker beat its own candidates?
-- Grain:   unchanged: (eval_id, rung, segment, metric).
-- Columns: n_rows BIGINT, mde DOUBLE, delta_vs_0, delta_vs_0_low, delta_vs_0_high DOUBLE (NULL
--          for rows written before, and for side tables).

ALTER TABLE eval_runs ADD COLUMN IF NOT EXISTS n_rows BIGINT;
ALTER TABLE eval_runs ADD COLUMN IF NOT EXISTS mde DOUBLE;
ALTER TABLE eval_runs ADD COLUMN IF NOT EXISTS delta_vs_0 DOUBLE;
ALTER TABLE eval_runs ADD COLUMN IF NOT EXISTS delta_vs_0_low DOUBLE;
ALTER TABLE eval_runs ADD COLUMN IF NOT EXISTS delta_vs_0_high DOUBLE;
