"""``/healthz`` and ``/readyz``."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import redis

from tests.durable.pgserver import started_server as started_pg
from tests.redisserver import started_server
from tests.server.conftest import SERVED, Live, live_server, send, start_job
from tests.server.flows.served import STREAM_CAPACITY
from weirflow.server import Settings, create_app


def test_healthz(live: Live) -> None:
    response = live.client.get("/healthz")
    assert response.status_code == 200 and response.json() == {"status": "ok"}


def test_readyz_reports_jobs_with_full_slots(fresh: Live) -> None:
    c = fresh.client
    ready = c.get("/readyz").json()
    assert ready == {
        "status": "ready",
        "flows": 2,
        "jobs": dict.fromkeys(["pending", "running", "paused", "completed", "failed", "cancelled"], 0),
        "full_slots": [],
        "registry": None,  # no --registry: no node registry to report
        "store": None,  # no --store: no durable store to ask
    }
    jid = start_job(c, "stream", keep_open=True)["id"]
    c.post(f"/api/jobs/{jid}/pause")
    send(c, jid, "clean.items", list(range(STREAM_CAPACITY)))
    ready = c.get("/readyz").json()
    assert ready["jobs"]["paused"] == 1
    assert ready["full_slots"] == [{"job": jid, "flow": "stream", "slots": ["clean.items"]}]


async def test_readyz_is_503_until_the_engine_runs() -> None:
    # the app's lifespan has not run: no engine yet (the live server is never in this state)
    app = create_app(Settings(), flows=SERVED)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
        response = await client.get("/readyz")
        assert response.status_code == 503
        assert response.json() == {"detail": "the engine is not running"}
        assert (await client.get("/healthz")).status_code == 200


def test_readyz_reports_the_store_and_is_503_with_its_reason_while_it_does_not_answer() -> None:
    server = started_server()
    try:
        admin = redis.Redis.from_url(server.url(0))
        admin.config_set("requirepass", "pw-secret-9")
        admin.close()
        url = f"redis://:pw-secret-9@127.0.0.1:{server.port}/0"
        with live_server(store=url) as live:
            ready = live.client.get("/readyz")
            assert ready.status_code == 200, ready.text
            store = ready.json()["store"]
            assert store["status"] == "ok" and store["error"] is None
            assert store["url"] == f"redis://:***@127.0.0.1:{server.port}/0"
            probe = live.server.app.state.store_ready
            # (no answer kept between calls: each call below asks, or shares the probe under way)
            probe.max_age_s = 0
            server.pause()  # SIGSTOP: the store takes the connection and never answers
            try:
                before = probe.probes

                def ask(_: int) -> httpx.Response:
                    with live.new_client() as client:
                        return client.get("/readyz")

                with ThreadPoolExecutor(20) as pool:
                    answers = list(pool.map(ask, range(20)))
                for answer in answers:
                    assert answer.status_code == 503, answer.text
                    body = answer.json()
                    assert body["status"] == "unready" and body["flows"] == 2  # the same body as a 200
                    assert body["store"]["status"] == "unreachable"
                    assert body["store"]["error"] == "the store did not answer within 1 s"
                    assert "pw-secret-9" not in answer.text
                # the callers shared one probe (a readiness probe costs the store no round trip each)
                assert probe.probes - before < 5, probe.probes - before
            finally:
                server.cont()
            again = live.client.get("/readyz")
            assert again.status_code == 200, again.text
            assert again.json()["store"]["status"] == "ok"
    finally:
        server.destroy()


def test_readyz_answers_503_within_its_deadline_while_postgresql_is_stopped() -> None:
    """The probe's driver can take far longer than the deadline to give up (psycopg asks
    the stopped server to cancel the query and waits for it: /readyz took 11 s): callers
    are answered when the deadline is up, the probe finishing in the background."""
    server = started_pg()
    try:
        with live_server(store=server.new_database()) as live:
            assert live.client.get("/readyz").status_code == 200
            live.server.app.state.store_ready.max_age_s = 0
            with server.stopped():  # the postmaster and each backend

                def ask(_: int) -> tuple[float, httpx.Response]:
                    began = time.monotonic()
                    with live.new_client() as client:
                        answer = client.get("/readyz")
                    return time.monotonic() - began, answer

                with ThreadPoolExecutor(10) as pool:
                    answers = list(pool.map(ask, range(10)))
                took_s, later = ask(0)  # while the first probe is still waiting on psycopg
            for took, answer in [*answers, (took_s, later)]:
                assert answer.status_code == 503, answer.text
                assert answer.json()["store"]["error"] == "the store did not answer within 1 s"
                assert took < 5.0, took  # (the deadline is 1 s; the driver alone took 11 s)
    finally:
        server.destroy()


def test_readyz_without_a_store_has_none() -> None:
    with live_server() as live:
        assert live.client.get("/readyz").json()["store"] is None
