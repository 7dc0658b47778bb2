-- weirflow durable store, PostgreSQL: jobs, steps, events, rate-limit claims, a lock table.
-- Times are DOUBLE PRECISION seconds since the epoch; JSON columns are JSONB.

CREATE TABLE wf_jobs (
    id TEXT PRIMARY KEY,
    seq BIGSERIAL,
    flow TEXT NOT NULL,
    inputs JSONB NOT NULL,
    queue TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('queued', 'running', 'completed', 'failed', 'cancelled')),
    attempt INTEGER NOT NULL DEFAULT 0,
    runs INTEGER NOT NULL DEFAULT 0,
    max_attempts INTEGER NOT NULL,
    backoff JSONB NOT NULL,
    priority INTEGER NOT NULL DEFAULT 0,
    run_at DOUBLE PRECISION NOT NULL,
    idempotency_key TEXT,
    timeout_s DOUBLE PRECISION,
    worker_id TEXT,
    lease_expires_at DOUBLE PRECISION,
    stalls INTEGER NOT NULL DEFAULT 0,
    error TEXT,
    outputs JSONB,
    from_start BOOLEAN NOT NULL DEFAULT false,
    created_at DOUBLE PRECISION NOT NULL,
    started_at DOUBLE PRECISION,
    finished_at DOUBLE PRECISION,
    UNIQUE (queue, idempotency_key)
);

CREATE INDEX wf_jobs_ready ON wf_jobs (queue, priority DESC, run_at, seq) WHERE status = 'queued';
CREATE INDEX wf_jobs_status ON wf_jobs (queue, status);
CREATE INDEX wf_jobs_lease ON wf_jobs (lease_expires_at) WHERE status = 'running';
CREATE INDEX wf_jobs_worker ON wf_jobs (worker_id, status);
CREATE INDEX wf_jobs_finished ON wf_jobs (status, finished_at);

CREATE TABLE wf_steps (
    job_id TEXT NOT NULL REFERENCES wf_jobs (id) ON DELETE CASCADE,
    run INTEGER NOT NULL,
    routine TEXT NOT NULL,
    seq INTEGER NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('running', 'completed', 'failed')),
    attempt INTEGER NOT NULL,
    progress DOUBLE PRECISION NOT NULL DEFAULT 0,
    message TEXT NOT NULL DEFAULT '',
    started_at DOUBLE PRECISION,
    completed_at DOUBLE PRECISION,
    error TEXT,
    worker TEXT,
    PRIMARY KEY (job_id, run, routine, seq)
);

CREATE TABLE wf_events (
    id BIGSERIAL PRIMARY KEY,
    job_id TEXT REFERENCES wf_jobs (id) ON DELETE CASCADE,
    queue TEXT NOT NULL,
    kind TEXT NOT NULL,
    at DOUBLE PRECISION NOT NULL,
    data JSONB NOT NULL DEFAULT '{}'
);

CREATE INDEX wf_events_job ON wf_events (job_id);
CREATE INDEX wf_events_queue ON wf_events (queue, at);

-- one row per claim of a rate-limited queue, pruned past the window
CREATE TABLE wf_rate_claims (
    queue TEXT NOT NULL,
    claimed_at DOUBLE PRECISION NOT NULL
);

CREATE INDEX wf_rate_claims_queue ON wf_rate_claims (queue, claimed_at);

-- named leases (unused on PostgreSQL: the sweeper takes an advisory lock)
CREATE TABLE wf_locks (
    name TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    expires_at DOUBLE PRECISION NOT NULL
);
