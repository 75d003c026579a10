-- Purpose: the feature tables: one LLM-written profile per entity, model and prompt version.
-- Grain:   item_profiles: (item_id, model, prompt_version);
--          user_profiles: (user_id, model, prompt_version, as_of).
-- Columns: ids as VARCHAR (cast yours to join); input_hash = sha256 of the text the LLM read;
--          attributes = the validated structured answer (JSON); embedding = L2-normalized
--          FLOAT[{dim}] of profile_text; as_of = time of the newest interaction a user profile used.
-- {dim} is the store's embedding dimension, fixed when the store is first written.
-- Keys: one row per grain, kept by Store.upsert_profiles (the only writer: it refuses a batch
--       with a key twice, updates changed rows, inserts the rest) and checked by the audit
--       profiles_duplicate_keys.sql. No PRIMARY KEY: DuckDB holds a key's ART index wholly in
--       memory and loads it for every write (750 MB at 10M items; see migration 0008).

CREATE TABLE IF NOT EXISTS item_profiles (
    item_id         VARCHAR NOT NULL,
    model           VARCHAR NOT NULL,
    prompt_version  VARCHAR NOT NULL,
    input_hash      VARCHAR NOT NULL,
    profile_text    VARCHAR NOT NULL,
    attributes      JSON NOT NULL,
    embedding       FLOAT[{dim}] NOT NULL,
    embedding_model VARCHAR NOT NULL,
    run_id          VARCHAR NOT NULL,
    created_at      TIMESTAMP NOT NULL
);

CREATE TABLE IF NOT EXISTS user_profiles (
    user_id         VARCHAR NOT NULL,
    model           VARCHAR NOT NULL,
    prompt_version  VARCHAR NOT NULL,
    as_of           TIMESTAMP NOT NULL,
    input_hash      VARCHAR NOT NULL,
    n_interactions  INTEGER NOT NULL,
    is_cold         BOOLEAN NOT NULL,
    profile_text    VARCHAR NOT NULL,
    attributes      JSON NOT NULL,
    embedding       FLOAT[{dim}] NOT NULL,
    embedding_model VARCHAR NOT NULL,
    run_id          VARCHAR NOT NULL,
    created_at      TIMESTAMP NOT NULL
);
