-- wf_events_queue (queue, at) is read by one query, Store.finished_counts: the finished,
-- failed and retrying events of a queue since a time (the queue alerts, the HTTP API's
-- counts). It held an entry for every event, the 'queued' event of each submit and the
-- 'running' event of each claim included; partial, it holds the events that query counts,
-- one entry per job fewer at submit and at claim. Every other read of wf_events goes by job
-- (wf_events_job) or by id (the primary key). Older versions' queries read it as before.
DROP INDEX IF EXISTS wf_events_queue;
CREATE INDEX wf_events_queue ON wf_events (queue, at) WHERE kind IN ('completed', 'failed', 'retrying');
