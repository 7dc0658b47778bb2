-- the durable journal: each job's records (JSON text) in the order appended
CREATE TABLE wf_journal (
    pos INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id TEXT NOT NULL REFERENCES wf_jobs (id) ON DELETE CASCADE,
    record TEXT NOT NULL
);

CREATE INDEX wf_journal_job ON wf_journal (job_id, pos);
