"""Flows: list, graph, and queues aggregated over a flow's running jobs."""

from __future__ import annotations

from tests.server.conftest import FLOW_DIR, Live, live_server, send, start_job
from tests.server.flows.served import STREAM_CAPACITY


def test_list_flows(live: Live) -> None:
    flows = live.client.get("/api/flows").json()
    assert flows == [
        {
            "name": "stream",
            "routines": ["clean", "sink"],
            "inputs": ["clean.items", "sink.items"],
            "outputs": ["clean.out", "sink.all"],
        },
        {"name": "picky", "routines": ["check"], "inputs": ["check.items"], "outputs": ["check.out"]},
    ]


def test_flow_graph(live: Live) -> None:
    graph = live.client.get("/api/flows/stream").json()
    assert graph["name"] == "stream"
    assert graph["connections"] == ["clean.out -> sink.items"]
    assert graph["outputs"] == ["clean.out", "sink.all"]
    clean = graph["routines"]["clean"]
    assert clean["class"] == "Forward"
    assert clean["slots"] == {
        "items": {"capacity": STREAM_CAPACITY, "overflow": "block", "block_timeout_s": None}
    }
    assert clean["events"] == ["out"]
    assert clean["activations"] == [{"kind": "each", "slots": ["items"], "handler": "forward"}]
    assert graph["routines"]["sink"]["slots"]["items"]["capacity"] == 1000


def test_flows_from_a_directory_of_flow_files() -> None:
    with live_server(flows=FLOW_DIR) as server:
        assert [f["name"] for f in server.client.get("/api/flows").json()] == ["echo"]
        graph = server.client.get("/api/flows/echo").json()
        assert graph["routines"]["echo"]["slots"]["items"]["capacity"] == 2


def test_flow_queues_sum_over_running_jobs(fresh: Live) -> None:
    c = fresh.client
    empty = c.get("/api/flows/stream/queues").json()
    assert empty["jobs"] == 0 and empty["full"] == 0
    assert empty["slots"]["clean.items"]["size"] == 0

    a = start_job(c, "stream", keep_open=True)["id"]
    b = start_job(c, "stream", keep_open=True)["id"]
    for jid, n in ((a, STREAM_CAPACITY), (b, 1)):
        c.post(f"/api/jobs/{jid}/pause")
        assert send(c, jid, "clean.items", list(range(n))).status_code == 202
    done = start_job(c, "stream", inputs={"clean.items": [1]})["id"]
    c.get(f"/api/jobs/{done}/result", params={"wait_s": 10})  # finished jobs are not counted

    agg = c.get("/api/flows/stream/queues").json()
    assert agg["flow"] == "stream" and agg["jobs"] == 2
    slot = agg["slots"]["clean.items"]
    assert slot["jobs"] == 2
    assert slot["size"] == STREAM_CAPACITY + 1
    assert slot["capacity"] == 2 * STREAM_CAPACITY
    assert slot["enqueued"] == STREAM_CAPACITY + 1
    assert slot["usage"] == 1.0  # the maximum over jobs
    assert (slot["full"], slot["near_full"]) == (1, 0)
    assert (agg["full"], agg["near_full"]) == (1, 0)
    assert agg["slots"]["sink.items"]["size"] == 0
