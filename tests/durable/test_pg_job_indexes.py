"""The indexes of ``wf_jobs`` on PostgreSQL: what a job costs in index entries, and that every
query the store runs on a filled table still reads an index (EXPLAIN)."""

from __future__ import annotations

import psycopg

from weirflow.durable import JobSpec, open_store
from weirflow.durable.postgres import _CLAIM

from .pgserver import PgServer


async def _indexes_met(conn: psycopg.AsyncConnection[tuple[object, ...]], job_id: str) -> int:
    """How many indexes of ``wf_jobs`` hold an entry for the job's row as it is now (every index
    whose predicate the row meets: a status change is never a HOT update, so each row version of
    a job writes one entry in each of them)."""
    cur = await conn.execute(
        "SELECT pg_get_expr(indpred, indrelid) FROM pg_index WHERE indrelid = 'wf_jobs'::regclass"
    )
    met = 0
    for (pred,) in await cur.fetchall():
        where = "true" if pred is None else str(pred)
        row = await (
            await conn.execute(f"SELECT count(*) FROM wf_jobs WHERE id = %s AND ({where})", (job_id,))
        ).fetchone()
        assert row is not None
        met += int(str(row[0]))
    return met


async def test_a_job_writes_six_index_entries_from_submit_to_completion(pg: PgServer) -> None:
    url = pg.new_database()
    store = open_store(url)
    await store.open()
    try:
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
            job_id = await store.submit(JobSpec(flow="f", inputs={}))
            entries = await _indexes_met(conn, job_id)  # queued
            [job] = (await store.claim("default", "w1", limit=1, lease_s=30)).jobs
            entries += await _indexes_met(conn, job_id)  # running
            assert await store.complete("w1", [(job_id, job.runs, {})]) == []
            entries += await _indexes_met(conn, job_id)  # completed
            # the primary key 3, the ready index 1, the running index 1, the finished index 1
            assert entries == 6
    finally:
        await store.close()


FILLED = """
INSERT INTO wf_jobs (id, flow, inputs, queue, status, max_attempts, backoff, priority, run_at,
    idempotency_key, worker_id, lease_expires_at, created_at, started_at, finished_at)
SELECT 'j' || i, 'f', '{}', 'q' || (i % 10),
    CASE WHEN i % 100 = 0 THEN 'queued' WHEN i % 100 = 1 THEN 'running'
         WHEN i % 100 = 2 THEN 'failed' ELSE 'completed' END,
    3, '{}', 0, i, CASE WHEN i % 7 = 0 THEN 'k' || i END,
    CASE WHEN i % 100 = 1 THEN 'w' || (i % 5) END, CASE WHEN i % 100 = 1 THEN i + 30 END,
    i, i, CASE WHEN i % 100 >= 2 THEN i + 1 END
FROM generate_series(1, 50000) AS i
"""

# each query the store runs on wf_jobs, with the index it must read
QUERIES: list[tuple[str, str]] = [
    (
        _CLAIM.replace("%(q)s", "'q3'")
        .replace("%(now)s", "1e9")
        .replace("%(n)s", "64")
        .replace("%(w)s", "'w9'")
        .replace("%(lease)s", "2e9")
        .replace("%(node)s", "NULL"),
        "wf_jobs_ready",
    ),
    ("SELECT id FROM wf_jobs WHERE queue = 'q3' AND idempotency_key = 'k7'", "wf_jobs_idempotency"),
    (
        "SELECT queue, idempotency_key, id FROM wf_jobs WHERE (queue, idempotency_key) IN"
        " (SELECT * FROM unnest(ARRAY['q7'], ARRAY['k7']))",
        "wf_jobs_idempotency",
    ),
    ("SELECT id FROM wf_jobs WHERE status = 'running' AND worker_id = 'w1' ORDER BY id", "wf_jobs_running"),
    ("SELECT id FROM wf_jobs WHERE status = 'running' AND lease_expires_at < 500", "wf_jobs_running"),
    ("SELECT count(*) FROM wf_jobs WHERE queue = 'q1' AND status = 'running'", "wf_jobs_running"),
    (
        "SELECT id FROM wf_jobs WHERE queue = 'q1' AND status = 'queued' ORDER BY seq DESC LIMIT 100",
        "wf_jobs_ready",
    ),
    ("SELECT id FROM wf_jobs WHERE status = 'running' ORDER BY seq DESC LIMIT 100", "wf_jobs_running"),
    (
        "SELECT min(run_at) FROM wf_jobs WHERE queue = 'q1' AND status = 'queued' AND run_at > 5",
        "wf_jobs_ready",
    ),
    ("DELETE FROM wf_jobs WHERE status = 'completed' AND finished_at < 500", "wf_jobs_finished"),
    ("DELETE FROM wf_jobs WHERE status IN ('failed', 'cancelled') AND finished_at < 500", "wf_jobs_finished"),
    ("SELECT id FROM wf_jobs WHERE id = ANY(ARRAY['j5', 'j6']) AND status = 'running'", "wf_jobs_pkey"),
]


async def test_every_query_on_a_filled_jobs_table_reads_an_index(pg: PgServer) -> None:
    url = pg.new_database()
    store = open_store(url)
    await store.open()
    await store.close()
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        await conn.execute(FILLED)
        await conn.execute("ANALYZE wf_jobs")
        for sql, index in QUERIES:
            async with conn.transaction(force_rollback=True):
                plan = await (await conn.execute(f"EXPLAIN {sql}")).fetchall()
            text = "\n".join(str(r[0]) for r in plan)
            assert index in text, f"{sql}\n{text}"
            assert "Seq Scan on wf_jobs" not in text, f"{sql}\n{text}"
