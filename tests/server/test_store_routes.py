"""``/api/store/jobs``: durable jobs over HTTP, against a live server with a SQLite store in
``tmp_path`` and a real ``Worker`` (in-process, on the same file) running the jobs.

Waiting is on the worker's reports (``tests.durable.helpers.until``), never on sleeps.
"""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.durable import flows
from tests.durable.helpers import until
from tests.durable.pgserver import started_server
from tests.server.conftest import ADMIN_KEY, READ_KEY, Live, live_server
from weirflow.durable.worker import Worker
from weirflow.server import SettingsError, load_flows, load_settings

FLOWS = "tests.durable.flows"
ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}
READ = {"Authorization": f"Bearer {READ_KEY}"}
JOBS = "/api/store/jobs"
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def store_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'weirflow.db'}"  # an absolute path: sqlite:////tmp/...


@pytest.fixture
def served(store_url: str) -> Iterator[Live]:
    """A server of the durable test flows over the store, with keys; its client is admin."""
    with live_server(
        FLOWS, headers=ADMIN, store=store_url, api_keys=f"{ADMIN_KEY}:admin,{READ_KEY}:read"
    ) as server:
        yield server


@pytest.fixture(scope="module")
def untouched(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    """One server for the tests that must change nothing (bad requests, unknown jobs)."""
    url = f"sqlite:///{tmp_path_factory.mktemp('store') / 'weirflow.db'}"
    with live_server(FLOWS, store=url) as server:
        yield server


def submit(client: httpx.Client, flow: str = "steps3", item: Any = None, **body: Any) -> dict[str, Any]:
    body.setdefault("inputs", {"a.item": [item if item is not None else {}]})
    response = client.post(JOBS, json={"flow": flow, **body})
    assert response.status_code == 201, response.text
    job: dict[str, Any] = response.json()
    return job


@asynccontextmanager
async def worker(store_url: str) -> AsyncIterator[Worker]:
    """A worker of its own on the server's SQLite file; it polls the file (another process
    could have written it) at most every 50 ms."""
    async with Worker(
        store_url, [flows.steps3, flows.one, flows.noop], worker_id="w-test", poll_min_s=0.01, poll_max_s=0.05
    ) as w:
        yield w


async def finished(client: httpx.AsyncClient, job_id: str, w: Worker) -> dict[str, Any]:
    """The job once the worker has finished it (re-read after each of its reports)."""
    job: dict[str, Any] = {}

    async def check() -> bool:
        nonlocal job
        job = (await client.get(f"{JOBS}/{job_id}")).json()
        return job["status"] in ("completed", "failed", "cancelled")

    await until(check, w, timeout_s=20)
    return job


# -- submitting -------------------------------------------------------------------------


def test_submit_queues_a_job_and_answers_201_with_it(served: Live) -> None:
    job = submit(served.client, item={"x": 1}, priority=5, attempts=2, delay_s=60, timeout_s=30)
    assert job == {
        "id": job["id"],
        "flow": "steps3",
        "status": "queued",
        "attempt": 0,
        "error": None,
        "error_detail": None,
        "steps": [],
        "outputs": {},
        "dead_letters": [],
        "node": None,
    }
    assert served.client.get(f"{JOBS}/{job['id']}").json() == job
    [record] = served.client.get(JOBS).json()["items"]
    assert record["id"] == job["id"]
    assert record["inputs"] == {"a.item": [{"x": 1}]}
    assert (record["priority"], record["max_attempts"], record["timeout_s"]) == (5, 2, 30)
    assert record["run_at"] == pytest.approx(record["created_at"] + 60)
    backoff = {"initial_s": 0.5, "factor": 3.0, "max_s": 10.0, "jitter": False}
    other = submit(served.client, queue="slow", backoff=backoff)
    records = {r["id"]: r for r in served.client.get(JOBS).json()["items"]}
    assert records[other["id"]]["backoff"] == backoff
    assert records[other["id"]]["queue"] == "slow"


def test_a_batch_submit_queues_every_job_in_one_call(served: Live) -> None:
    jobs = [
        {"flow": "steps3", "inputs": {"a.item": [{"n": 0}]}},
        {"flow": "one", "inputs": {"a.item": [{"n": 1}]}, "idempotency_key": "k", "priority": 3},
        {"flow": "noop", "inputs": {"n.input": [2]}, "idempotency_key": "k"},  # the key of job 1
    ]
    made = served.client.post(f"{JOBS}/batch", json={"jobs": jobs})
    assert made.status_code == 201, made.text
    answer = made.json()
    assert answer["created"] == [True, True, False]
    ids = answer["ids"]
    assert ids[2] == ids[1] and ids[0] != ids[1]
    records = {r["id"]: r for r in served.client.get(JOBS).json()["items"]}
    assert set(records) == set(ids)
    assert (records[ids[1]]["flow"], records[ids[1]]["priority"]) == ("one", 3)
    again = served.client.post(f"{JOBS}/batch", json={"jobs": jobs[1:]})
    assert again.status_code == 200, again.text  # made nothing: every key was held
    assert again.json() == {"ids": [ids[1], ids[1]], "created": [False, False]}


@pytest.mark.parametrize(
    ("jobs", "loc", "message"),
    [
        ([], ["body", "jobs"], "at least 1 item"),
        ([{"flow": "noop"}] * 1001, ["body", "jobs"], "at most 1000 jobs in one batch (got 1001)"),
        ([{"flow": "noop"}, {"flow": "nope"}], ["body", "jobs", 1, "flow"], "no flow named 'nope'"),
        (
            [{"flow": "noop"}, {"flow": "noop", "inputs": {"x.y": [1]}}],
            ["body", "jobs", 1, "inputs"],
            "no slot",
        ),
        (
            [{"flow": "noop", "inputs": {"n.input": [1, 2**64]}}],
            ["body", "jobs", 0, "inputs", "n.input", 1],
            "integer 18446744073709551616 is out of range",
        ),
        ([{"flow": "noop", "attempts": 0}], ["body", "jobs", 0, "attempts"], "greater than or equal to 1"),
    ],
)
def test_a_bad_batch_is_a_422_naming_the_job_and_queues_none(
    untouched: Live, jobs: list[Any], loc: list[Any], message: str
) -> None:
    response = untouched.client.post(f"{JOBS}/batch", json={"jobs": jobs})
    assert response.status_code == 422, response.text
    answer = response.json()
    assert answer["errors"][0]["loc"] == loc
    assert message in answer["detail"]
    assert untouched.client.get(JOBS).json()["items"] == []


def test_a_batch_over_the_body_limit_is_a_413(tmp_path: Path) -> None:
    with live_server(FLOWS, store=f"sqlite:///{tmp_path / 'w.db'}", max_body_bytes=10_000) as server:
        jobs = [{"flow": "noop", "inputs": {"n.input": ["x" * 100]}}] * 200
        response = server.client.post(f"{JOBS}/batch", json={"jobs": jobs})
        assert response.status_code == 413, response.text
        assert server.client.get(JOBS).json()["items"] == []


def test_the_same_idempotency_key_answers_200_with_the_first_job(served: Live) -> None:
    first = submit(served.client, item={"n": 1}, idempotency_key="order-42")
    again = served.client.post(
        JOBS, json={"flow": "steps3", "inputs": {"a.item": [{"n": 2}]}, "idempotency_key": "order-42"}
    )
    assert again.status_code == 200, again.text
    assert again.json() == first
    other_queue = submit(served.client, idempotency_key="order-42", queue="other")  # keys are per queue
    assert other_queue["id"] != first["id"]
    items = served.client.get(JOBS).json()["items"]
    assert sorted(r["id"] for r in items) == sorted([first["id"], other_queue["id"]])
    assert next(r for r in items if r["id"] == first["id"])["inputs"] == {"a.item": [{"n": 1}]}


async def test_concurrent_submits_with_one_key_make_one_job(served: Live) -> None:
    body = {"flow": "one", "inputs": {"a.item": [{}]}, "idempotency_key": "once"}
    async with httpx.AsyncClient(base_url=served.url, headers=ADMIN, timeout=10) as client:
        answers = await asyncio.gather(*[client.post(JOBS, json=body) for _ in range(10)])
        codes = sorted(r.status_code for r in answers)
        assert codes == [200] * 9 + [201]  # one made it; the others found it
        assert len({r.json()["id"] for r in answers}) == 1
        assert len((await client.get(JOBS)).json()["items"]) == 1


@pytest.mark.parametrize(
    ("body", "loc", "message"),
    [
        (
            {"flow": "nope"},
            ["body", "flow"],
            "no flow named 'nope' (flows: blocking, emit_twice, hog, in_process, noop, one, steps3, tally)",
        ),
        ({"flow": ""}, ["body", "flow"], "at least 1 character"),
        ({"inputs": {"a.item": [1]}}, ["body", "flow"], "Field required"),
        ({"flow": "steps3", "inputs": {"x.y": [1]}}, ["body", "inputs"], "has no slot 'x.y'"),
        ({"flow": "steps3", "inputs": {"a.item": 1}}, ["body", "inputs", "a.item"], "valid list"),
        ({"flow": "steps3", "inputs": {"a.item": ["a\x00b"]}}, ["body", "inputs", "a.item", 0], "NUL"),
        ({"flow": "steps3", "attempts": 0}, ["body", "attempts"], "greater than or equal to 1"),
        ({"flow": "steps3", "attempts": 10**30}, ["body", "attempts"], "less than or equal to 100"),
        ({"flow": "steps3", "priority": 2**31}, ["body", "priority"], "less than or equal to"),
        ({"flow": "steps3", "delay_s": -1}, ["body", "delay_s"], "greater than or equal to 0"),
        ({"flow": "steps3", "timeout_s": 0}, ["body", "timeout_s"], "greater than 0"),
        ({"flow": "steps3", "backoff": {"factor": 0.5}}, ["body", "backoff", "factor"], "greater than"),
        ({"flow": "steps3", "backoff": {"initial_s": -1}}, ["body", "backoff", "initial_s"], "greater"),
        ({"flow": "steps3", "idempotency_key": ""}, ["body", "idempotency_key"], "at least 1 character"),
        ({"flow": "steps3", "queue": "q\x00"}, ["body", "queue"], "should match pattern"),
        ({"flow": "steps3", "surprise": 1}, ["body", "surprise"], "Extra inputs are not permitted"),
    ],
)
def test_a_bad_submit_is_a_422_naming_the_field(
    untouched: Live, body: dict[str, Any], loc: list[Any], message: str
) -> None:
    response = untouched.client.post(JOBS, json=body)
    assert response.status_code == 422, response.text
    answer = response.json()
    assert answer["errors"][0]["loc"] == loc
    assert message in answer["detail"]
    assert untouched.client.get(JOBS).json()["items"] == []


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b'{"flow": "steps3", "inputs": {"a.item": [NaN]}}', "JSON"),  # Python's parser lets NaN in
        (b'{"flow": "steps3", "inputs": {"a.item": [{"k": Infinity}]}}', "JSON"),
        # the journal could not encode it: was 201, then every attempt crashed replaying
        (
            b'{"flow": "steps3", "inputs": {"a.item": [1, {"n": 18446744073709551616}]}}',
            'body.inputs.a.item.1: at ["n"]: integer 18446744073709551616 is out of range',
        ),
        (
            b'{"flow": "steps3", "inputs": {"a.item": [-9223372036854775809]}}',
            "body.inputs.a.item.0: integer",
        ),
        (b'{"flow": "steps3", "inputs": {"a.item": ["\\ud800"]}}', "unpaired surrogate"),
        (b'{"flow": "steps3", "inputs": {"\\ud800": [1]}}', "has no slot '\\ud800'"),
        (b'{"flow": "steps3", "inputs": {"a.item": [1]}', "JSON decode error"),
        (b"[]", "valid dictionary"),
    ],
)
def test_items_the_store_cannot_hold_are_a_422(untouched: Live, raw: bytes, message: str) -> None:
    response = untouched.client.post(JOBS, content=raw, headers={"content-type": "application/json"})
    assert response.status_code == 422, response.text
    assert message in response.json()["detail"]
    assert untouched.client.get(JOBS).json()["items"] == []


