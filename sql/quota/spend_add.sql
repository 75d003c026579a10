-- Purpose: add one answered request's spend to its scope (atomic upsert; SQLite and PostgreSQL).
-- Parameters: :scope, :tokens, :cost.
INSERT INTO enrich_spend (scope, requests, tokens, cost) VALUES (:scope, 1, :tokens, :cost)
ON CONFLICT (scope) DO UPDATE SET
    requests = enrich_spend.requests + 1,
    tokens = enrich_spend.tokens + excluded.tokens,
    cost = enrich_spend.cost + excluded.cost
