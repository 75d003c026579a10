-- Purpose: the current profile vector of each user in $ids (user_features).
-- Grain:   one row per listed user that has a profile, by user_id.
SELECT user_id, embedding
FROM user_features
WHERE list_contains($ids, user_id)
ORDER BY user_id;
