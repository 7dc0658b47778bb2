-- the node a job is assigned to or runs on (JobSpec.node; docs/cluster.md "Dispatching jobs")
ALTER TABLE wf_jobs ADD COLUMN node TEXT;
CREATE INDEX wf_jobs_node ON wf_jobs (node, status) WHERE node IS NOT NULL;
