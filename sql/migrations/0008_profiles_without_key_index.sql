-- Purpose: the profile tables without their PRIMARY KEY. DuckDB keeps a key's ART index wholly
--          in memory (it cannot spill) and loads it for every write to the table: at 10M items
--          it was 750 MB, written 10,000 rows at a time took 3.3-5.2 s a transaction (0.85 s of
--          it the commit) and the process's peak memory grew with the catalogue. Without it the
--          same write takes 1.4 s and memory stays flat. One row per key is kept by
--          Store.upsert_profiles and checked by the audit profiles_duplicate_keys.sql.
-- Grain:   as before; every stored row is carried over unchanged (no LLM call, no re-embedding).
-- Params:  the placeholder line below (profile_tables in braces) becomes sql/tables/profiles.sql
--          for the store's embedding dimension; the runner skips this migration when the store
--          has no profile tables yet (they are then created from that file, without the key).
ALTER TABLE item_profiles RENAME TO item_profiles_v7;
ALTER TABLE user_profiles RENAME TO user_profiles_v7;
{profile_tables}
INSERT INTO item_profiles BY NAME SELECT * FROM item_profiles_v7;
INSERT INTO user_profiles BY NAME SELECT * FROM user_profiles_v7;
DROP TABLE item_profiles_v7;
DROP TABLE user_profiles_v7;