# strings PostgreSQL refuses (NUL, unpaired surrogates) among ordinary ones
TEXT = st.text(max_size=8) | st.sampled_from(["\x00", "a\ud800b", "\udfff", "é", "💥", "a.item"])
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | TEXT,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3),
    max_leaves=12,
)
ANYTHING = st.fixed_dictionaries(
    {"flow": st.sampled_from(["steps3", "one", "noop"]) | TEXT},
    optional={
        "inputs": st.dictionaries(st.sampled_from(["a.item", "n.input", "b.item"]) | TEXT, st.lists(JSON)),
        "queue": TEXT,
        "attempts": st.integers(-2, 200),
        "backoff": st.fixed_dictionaries(
            {},
            optional={"initial_s": st.floats(-1, 1e9), "factor": st.floats(0, 1e3), "jitter": st.booleans()},
        ),
        "delay_s": st.floats(-1, 1e9, allow_nan=False),
        "priority": st.integers(-(2**40), 2**40),
        "idempotency_key": st.none() | TEXT,
        "timeout_s": st.none() | st.floats(-1, 1e9),
    },
)
# bodies of the right shape, so that most reach the store: odd items, names, numbers
PLAUSIBLE = st.fixed_dictionaries(
    {
        "flow": st.just("steps3"),
        "inputs": st.dictionaries(st.sampled_from(["a.item", "c.item"]), st.lists(JSON)),
    },
    optional={
        "queue": TEXT,
        "attempts": st.integers(1, 100),
        "backoff": st.fixed_dictionaries({"initial_s": st.floats(0, 1e6), "factor": st.floats(1, 100)}),
        "delay_s": st.floats(0, 1e6),
        "priority": st.integers(-(2**31) + 1, 2**31 - 1),
        "idempotency_key": TEXT,
        "timeout_s": st.floats(0.001, 1e6),
    },
)
SUBMITS = PLAUSIBLE | ANYTHING


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def any_store(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, Live]]:
    """A server over a SQLite file, then over a throw-away PostgreSQL database."""
    if request.param == "sqlite":
        with live_server(FLOWS, store=f"sqlite:///{tmp_path_factory.mktemp('any') / 'weirflow.db'}") as s:
            yield request.param, s
        return
    pg = started_server()
    try:
        with live_server(FLOWS, store=pg.new_database()) as s:
            yield request.param, s
    finally:
        pg.destroy()


