-- Index entries per job (no idempotency key, no node): a status change is never a HOT update
-- (status is in the partial indexes' predicates), so each of a job's three row versions
-- (queued, running, finished) writes one entry in every index whose predicate it meets.
-- Before: 13 (the key 3, the (queue, idempotency_key) constraint 3, queue/status 3, ready 1,
-- lease 1, worker 1, finished 1). After: 6 (the key 3, ready 1, running 1, finished 1).
-- - the idempotency key is unique per queue among the jobs that have one: a partial unique
--   index (inserts say ON CONFLICT (queue, idempotency_key) WHERE idempotency_key IS NOT NULL);
-- - one index of the running jobs by worker and lease serves the worker's own look-ups
--   (recover, release, renew) and the stalled scan (a scan of the running jobs alone);
-- - the (queue, status) index goes: a listing by status reads the partial index of that
--   status (ready, running, finished), the queue counts read the whole table anyway.
ALTER TABLE wf_jobs DROP CONSTRAINT IF EXISTS wf_jobs_queue_idempotency_key_key;
CREATE UNIQUE INDEX wf_jobs_idempotency ON wf_jobs (queue, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
DROP INDEX IF EXISTS wf_jobs_status;
DROP INDEX IF EXISTS wf_jobs_lease;
DROP INDEX IF EXISTS wf_jobs_worker;
CREATE INDEX wf_jobs_running ON wf_jobs (worker_id, lease_expires_at) WHERE status = 'running';
