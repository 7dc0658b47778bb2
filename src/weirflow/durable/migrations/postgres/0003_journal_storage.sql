-- Journal rows are written once and read only to resume a job: store them
-- uncompressed (compressing each batch cost the server more CPU than it saved).
ALTER TABLE wf_journal ALTER COLUMN record SET STORAGE EXTERNAL;
