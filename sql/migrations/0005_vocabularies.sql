-- Purpose: controlled vocabularies induced from a catalogue (enrich.vocab.induce_vocabulary),
--          stored so that every night's profiles choose from the same labels. A vocabulary is
--          part of the prompt version of the schema that uses it (its labels are in the schema).
-- Grain:   one row per (name, version); version is a hash of the name and the labels. The
--          induction pass also writes a `runs` row of kind 'vocabulary' (its spend on record).
-- Columns: labels in order, how often each was seen in the sample (empty if not induced), how
--          they were made (model, prompt version, sample size, seed, k = labels asked for, 0 if
--          given rather than induced) and what the induction pass cost.

CREATE TABLE IF NOT EXISTS vocabularies (
    name            VARCHAR NOT NULL,
    version         VARCHAR NOT NULL,
    labels          VARCHAR[] NOT NULL,
    counts          INTEGER[] NOT NULL,
    model           VARCHAR NOT NULL,
    prompt_version  VARCHAR NOT NULL,
    sample_size     INTEGER NOT NULL,
    seed            INTEGER NOT NULL,
    k               INTEGER NOT NULL,
    llm_calls       INTEGER NOT NULL,
    tokens_in       BIGINT NOT NULL,
    tokens_out      BIGINT NOT NULL,
    created_at      TIMESTAMP NOT NULL,
    PRIMARY KEY (name, version)
);
