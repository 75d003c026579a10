-- Purpose: the batch manifest. Every batch submitted to a provider's Batches API (OpenAI's, or
--          a server that implements it: vLLM, a local one) is recorded before it is created, so
--          a killed process or the next nightly run collects it instead of paying for it again.
-- Grain:   llm_batches: one row per submission (one input file, one provider batch);
--          llm_batch_requests: one row per request of a submission (custom_id = LLM cache key).
-- Columns: submission_id: ours, sent as the batch's metadata (a batch created by a process
--          killed before it recorded the batch id is found again by it); endpoint: the
--          provider's base URL (never a key); status: preparing (recorded, not yet created),
--          submitted, then the provider's end state once its answers are taken (completed,
--          failed, expired, cancelled), or abandoned (never created: its requests go in a new
--          batch).
--          runs.status gains 'pending': some rows wait in a batch not yet finished (recorded in
--          enrich_errors with stage 'pending'; the next run collects them).

CREATE TABLE IF NOT EXISTS llm_batches (
    submission_id  VARCHAR PRIMARY KEY,
    endpoint       VARCHAR NOT NULL,
    model          VARCHAR NOT NULL,
    prompt_version VARCHAR NOT NULL,
    input_file_id  VARCHAR,
    batch_id       VARCHAR,
    status         VARCHAR NOT NULL,
    n_requests     INTEGER NOT NULL,
    n_bytes        BIGINT NOT NULL,
    n_answered     INTEGER,
    n_failed       INTEGER,
    created_at     TIMESTAMP NOT NULL,
    submitted_at   TIMESTAMP,
    collected_at   TIMESTAMP,
    run_id         VARCHAR,           -- the run that submitted it
    error          VARCHAR
);

CREATE TABLE IF NOT EXISTS llm_batch_requests (
    submission_id VARCHAR NOT NULL,
    request_key   VARCHAR NOT NULL,
    PRIMARY KEY (submission_id, request_key)
);
