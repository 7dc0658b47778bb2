-- weirflow durable store, SQLite: jobs, steps, events, rate-limit claims, sweeper lease.
-- Times are REAL seconds since the epoch; JSON columns are TEXT.

CREATE TABLE wf_jobs (
    id TEXT PRIMARY KEY,
    flow TEXT NOT NULL,
    inputs TEXT NOT NULL,
    queue TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('queued', 'running', 'completed', 'failed', 'cancelled')),
    attempt INTEGER NOT NULL DEFAULT 0,
    runs INTEGER NOT NULL DEFAULT 0,
    max_attempts INTEGER NOT NULL,
    backoff TEXT NOT NULL,
    priority INTEGER NOT NULL DEFAULT 0,
    run_at REAL NOT NULL,
    idempotency_key TEXT,
    timeout_s REAL,
    worker_id TEXT,
    lease_expires_at REAL,
    stalls INTEGER NOT NULL DEFAULT 0,
    error TEXT,
    outputs TEXT,
    from_start INTEGER NOT NULL DEFAULT 0,
    created_at REAL NOT NULL,
    started_at REAL,
    finished_at REAL,
    UNIQUE (queue, idempotency_key)
);

CREATE INDEX wf_jobs_ready ON wf_jobs (queue, status, priority DESC, run_at);
CREATE INDEX wf_jobs_lease ON wf_jobs (status, lease_expires_at);
CREATE INDEX wf_jobs_worker ON wf_jobs (worker_id, status);
CREATE INDEX wf_jobs_finished ON wf_jobs (status, finished_at);

CREATE TABLE wf_steps (
    job_id TEXT NOT NULL REFERENCES wf_jobs (id) ON DELETE CASCADE,
    run INTEGER NOT NULL,
    routine TEXT NOT NULL,
    seq INTEGER NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('running', 'completed', 'failed')),
    attempt INTEGER NOT NULL,
    progress REAL NOT NULL DEFAULT 0,
    message TEXT NOT NULL DEFAULT '',
    started_at REAL,
    completed_at REAL,
    error TEXT,
    worker TEXT,
    PRIMARY KEY (job_id, run, routine, seq)
);

CREATE TABLE wf_events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id TEXT REFERENCES wf_jobs (id) ON DELETE CASCADE,
    queue TEXT NOT NULL,
    kind TEXT NOT NULL,
    at REAL NOT NULL,
    data TEXT NOT NULL DEFAULT '{}'
);

CREATE INDEX wf_events_job ON wf_events (job_id);
CREATE INDEX wf_events_queue ON wf_events (queue, at);

-- one row per claim of a rate-limited queue, pruned past the window
CREATE TABLE wf_rate_claims (
    queue TEXT NOT NULL,
    claimed_at REAL NOT NULL
);

CREATE INDEX wf_rate_claims_queue ON wf_rate_claims (queue, claimed_at);

-- named leases: the sweeper holds 'sweeper' while it runs
CREATE TABLE wf_locks (
    name TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    expires_at REAL NOT NULL
);