@settings(max_examples=60, deadline=None, database=None, suppress_health_check=list(HealthCheck))
@given(body=SUBMITS)
def test_any_submit_is_stored_and_read_back_or_refused_with_a_422(
    any_store: tuple[str, Live], body: dict[str, Any]
) -> None:
    """Arbitrary bodies on every backend: accepted and read back, or a 422; never a 5xx."""
    backend, server = any_store
    response = server.client.post(
        JOBS, content=json.dumps(body).encode(), headers={"content-type": "application/json"}
    )
    assert response.status_code in (200, 201, 422), response.text
    if response.status_code == 422:
        assert response.json()["detail"]
        return
    job = response.json()
    assert server.client.get(f"{JOBS}/{job['id']}").json() == job
    listed = server.client.get(JOBS, params={"queue": body.get("queue", "default"), "limit": 1000})
    assert listed.status_code == 200, listed.text
    [record] = [r for r in listed.json()["items"] if r["id"] == job["id"]]
    if response.status_code == 201:
        # PostgreSQL's jsonb keeps numbers as numeric: 1e300 comes back as an int
        assert record["inputs"] == body.get("inputs", {}) or backend == "postgres"
        assert set(record["inputs"]) == set(body.get("inputs", {}))


# -- reading ------------------------------------------------------------------------------


