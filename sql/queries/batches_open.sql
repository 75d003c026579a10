-- Purpose: the batches of one endpoint and model whose answers are not yet taken (preparing or
--          submitted): a run collects these before it submits anything (no request paid twice).
-- Grain:   one row per submission, oldest first.
-- Params:  $endpoint, $model.
SELECT submission_id, batch_id, input_file_id, status, n_requests, created_at, run_id
FROM llm_batches
WHERE endpoint = $endpoint AND model = $model AND status IN ('preparing', 'submitted')
ORDER BY created_at, submission_id;
