-- queues whose jobs are not claimed until resumed (Store.pause_queue)
CREATE TABLE IF NOT EXISTS wf_paused_queues (
    queue TEXT PRIMARY KEY,
    paused_at DOUBLE PRECISION NOT NULL
);