def test_list_filters_by_queue_status_and_flow_and_pages_newest_first(served: Live) -> None:
    c = served.client
    ids = [submit(c, "steps3" if n % 2 else "one", queue="q1" if n < 4 else "q2")["id"] for n in range(6)]
    assert c.post(f"{JOBS}/{ids[5]}/cancel").status_code == 200

    def listed(**params: Any) -> list[str]:
        response = c.get(JOBS, params=params)
        assert response.status_code == 200, response.text
        return [r["id"] for r in response.json()["items"]]

    newest_first = ids[::-1]
    assert listed() == newest_first
    assert listed(queue="q1") == ids[3::-1]
    assert listed(status="cancelled") == [ids[5]]
    assert listed(status="queued", queue="q2") == [ids[4]]
    assert listed(flow="steps3") == [ids[5], ids[3], ids[1]]
    assert listed(flow="one", queue="q1") == [ids[2], ids[0]]
    assert listed(flow="noop") == []
    assert listed(queue="none") == []

    pages, offset = [], 0
    while offset is not None:
        page = c.get(JOBS, params={"limit": 4, "offset": offset}).json()
        assert page["limit"] == 4 and page["offset"] == offset
        pages.append([r["id"] for r in page["items"]])
        offset = page["next_offset"]
    assert pages == [newest_first[:4], newest_first[4:]]
    page = c.get(JOBS, params={"flow": "steps3", "limit": 2, "offset": 1}).json()
    assert ([r["id"] for r in page["items"]], page["next_offset"]) == ([ids[3], ids[1]], None)
    page = c.get(JOBS, params={"flow": "one", "limit": 1}).json()
    assert ([r["id"] for r in page["items"]], page["next_offset"]) == ([ids[4]], 1)

    for params in ({"status": "lost"}, {"limit": 0}, {"limit": 1001}, {"offset": -1}, {"queue": ""}):
        response = c.get(JOBS, params=params)
        assert response.status_code == 422, params
        assert response.json()["detail"].startswith("query.")


