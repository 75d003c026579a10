-- Purpose: the item_features vectors of the items in the registered table enrich_wanted
--          (item_id, pos), in its order.
-- Grain:   one row per wanted item that has a profile.
SELECT w.item_id, f.embedding
FROM enrich_wanted AS w
JOIN item_features AS f USING (item_id)
ORDER BY w.pos;
