"""A durable store refusing a write for what it holds (``wf.StoreRefusedError``) is a ``422``
with the store's message on every ``/api/store`` route that writes, not a ``503``: the same
request would be refused again, so it is the request's fault, not the store's.

The refusal is PostgreSQL's own: the test database gets ``CHECK`` constraints the server does
not know about (as a database administrator's rule would be), so a write of the value they
forbid fails with an integrity error, which the PostgreSQL store raises as
``StoreRefusedError``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from tests.durable.pgserver import started_server
from tests.server.conftest import Live, live_server

FLOWS = "tests.durable.flows"
REFUSED = "refused-by-the-database"
CONSTRAINTS = (
    f"ALTER TABLE wf_jobs ADD CONSTRAINT dba_queue CHECK (queue <> '{REFUSED}')",
    f"ALTER TABLE wf_paused_queues ADD CONSTRAINT dba_paused CHECK (queue <> '{REFUSED}')",
    f"ALTER TABLE wf_schedules ADD CONSTRAINT dba_schedule CHECK (name <> '{REFUSED}')",
    # a job the database's own table refers to may not be deleted
    "CREATE TABLE dba_hold (job TEXT REFERENCES wf_jobs (id) ON DELETE RESTRICT)",
)


@pytest.fixture(scope="module")
def pg_url() -> Iterator[str]:
    pg = started_server()
    try:
        yield pg.new_database()
    finally:
        pg.destroy()


@pytest.fixture(scope="module")
def refusing(pg_url: str) -> Iterator[Live]:
    """A server over a PostgreSQL database whose tables refuse the value ``REFUSED``."""
    with live_server(FLOWS, store=pg_url) as server:  # (its start applied the migrations)
        with psycopg.connect(pg_url, autocommit=True) as conn:
            for sql in CONSTRAINTS:
                conn.execute(sql)
        yield server


def job(**body: Any) -> dict[str, Any]:
    return {"flow": "one", "inputs": {"a.item": [1]}, **body}


REFUSED_WRITES = [
    pytest.param("POST", "/api/store/jobs", job(queue=REFUSED), id="submit"),
    pytest.param("POST", "/api/store/jobs/batch", {"jobs": [job(), job(queue=REFUSED)]}, id="batch"),
    pytest.param("POST", f"/api/store/queues/{REFUSED}/pause", None, id="pause-queue"),
    pytest.param(
        "POST",
        "/api/store/schedules",
        {"name": REFUSED, "flow": "one", "inputs": {"a.item": [1]}, "every_s": 60},
        id="schedule",
    ),
]


def test_a_delete_the_store_refuses_is_a_422_and_deletes_nothing(refusing: Live, pg_url: str) -> None:
    client = refusing.client
    held = client.post("/api/store/jobs", json=job(queue="held")).json()["id"]
    assert client.post(f"/api/store/jobs/{held}/cancel").status_code == 200
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("INSERT INTO dba_hold VALUES (%s)", (held,))
    response = client.post("/api/store/clean", json={"status": "failed", "older_than_s": 0})
    assert response.status_code == 422, response.text
    assert response.json()["error"] == "StoreRefusedError"
    assert "ForeignKeyViolation" in response.json()["detail"]
    assert client.get(f"/api/store/jobs/{held}").json()["status"] == "cancelled"


@pytest.mark.parametrize(("method", "path", "body"), REFUSED_WRITES)
def test_a_write_the_store_refuses_is_a_422_with_its_message(
    refusing: Live, method: str, path: str, body: dict[str, Any] | None
) -> None:
    response = refusing.client.request(method, path, json=body)
    assert response.status_code == 422, response.text
    answer = response.json()
    assert answer["error"] == "StoreRefusedError"
    assert "the store refused the write" in answer["detail"]
    assert "CheckViolation" in answer["detail"]  # the database's own words
    message = answer["detail"].removeprefix("body: ")
    assert answer["errors"] == [{"loc": ["body"], "msg": message, "type": "store_refused"}]


def test_nothing_refused_was_kept_and_the_store_still_serves(refusing: Live) -> None:
    client = refusing.client
    for method, path, body in [p.values for p in REFUSED_WRITES]:
        assert client.request(method, path, json=body).status_code == 422
    assert client.get("/api/store/jobs", params={"queue": REFUSED}).json()["items"] == []
    assert REFUSED not in client.get("/api/store/queues").json()["paused"]
    assert all(s["name"] != REFUSED for s in client.get("/api/store/schedules").json())
    accepted = client.post("/api/store/jobs", json=job(queue="fine"))
    assert accepted.status_code == 201, accepted.text