async def test_show_steps_and_events_of_a_job_a_worker_ran(served: Live, store_url: str) -> None:
    job_id = submit(served.client, item={"x": 1}, idempotency_key="run-me")["id"]
    async with httpx.AsyncClient(base_url=served.url, headers=READ, timeout=10) as client:
        async with worker(store_url) as w:
            job = await finished(client, job_id, w)
        assert job["status"] == "completed", job
        assert (job["attempt"], job["error"]) == (1, None)
        assert [(s["routine"], s["seq"], s["status"], s["attempt"], s["worker"]) for s in job["steps"]] == [
            ("a", 1, "completed", 1, "w-test"),
            ("b", 1, "completed", 1, "w-test"),
            ("c", 1, "completed", 1, "w-test"),
        ]
        for step in job["steps"]:
            assert step["progress"] == 100 and step["message"] == f"{step['routine']} nearly done"
            assert step["started_at"] <= step["completed_at"]
            assert step["error"] is None
        assert sorted(job) == [  # jobs show --json
            "attempt",
            "dead_letters",
            "error",
            "error_detail",
            "flow",
            "id",
            "node",
            "outputs",
            "status",
            "steps",
        ]
        assert (job["outputs"], job["dead_letters"], job["error_detail"]) == ({"c.out": [{"x": 1}]}, [], None)

        steps = await client.get(f"{JOBS}/{job_id}/steps")
        assert steps.status_code == 200 and steps.json() == job["steps"]

        events = (await client.get(f"{JOBS}/{job_id}/events")).json()
        assert [e["kind"] for e in events] == ["queued", "running", "completed"]
        assert all(e["job_id"] == job_id and e["queue"] == "default" for e in events)
        assert [e["id"] for e in events] == sorted(e["id"] for e in events)
        running = await client.get(f"{JOBS}/{job_id}/events", params={"kind": "running"})
        assert [e["kind"] for e in running.json()] == ["running"]
        later = await client.get(f"{JOBS}/{job_id}/events", params={"since": events[-1]["at"]})
        assert [e["kind"] for e in later.json()] == ["completed"]

        [record] = (await client.get(JOBS, params={"status": "completed"})).json()["items"]
        assert record["outputs"] == {"c.out": [{"x": 1}]}
        assert record["worker_id"] == "w-test" and record["runs"] == 1


