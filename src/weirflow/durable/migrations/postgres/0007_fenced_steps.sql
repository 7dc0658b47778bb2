-- One step row per job, routine and seq: a re-run of a step (after a crash or a
-- retry) updates its row with the next attempt. 'interrupted': the step's worker
-- died, lost the job or gave it back. Of the old per-run rows the latest is kept.
DELETE FROM wf_steps s USING wf_steps t
WHERE s.job_id = t.job_id AND s.routine = t.routine AND s.seq = t.seq AND s.run < t.run;

ALTER TABLE wf_steps DROP CONSTRAINT wf_steps_status_check;
ALTER TABLE wf_steps ADD CONSTRAINT wf_steps_status_check
    CHECK (status IN ('running', 'completed', 'failed', 'interrupted'));
ALTER TABLE wf_steps DROP CONSTRAINT wf_steps_pkey;
ALTER TABLE wf_steps ADD PRIMARY KEY (job_id, routine, seq);

UPDATE wf_steps s SET status = 'interrupted'
FROM wf_jobs j WHERE j.id = s.job_id AND s.status = 'running' AND j.status != 'running';
