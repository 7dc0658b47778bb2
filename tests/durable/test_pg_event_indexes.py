"""The indexes of ``wf_events`` on PostgreSQL: what a job's events cost in index entries, and
that every query the store runs on a filled events table reads an index (EXPLAIN)."""

from __future__ import annotations

import psycopg

from weirflow.durable import JobSpec, open_store

from .pgserver import PgServer


async def _entries(conn: psycopg.AsyncConnection[tuple[object, ...]], job_id: str) -> int:
    """How many entries the job's events hold in the indexes of ``wf_events``: each event row in
    every index whose predicate it meets."""
    cur = await conn.execute(
        "SELECT pg_get_expr(indpred, indrelid) FROM pg_index WHERE indrelid = 'wf_events'::regclass"
    )
    met = 0
    for (pred,) in await cur.fetchall():
        where = "true" if pred is None else str(pred)
        row = await (
            await conn.execute(f"SELECT count(*) FROM wf_events WHERE job_id = %s AND ({where})", (job_id,))
        ).fetchone()
        assert row is not None
        met += int(str(row[0]))
    return met


async def test_a_jobs_three_events_write_seven_index_entries(pg: PgServer) -> None:
    url = pg.new_database()
    store = open_store(url)
    await store.open()
    try:
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
            job_id = await store.submit(JobSpec(flow="f", inputs={}))
            [job] = (await store.claim("default", "w1", limit=1, lease_s=30)).jobs
            assert await store.complete("w1", [(job_id, job.runs, {})]) == []
            assert [e.kind for e in await store.events(job_id=job_id)] == ["queued", "running", "completed"]
            # the primary key 3, the job index 3, the queue index 1 (the completed event: the
            # only one of the three that ``finished_counts`` counts)
            assert await _entries(conn, job_id) == 7
            assert await store.finished_counts("default", 0) == (0, 1)
    finally:
        await store.close()


FILLED = """
INSERT INTO wf_events (job_id, queue, kind, at, data)
SELECT 'j' || (i / 3), 'q' || (i % 10),
    CASE WHEN i % 3 = 0 THEN 'queued' WHEN i % 3 = 1 THEN 'running'
         WHEN i % 30 = 2 THEN 'failed' WHEN i % 30 = 5 THEN 'retrying' ELSE 'completed' END,
    i, '{}'
FROM generate_series(1, 150000) AS i
"""

# each query the store runs on wf_events, with the index it must read
QUERIES: list[tuple[str, str]] = [
    (
        "SELECT count(*) FILTER (WHERE kind != 'completed'), count(*) FROM wf_events"
        " WHERE queue = 'q3' AND at >= 149000 AND kind IN ('completed', 'failed', 'retrying')",
        "wf_events_queue",
    ),
    (
        "SELECT id, job_id, queue, kind, at, data FROM wf_events"
        " WHERE ('j77'::text IS NULL OR job_id = 'j77') AND (NULL::text IS NULL OR kind = NULL)"
        " AND (NULL::float8 IS NULL OR at >= NULL) ORDER BY id",
        "wf_events_job",
    ),
    (
        "DELETE FROM wf_events WHERE job_id IN (SELECT 'j' || i FROM generate_series(1, 5) AS i)",
        "wf_events_job",
    ),
]


async def test_every_query_on_a_filled_events_table_reads_an_index(pg: PgServer) -> None:
    url = pg.new_database()
    store = open_store(url)
    await store.open()
    await store.close()
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        await conn.execute(FILLED)
        await conn.execute("ANALYZE wf_events")
        for sql, index in QUERIES:
            async with conn.transaction(force_rollback=True):
                plan = await (await conn.execute(f"EXPLAIN {sql}")).fetchall()
            text = "\n".join(str(r[0]) for r in plan)
            assert index in text, f"{sql}\n{text}"
            assert "Seq Scan on wf_events" not in text, f"{sql}\n{text}"
