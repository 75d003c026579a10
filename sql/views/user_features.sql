-- Purpose: the user features rankers read, without leakage: the newest profile per user, or the
--          newest one whose as_of is at or before a cut-off (built only from data up to then).
-- Grain:   one row per user_id.
-- Columns: those of user_profiles.

CREATE OR REPLACE VIEW user_features AS
SELECT *
FROM user_profiles
QUALIFY row_number() OVER (PARTITION BY user_id ORDER BY as_of DESC, created_at DESC) = 1;

CREATE OR REPLACE MACRO user_features_as_of(cutoff) AS TABLE
SELECT *
FROM user_profiles
WHERE as_of <= cutoff
QUALIFY row_number() OVER (PARTITION BY user_id ORDER BY as_of DESC, created_at DESC) = 1;
