-- results you can wait for: a job's dead letters and the traceback of its failure,
-- a failed step's traceback; and schedules (repeatable jobs)
ALTER TABLE wf_jobs ADD COLUMN dead_letters TEXT;
ALTER TABLE wf_jobs ADD COLUMN error_detail TEXT;
ALTER TABLE wf_steps ADD COLUMN traceback TEXT;

-- one row per schedule: each tick becomes one job, made with the idempotency key
-- "schedule:<name>:<tick time>" in the transaction that moves next_at on
CREATE TABLE wf_schedules (
    name TEXT PRIMARY KEY,
    flow TEXT NOT NULL,
    inputs TEXT NOT NULL,
    queue TEXT NOT NULL,
    cron TEXT,
    every_s REAL,
    tz TEXT NOT NULL,
    catchup TEXT NOT NULL CHECK (catchup IN ('once', 'skip')),
    misfire_grace_s REAL NOT NULL,
    options TEXT NOT NULL,
    next_at REAL NOT NULL,
    last_at REAL,
    last_job_id TEXT,
    created_at REAL NOT NULL,
    CHECK ((cron IS NULL) != (every_s IS NULL))
);

CREATE INDEX wf_schedules_due ON wf_schedules (queue, next_at);