# -- retry and cancel -------------------------------------------------------------------


async def test_retry_requeues_a_failed_job_and_a_worker_runs_it_again(served: Live, store_url: str) -> None:
    job_id = submit(served.client, item={"fail": "b"}, attempts=1)["id"]
    async with httpx.AsyncClient(base_url=served.url, headers=ADMIN, timeout=10) as client:
        async with worker(store_url) as w:
            job = await finished(client, job_id, w)
        assert (job["status"], job["attempt"]) == ("failed", 1)
        assert "b failed on purpose" in job["error"]
        assert job["error_detail"].startswith("Traceback (most recent call last):")
        assert job["error_detail"].endswith("ValueError: b failed on purpose")
        [failed_step] = [st for st in job["steps"] if st["status"] == "failed"]
        assert failed_step["traceback"] == job["error_detail"]
        assert [(s["routine"], s["status"]) for s in job["steps"]] == [("a", "completed"), ("b", "failed")]

        retried = await client.post(f"{JOBS}/{job_id}/retry")
        assert retried.status_code == 200, retried.text
        assert retried.json()["status"] == "queued"
        assert (retried.json()["attempt"], retried.json()["error"]) == (0, None)
        again = await client.post(f"{JOBS}/{job_id}/retry", json={"from_start": True})
        assert again.status_code == 409  # queued: nothing to retry
        assert again.json()["detail"] == (
            f"job {job_id} is queued; only a failed, cancelled or stalled job can be retried"
        )

        async with worker(store_url) as w:
            job = await finished(client, job_id, w)  # it fails the same way again
        assert (job["status"], job["attempt"]) == ("failed", 1)
        kinds = [e["kind"] for e in (await client.get(f"{JOBS}/{job_id}/events")).json()]
        assert kinds == ["queued", "running", "failed", "retried", "running", "failed"]

        retried = await client.post(f"{JOBS}/{job_id}/retry", json={"from_start": True})
        assert retried.status_code == 200 and retried.json()["status"] == "queued"
        [record] = (await client.get(JOBS)).json()["items"]
        assert record["from_start"] is True


async def test_a_completed_job_cannot_be_retried_or_cancelled(served: Live, store_url: str) -> None:
    job_id = submit(served.client, "one")["id"]
    async with httpx.AsyncClient(base_url=served.url, headers=ADMIN, timeout=10) as client:
        async with worker(store_url) as w:
            assert (await finished(client, job_id, w))["status"] == "completed"
        retried = await client.post(f"{JOBS}/{job_id}/retry")
        assert retried.status_code == 409
        assert retried.json() == {
            "detail": f"job {job_id} is completed; only a failed, cancelled or stalled job can be retried",
            "error": "JobError",  # what engine.retry raises in process (wf.Client maps it back)
        }
        cancelled = await client.post(f"{JOBS}/{job_id}/cancel")
        assert cancelled.status_code == 409
        assert "only a queued or running job can be cancelled" in cancelled.json()["detail"]


