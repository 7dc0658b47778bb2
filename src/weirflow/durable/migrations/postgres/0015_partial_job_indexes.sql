-- Every status change of a job is a new row version, with an entry in each index of
-- wf_jobs whose predicate it meets. The worker index is only read for running jobs (recover,
-- renew, release, complete, fail: status = 'running' AND worker_id = ...) and the finished
-- index only for finished ones (retention): partial, a claim no longer writes an entry in the
-- finished index nor an outcome one in the worker index.
DROP INDEX IF EXISTS wf_jobs_worker;
CREATE INDEX wf_jobs_worker ON wf_jobs (worker_id) WHERE status = 'running';
DROP INDEX IF EXISTS wf_jobs_finished;
CREATE INDEX wf_jobs_finished ON wf_jobs (status, finished_at)
    WHERE status IN ('completed', 'failed', 'cancelled');
