-- wf_steps, wf_journal and wf_events rows are only written for a job row that their
-- statement holds: locked (FOR SHARE or FOR UPDATE), or inserted or updated by the same
-- statement; add_event locks the job row FOR KEY SHARE. Their foreign keys to wf_jobs only
-- added a check per row (about a quarter of the step-row statement's cost), so they go; one
-- statement trigger deletes a deleted job's rows, as ON DELETE CASCADE did.
DO $$
DECLARE
    fk record;
BEGIN
    FOR fk IN
        SELECT c.conname, c.conrelid::regclass AS tbl FROM pg_constraint c
        WHERE c.contype = 'f' AND c.confrelid = 'wf_jobs'::regclass
          AND c.conrelid IN ('wf_steps'::regclass, 'wf_journal'::regclass, 'wf_events'::regclass)
    LOOP
        EXECUTE format('ALTER TABLE %s DROP CONSTRAINT %I', fk.tbl, fk.conname);
    END LOOP;
END $$;

CREATE OR REPLACE FUNCTION wf_jobs_cascade() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM wf_steps WHERE job_id IN (SELECT id FROM gone);
    DELETE FROM wf_journal WHERE job_id IN (SELECT id FROM gone);
    DELETE FROM wf_events WHERE job_id IN (SELECT id FROM gone);
    RETURN NULL;
END $$;

CREATE TRIGGER wf_jobs_cascade AFTER DELETE ON wf_jobs REFERENCING OLD TABLE AS gone
    FOR EACH STATEMENT EXECUTE FUNCTION wf_jobs_cascade();