def test_cancel_a_queued_job_then_retry_it(served: Live) -> None:
    c = served.client
    job_id = submit(c, delay_s=3600)["id"]
    cancelled = c.post(f"{JOBS}/{job_id}/cancel")
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["status"] == "cancelled"
    again = c.post(f"{JOBS}/{job_id}/cancel")
    assert again.status_code == 409
    assert again.json()["detail"] == (
        f"job {job_id} is cancelled; only a queued or running job can be cancelled"
    )
    retried = c.post(f"{JOBS}/{job_id}/retry")
    assert retried.status_code == 200 and retried.json()["status"] == "queued"
    kinds = [e["kind"] for e in c.get(f"{JOBS}/{job_id}/events").json()]
    assert kinds == ["queued", "cancelled", "retried"]
    assert c.post(f"{JOBS}/{job_id}/retry", json={"from_start": "maybe"}).status_code == 422
    assert c.post(f"{JOBS}/{job_id}/retry", json={"from_start": False, "x": 1}).status_code == 422


# -- errors, auth, configuration ----------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", ""), ("GET", "/steps"), ("GET", "/events"), ("POST", "/retry"), ("POST", "/cancel")],
)
@pytest.mark.parametrize("job_id", ["0123456789abcdef0123456789abcdef", "no%00such"])
def test_an_unknown_job_is_a_404(untouched: Live, method: str, path: str, job_id: str) -> None:
    response = untouched.client.request(method, f"{JOBS}/{job_id}{path}")
    assert response.status_code == 404, response.text
    assert response.json()["detail"].startswith("no job ") and response.json()["detail"].endswith(
        " in the store"
    )


def test_reading_needs_a_read_key_and_changing_an_admin_key(served: Live) -> None:
    job_id = submit(served.client, delay_s=3600)["id"]
    reads = [JOBS, f"{JOBS}/{job_id}", f"{JOBS}/{job_id}/steps", f"{JOBS}/{job_id}/events"]
    changes = [(JOBS, {"flow": "one"}), (f"{JOBS}/{job_id}/cancel", None), (f"{JOBS}/{job_id}/retry", None)]
    with served.new_client(**READ) as reader, served.new_client() as anonymous:
        for path in reads:
            assert reader.get(path).status_code == 200, path
            assert anonymous.get(path).status_code == 401, path
        for path, body in changes:
            refused = reader.post(path, json=body)
            assert refused.status_code == 403, path
            assert refused.json()["detail"] == "this API key has role 'read'; POST needs 'admin'"
            assert anonymous.post(path, json=body).status_code == 401, path
    assert served.client.get(f"{JOBS}/{job_id}").json()["status"] == "queued"  # nothing changed
    assert len(served.client.get(JOBS).json()["items"]) == 1


def test_without_a_store_every_route_answers_503_saying_so() -> None:
    with live_server(FLOWS) as server:
        for method, path in [
            ("GET", JOBS),
            ("POST", JOBS),
            ("GET", f"{JOBS}/x"),
            ("GET", f"{JOBS}/x/steps"),
            ("GET", f"{JOBS}/x/events"),
            ("POST", f"{JOBS}/x/retry"),
            ("POST", f"{JOBS}/x/cancel"),
        ]:
            response = server.client.request(method, path, json={"flow": "one"} if method == "POST" else None)
            assert response.status_code == 503, (method, path)
            assert response.json()["detail"].startswith("no store configured: start the server with --store")


