-- One step row per job, routine and seq: a re-run of a step (after a crash or a
-- retry) updates its row with the next attempt. 'interrupted': the step's worker
-- died, lost the job or gave it back. Of the old per-run rows the latest is kept.
-- (Numbered after 0005, whose traceback column the rebuilt table keeps.)
CREATE TABLE wf_steps_new (
    job_id TEXT NOT NULL REFERENCES wf_jobs (id) ON DELETE CASCADE,
    run INTEGER NOT NULL,
    routine TEXT NOT NULL,
    seq INTEGER NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('running', 'completed', 'failed', 'interrupted')),
    attempt INTEGER NOT NULL,
    progress REAL NOT NULL DEFAULT 0,
    message TEXT NOT NULL DEFAULT '',
    started_at REAL,
    completed_at REAL,
    error TEXT,
    worker TEXT,
    traceback TEXT,
    PRIMARY KEY (job_id, routine, seq)
);

INSERT INTO wf_steps_new
SELECT job_id, run, routine, seq,
       CASE WHEN status = 'running' AND (SELECT j.status FROM wf_jobs j WHERE j.id = s.job_id) != 'running'
            THEN 'interrupted' ELSE status END,
       attempt, progress, message, started_at, completed_at, error, worker, traceback
FROM wf_steps s
WHERE run = (SELECT max(t.run) FROM wf_steps t WHERE t.job_id = s.job_id AND t.routine = s.routine AND t.seq = s.seq);

DROP TABLE wf_steps;

ALTER TABLE wf_steps_new RENAME TO wf_steps;
