-- Purpose: audit — user profiles created before the newest interaction they claim to have used
--          (as_of after created_at means the as_of is wrong, and point-in-time queries would leak).
-- Grain:   one row per offending profile.
-- Columns: user_id, model, prompt_version, as_of, created_at.

SELECT user_id, model, prompt_version, as_of, created_at
FROM user_profiles
WHERE as_of > created_at + INTERVAL 1 DAY;
