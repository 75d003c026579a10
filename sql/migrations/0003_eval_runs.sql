-- Purpose: results of `enrich evaluate`: one row per evaluation, rung, segment and metric, so
--          the lift of each enriched feature can be tracked across models and prompt versions.
-- Grain:   eval_runs: (eval_id, rung, segment, metric). The side tables use rung for the
--          system compared: segment 'cold items: placement' (ALS with each cold-item map vs.
--          popularity) and 'new users' (users with no history; no delta_vs_2 there).
-- Columns: value = mean over (seed, user) with its 95% bootstrap interval (ci_low, ci_high);
--          delta_vs_2 = paired difference to rung 2 (raw text, no LLM) with delta_low/high;
--          model / prompt_version = the LLM and item prompt the features came from; config = the
--          evaluation's settings (JSON); seconds = wall time of the whole evaluation.

CREATE TABLE IF NOT EXISTS eval_runs (
    eval_id        VARCHAR NOT NULL,
    created_at     TIMESTAMP NOT NULL,
    dataset        VARCHAR NOT NULL,
    rung           VARCHAR NOT NULL,
    segment        VARCHAR NOT NULL,
    metric         VARCHAR NOT NULL,
    value          DOUBLE,
    ci_low         DOUBLE,
    ci_high        DOUBLE,
    delta_vs_2     DOUBLE,
    delta_low      DOUBLE,
    delta_high     DOUBLE,
    n_users        INTEGER NOT NULL,
    model          VARCHAR NOT NULL,
    prompt_version VARCHAR NOT NULL,
    embedding_model VARCHAR NOT NULL,
    config         JSON NOT NULL,
    seconds        DOUBLE,
    PRIMARY KEY (eval_id, rung, segment, metric)
);
