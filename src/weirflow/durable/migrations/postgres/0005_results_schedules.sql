-- results you can wait for: a job's dead letters and the traceback of its failure,
-- a failed step's traceback; and schedules (repeatable jobs)
ALTER TABLE wf_jobs ADD COLUMN dead_letters JSONB;
ALTER TABLE wf_jobs ADD COLUMN error_detail TEXT;
ALTER TABLE wf_steps ADD COLUMN traceback TEXT;

-- one row per schedule: each tick becomes one job, made with the idempotency key
-- 'schedule:<name>:<tick time>' in the transaction that moves next_at on
CREATE TABLE wf_schedules (
    name TEXT PRIMARY KEY,
    flow TEXT NOT NULL,
    inputs JSONB NOT NULL,
    queue TEXT NOT NULL,
    cron TEXT,
    every_s DOUBLE PRECISION,
    tz TEXT NOT NULL,
    catchup TEXT NOT NULL CHECK (catchup IN ('once', 'skip')),
    misfire_grace_s DOUBLE PRECISION NOT NULL,
    options JSONB NOT NULL,
    next_at DOUBLE PRECISION NOT NULL,
    last_at DOUBLE PRECISION,
    last_job_id TEXT,
    created_at DOUBLE PRECISION NOT NULL,
    CHECK ((cron IS NULL) != (every_s IS NULL))
);

CREATE INDEX wf_schedules_due ON wf_schedules (queue, next_at);
