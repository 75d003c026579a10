-- Purpose: audit — profiles whose text or attributes are empty.
-- Grain:   one row per offending profile.
-- Columns: kind, entity_id, model, prompt_version.

SELECT 'items' AS kind, item_id AS entity_id, model, prompt_version
FROM item_profiles
WHERE trim(coalesce(profile_text, '')) = '' OR attributes IS NULL OR attributes::VARCHAR = '{}'
UNION ALL
SELECT 'users', user_id, model, prompt_version
FROM user_profiles
WHERE trim(coalesce(profile_text, '')) = '' OR attributes IS NULL OR attributes::VARCHAR = '{}';
