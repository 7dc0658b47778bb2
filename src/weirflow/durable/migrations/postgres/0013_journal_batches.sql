-- each journal row's claim (the token) and batch number within it, so that a batch sent
-- again (its reply was lost) is not written twice (append_journal(batches=...))
ALTER TABLE wf_journal ADD COLUMN run INTEGER, ADD COLUMN batch INTEGER;
