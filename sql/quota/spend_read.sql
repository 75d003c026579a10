-- Purpose: what a budget scope has spent so far (every process sharing it).
-- Parameters: :scope.
SELECT tokens, cost FROM enrich_spend WHERE scope = :scope
