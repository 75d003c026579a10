-- Purpose: the item features rankers read: the newest profile per item, or one model/prompt pinned.
-- Grain:   item_features: one row per item_id; item_features_for(model, prompt_version): one row
--          per item_id profiled with that model and prompt version.
-- Columns: those of item_profiles.

CREATE OR REPLACE VIEW item_features AS
SELECT *
FROM item_profiles
QUALIFY row_number() OVER (
    PARTITION BY item_id ORDER BY created_at DESC, model, prompt_version
) = 1;

CREATE OR REPLACE MACRO item_features_for(pinned_model, pinned_prompt_version) AS TABLE
SELECT *
FROM item_profiles
WHERE model = pinned_model AND prompt_version = pinned_prompt_version;
