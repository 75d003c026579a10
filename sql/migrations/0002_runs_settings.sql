-- Purpose: record each run's settings (concurrency, chunking, retries, budget) beside its counts,
--          so a ledger row says how the run was configured.
-- Grain:   runs: one row per run (unchanged).
-- Columns: runs.settings JSON (NULL for runs written before this migration).

ALTER TABLE runs ADD COLUMN IF NOT EXISTS settings JSON;
