"""``/api/store/schedules``: schedules over HTTP against a live server with a SQLite store, and
a real worker firing one added over HTTP."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.durable import flows
from tests.durable.helpers import until
from tests.server.conftest import ADMIN_KEY, READ_KEY, Live, live_server
from weirflow.durable import open_store
from weirflow.durable.worker import Worker

FLOWS = "tests.durable.flows"
ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}
READ = {"Authorization": f"Bearer {READ_KEY}"}
SCHEDULES = "/api/store/schedules"
JOBS = "/api/store/jobs"


@pytest.fixture
def store_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'weirflow.db'}"


@pytest.fixture
def served(store_url: str) -> Iterator[Live]:
    with live_server(
        FLOWS, headers=ADMIN, store=store_url, api_keys=f"{ADMIN_KEY}:admin,{READ_KEY}:read"
    ) as server:
        yield server


def add(served: Live, **body: Any) -> dict[str, Any]:
    response = served.client.post(SCHEDULES, json={"flow": "noop", **body})
    assert response.status_code == 201, response.text
    doc: dict[str, Any] = response.json()
    return doc


def test_add_list_replace_and_remove(served: Live) -> None:
    nightly = add(
        served, name="nightly", cron="0 3 * * *", tz="Europe/Paris", inputs={"n.input": [1]}, priority=2
    )
    assert {k: nightly[k] for k in ("name", "flow", "cron", "every_s", "tz", "catchup", "priority")} == {
        "name": "nightly",
        "flow": "noop",
        "cron": "0 3 * * *",
        "every_s": None,
        "tz": "Europe/Paris",
        "catchup": "once",
        "priority": 2,
    }
    assert nightly["next_at"] > nightly["created_at"] and nightly["last_job_id"] is None
    add(served, name="beat", every_s=60, queue="other", catchup="skip")
    assert [s["name"] for s in served.client.get(SCHEDULES).json()] == ["beat", "nightly"]
    assert [s["name"] for s in served.client.get(SCHEDULES, params={"queue": "other"}).json()] == ["beat"]
    again = add(served, name="nightly", cron="0 3 * * *", tz="Europe/Paris", priority=7)  # replaced
    assert again["priority"] == 7 and again["next_at"] == nightly["next_at"]
    assert served.client.delete(f"{SCHEDULES}/nightly").status_code == 204
    gone = served.client.delete(f"{SCHEDULES}/nightly")
    assert gone.status_code == 404 and gone.json()["detail"] == "no schedule 'nightly' in the store"
    assert [s["name"] for s in served.client.get(SCHEDULES).json()] == ["beat"]


@pytest.mark.parametrize(
    ("body", "loc", "message"),
    [
        ({"name": "s", "cron": "61 * * * *"}, ["body", "cron"], "bad cron expression '61 * * * *'"),
        ({"name": "s", "cron": "*/5 * * * *", "tz": "Mars/Olympus"}, ["body", "tz"], "unknown time zone"),
        ({"name": "s"}, ["body"], "exactly one of cron= and every_s="),
        ({"name": "s", "cron": "* * * * *", "every_s": 60}, ["body"], "exactly one of cron= and every_s="),
        ({"name": "s", "every_s": 0.5}, ["body", "every_s"], "greater than or equal to 1"),
        ({"name": "s", "every_s": 60, "catchup": "all"}, ["body", "catchup"], "'once' or 'skip'"),
        ({"name": "s", "every_s": 60, "flow": "nope"}, ["body", "flow"], "no flow named 'nope'"),
        ({"name": "s", "every_s": 60, "inputs": {"x.y": [1]}}, ["body", "inputs"], "has no slot 'x.y'"),
        ({"name": "", "every_s": 60}, ["body", "name"], "at least 1 character"),
    ],
)
def test_a_bad_schedule_is_a_422_naming_the_field(
    served: Live, body: dict[str, Any], loc: list[Any], message: str
) -> None:
    response = served.client.post(SCHEDULES, json={"flow": "noop", **body})
    assert response.status_code == 422, response.text
    assert response.json()["errors"][0]["loc"] == loc
    assert message in response.json()["detail"]
    assert served.client.get(SCHEDULES).json() == []


def test_reading_needs_a_read_key_and_changing_an_admin_key(served: Live) -> None:
    add(served, name="beat", every_s=60)
    with served.new_client(**READ) as reader, served.new_client() as anonymous:
        assert reader.get(SCHEDULES).status_code == 200
        assert anonymous.get(SCHEDULES).status_code == 401
        for refused in (
            reader.post(SCHEDULES, json={"name": "x", "flow": "noop", "every_s": 60}),
            reader.delete(f"{SCHEDULES}/beat"),
        ):
            assert refused.status_code == 403
        assert anonymous.delete(f"{SCHEDULES}/beat").status_code == 401
    assert [s["name"] for s in served.client.get(SCHEDULES).json()] == ["beat"]


def test_without_a_store_the_routes_answer_503() -> None:
    with live_server(FLOWS) as server:
        for method in ("GET", "POST"):
            response = server.client.request(
                method, SCHEDULES, json={"name": "s", "flow": "noop", "every_s": 60}
            )
            assert response.status_code == 503 and "no store configured" in response.json()["detail"]


async def test_a_worker_fires_a_schedule_added_over_http(served: Live, store_url: str) -> None:
    add(served, name="beat", every_s=1, inputs={"n.input": ["tick"]})
    store = open_store(store_url)
    await store.open()
    try:
        async with Worker(store, [flows.noop], poll_max_s=0.05) as worker:

            async def fired() -> bool:
                return any(s["last_job_id"] for s in served.client.get(SCHEDULES).json())

            await until(fired, worker, timeout_s=15)
            [schedule] = served.client.get(SCHEDULES).json()
            info = await store.wait_finished(schedule["last_job_id"], 10)
        assert info is not None and info.status == "completed"
        job = served.client.get(f"{JOBS}/{schedule['last_job_id']}").json()
        assert job["outputs"] == {"n.output": ["tick"]}
    finally:
        await store.close()