def test_jobs_outlive_the_server_and_the_cli_sees_them(store_url: str) -> None:
    with live_server(FLOWS, store=store_url) as server:
        job_id = submit(server.client, item={"kept": True})["id"]
    with live_server(FLOWS, store=store_url) as server:  # the store was closed, reopened
        assert server.client.get(f"{JOBS}/{job_id}").json()["status"] == "queued"
        shown = server.client.get(f"{JOBS}/{job_id}").json()
    cli = subprocess.run(
        [sys.executable, "-m", "weirflow", "jobs", "show", job_id, "--store", store_url, "--json"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    assert json.loads(cli.stdout) == shown  # the same shape


def test_a_bad_store_url_is_refused_naming_the_setting() -> None:
    with pytest.raises(SettingsError, match=r"^WEIRFLOW_STORE: store URL 'ftp://x': unknown scheme 'ftp'"):
        load_settings(store="ftp://x")
    assert load_settings(store="memory://").store == "memory://"
    assert load_settings().store is None
    proc = subprocess.run(
        [sys.executable, "-m", "weirflow", "serve", "--flows", FLOWS, "--store", "nope"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert proc.returncode == 2
    assert proc.stderr == (
        "error: --store: store URL 'nope' is not a URL: use memory://, "
        "sqlite:///path/weirflow.db, postgresql://... or redis://...\n"
    )


def test_a_store_that_cannot_be_opened_stops_serve_with_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    proc = subprocess.run(
        [
            sys.executable,
            *("-m", "weirflow", "serve", "--flows", FLOWS, "--port", "0"),
            *("--store", f"sqlite:///{blocker}/sub/weirflow.db"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert (proc.returncode, proc.stdout) == (2, "")  # bad usage, as for worker (docs/reference.md)
    assert proc.stderr == (
        f"error: cannot open the store: cannot open SQLite store {blocker}/sub/weirflow.db: "
        f"[Errno 20] Not a directory: '{blocker}/sub'\n"
    )


# -- the README -----------------------------------------------------------------------------


def _readme_blocks() -> list[str]:
    section = (ROOT / "README.md").read_text().split("## Durable jobs\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```bash\n(.*?)```", section, flags=re.S)


async def test_the_readme_curl_example_runs(store_url: str) -> None:
    _, serve, example = _readme_blocks()
    assert serve.startswith("weirflow serve --flows examples --store ")
    with live_server("examples", store=store_url) as server:
        port = server.url.rsplit(":", 1)[1]
        script = "set -euo pipefail\n" + example.replace("localhost:8000", f"127.0.0.1:{port}")
        proc = await asyncio.create_subprocess_exec(
            "bash", "-c", script, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
        )
        out, err = await asyncio.wait_for(proc.communicate(), 30)
        assert proc.returncode == 0, err.decode()
        job = json.loads(out)
        expected = re.search(r"^# (\{.*\})$", example, flags=re.M)
        assert expected is not None
        assert job == {**json.loads(expected.group(1)), "id": job["id"]}

        # what the README says the same GET answers once a worker ran the job
        async with (
            httpx.AsyncClient(base_url=server.url, timeout=10) as client,
            Worker(store_url, load_flows("examples"), poll_min_s=0.01, poll_max_s=0.05) as w,
        ):
            done = await finished(client, job["id"], w)
    assert (done["status"], done["attempt"]) == ("completed", 1)
    assert {s["routine"] for s in done["steps"]} == {"split", "count"}
    assert done["steps"][0] == {
        **done["steps"][0],
        **{"routine": "split", "seq": 1, "status": "completed", "attempt": 1, "progress": 100},
    }


def test_a_server_with_workers_runs_the_jobs_submitted_to_it() -> None:
    """``serve --store memory:// --workers 2``: one process takes jobs and runs them (a
    memory store is seen by no other process)."""
    with live_server(FLOWS, store="memory://", workers=2) as server:
        w: Worker = server.server.config.app.state.worker
        loop = w._main.get_loop()  # the server's event loop, in its own thread
        ids = [submit(server.client, item={"x": n})["id"] for n in range(3)]
        while True:
            seen = w.reports
            jobs = [server.client.get(f"{JOBS}/{job_id}").json() for job_id in ids]
            if all(job["status"] == "completed" for job in jobs):
                break
            asyncio.run_coroutine_threadsafe(w.wait_reports(seen), loop).result(timeout=20)
        assert all([s["status"] for s in job["steps"]] == ["completed"] * 3 for job in jobs)
        assert w.completed == 3
