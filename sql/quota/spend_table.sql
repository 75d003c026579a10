-- Purpose: the budget's spend counter (enrich/quota.py), in the shared quota backend (a SQLite
--          file or PostgreSQL) — not in the DuckDB store: every process of a run writes it.
-- Grain:   one row per budget scope (a run, e.g. one night of the nightly flow).
-- Columns: scope, requests answered, tokens (prompt + completion) and cost spent so far.
CREATE TABLE IF NOT EXISTS enrich_spend (
    scope    VARCHAR PRIMARY KEY,
    requests BIGINT NOT NULL,
    tokens   BIGINT NOT NULL,
    cost     DOUBLE PRECISION NOT NULL
)
