"""``wf.Client`` and ``wf.AsyncClient`` against a live server: answers as the server's models,
errors as the exceptions the same calls raise in process."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

import weirflow as wf
from tests.server.conftest import ADMIN_KEY, READ_KEY, Live, live_server
from tests.server.flows.served import STREAM_CAPACITY

KEYS = f"{ADMIN_KEY}:admin,{READ_KEY}:read"


@pytest.fixture(scope="module")
def live() -> Iterator[Live]:
    with live_server(api_keys=KEYS) as server:
        yield server


@pytest.fixture
def client(live: Live) -> Iterator[wf.Client]:
    with wf.Client(live.url, api_key=ADMIN_KEY) as c:
        yield c


def test_start_send_close_and_wait_for_the_result(client: wf.Client) -> None:
    job = client.start("stream", {"clean.items": "a"}, keep_open=True)
    assert job.flow == "stream" and job.status in (wf.JobStatus.RUNNING, wf.JobStatus.PENDING)
    assert client.send(job.id, "clean.items", "b", "c") == 2
    client.close_input(job.id)
    result = client.wait(job.id, timeout_s=10)
    assert result.status is wf.JobStatus.COMPLETED
    assert result.outputs == {"clean.out": ["a", "b", "c"], "sink.all": [["a", "b", "c"]]}
    assert client.job(job.id).status is wf.JobStatus.COMPLETED
    assert any(j.id == job.id for j in client.jobs(flow="stream").items)
    assert client.queues(job.id).slots["clean.items"].processed == 3
    pair = client.start("stream", {"clean.items": ("x", "y")})  # a tuple is items, as engine.start reads it
    assert client.wait(pair.id, timeout_s=10).outputs["clean.out"] == ["x", "y"]


def test_errors_are_the_in_process_exceptions(client: wf.Client, live: Live) -> None:
    with pytest.raises(wf.JobError) as unknown:
        client.job("nope")
    assert isinstance(unknown.value, wf.RequestError) and unknown.value.status == 404

    job = client.start("stream", keep_open=True)
    client.pause(job.id)  # a paused job does not complete when its input closes
    client.close_input(job.id)
    with pytest.raises(wf.InputClosedError) as closed:  # as job.send raises it in process
        client.send(job.id, "clean.items", "late")
    assert closed.value.status == 409 and "input is closed" in closed.value.detail
    client.cancel(job.id)
    with pytest.raises(wf.JobFinishedError):
        client.send(job.id, "clean.items", "later")

    with pytest.raises(wf.RequestError) as bad:
        client.send("nope", "clean.items", 1)
    assert bad.value.status == 404

    with wf.Client(live.url, api_key="wrong") as stranger, pytest.raises(wf.client.AuthError) as auth:
        stranger.jobs()
    assert auth.value.status == 401
    with wf.Client(live.url, api_key=READ_KEY) as reader, pytest.raises(wf.client.AuthError) as role:
        reader.start("stream")
    assert role.value.status == 403


def test_a_slot_that_stays_full_is_slot_full_error_with_what_was_accepted(client: wf.Client) -> None:
    job = client.start("stream", keep_open=True)
    client.pause(job.id)
    items = list(range(STREAM_CAPACITY + 3))
    with pytest.raises(wf.SlotFullError) as full:
        client.send(job.id, "clean.items", *items, timeout_s=0.2)
    assert full.value.status == 429
    assert full.value.slot == "clean.items" and full.value.capacity == STREAM_CAPACITY
    assert full.value.accepted == STREAM_CAPACITY  # type: ignore[attr-defined]
    client.cancel(job.id)
    result = client.wait(job.id, timeout_s=10)
    assert [d.item for d in result.dead_letters] == items[:STREAM_CAPACITY]  # the accepted ones


def test_debugging_through_the_client(client: wf.Client) -> None:
    job = client.start("stream", keep_open=True)
    with pytest.raises(wf.DebugError) as bad:
        client.add_breakpoint(job.id, "connection", "clean.out -> sink.items", "item ==")
    assert bad.value.line == 1  # type: ignore[attr-defined]
    bp = client.add_breakpoint(job.id, "connection", "clean.out -> sink.items", "item == 'b'")
    assert [b.id for b in client.breakpoints(job.id)] == [bp.id]
    client.send(job.id, "clean.items", "a", "b", "c")
    for event in client.events(job.id):
        if event.kind == "breakpoint":
            break
    view = client.debug(job.id)
    assert view.location is not None and view.location.item == "b"
    assert client.evaluate(job.id, "item + '!'") == "b!"
    assert client.set_item(job.id, "B").item == "B"
    stepped = client.step(job.id, wait_s=5)  # "B" goes on; stops at clean's next call
    assert stepped.paused and stepped.location is not None and stepped.location.routine == "clean"
    client.remove_breakpoint(job.id, bp.id)
    client.debug_resume(job.id)
    client.close_input(job.id)
    assert client.wait(job.id, timeout_s=10).outputs["sink.all"] == [["a", "B", "c"]]


class CuttingProxy:
    """A TCP proxy that cuts the first connection after ``cut_after`` bytes from the server."""

    def __init__(self, target: str, cut_after: int) -> None:
        parts = urlsplit(target)
        self.target = (parts.hostname or "127.0.0.1", parts.port or 80)
        self.cut_after = cut_after
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.connections = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                down, _ = self.listener.accept()
            except OSError:
                return
            self.connections += 1
            up = socket.create_connection(self.target)
            limit = self.cut_after if self.connections == 1 else None
            threading.Thread(target=self._pipe, args=(down, up, None), daemon=True).start()
            threading.Thread(target=self._pipe, args=(up, down, limit), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket, limit: int | None) -> None:
        sent = 0
        try:
            while data := src.recv(4096 if limit is None else 1):
                dst.sendall(data)
                sent += len(data)
                if limit is not None and sent >= limit:
                    break
        except OSError:
            pass
        for s in (src, dst):  # shutdown first: a recv blocked in the other thread keeps it open
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()

    def close(self) -> None:
        self.listener.close()


def test_events_reconnect_from_the_last_event_id_and_miss_nothing(client: wf.Client, live: Live) -> None:
    job = client.start("stream", {"clean.items": ["a", "b"]})
    client.wait(job.id, timeout_s=10)
    with wf.Client(live.url, api_key=ADMIN_KEY) as direct:
        expected = [(e.id, e.kind) for e in direct.events(job.id)]
    assert expected[-1][1] == "end" and len(expected) >= 3
    proxy = CuttingProxy(live.url, cut_after=400)  # inside the stream, after the first events
    try:
        with wf.Client(proxy.url, api_key=ADMIN_KEY) as cut:
            got = [(e.id, e.kind) for e in cut.events(job.id)]
    finally:
        proxy.close()
    assert proxy.connections == 2
    assert got == expected  # nothing missed, nothing twice
    with wf.Client(live.url, api_key=ADMIN_KEY) as later:
        after = [e.id for e in later.events(job.id, last_event_id=expected[1][0] or 0)]
    assert after == [i for i, _ in expected[2:]]


class EndingProxy:
    """An HTTP proxy (as nginx at its read timeout) that ends the first answer cleanly, a
    complete chunked body, after ``events`` of its server-sent events; later connections
    pass through untouched. Records each request's ``Last-Event-ID``."""

    def __init__(self, target: str, events: int) -> None:
        parts = urlsplit(target)
        self.target = (parts.hostname or "127.0.0.1", parts.port or 80)
        self.events = events
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.last_event_ids: list[str] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                down, _ = self.listener.accept()
            except OSError:
                return
            first = not self.last_event_ids
            threading.Thread(target=self._serve, args=(down, first), daemon=True).start()

    def _serve(self, down: socket.socket, first: bool) -> None:
        up = socket.create_connection(self.target)
        try:
            reader, upstream = down.makefile("rb"), up.makefile("rb")
            request = b""
            while not request.endswith(b"\r\n\r\n"):
                request += reader.readline()
            for line in request.decode().split("\r\n"):
                if line.lower().startswith("last-event-id:"):
                    self.last_event_ids.append(line.split(":", 1)[1].strip())
            up.sendall(request)
            head = b""
            while not head.endswith(b"\r\n\r\n"):
                head += upstream.readline()
            down.sendall(head)
            seen = 0
            while True:  # the body, chunk by chunk (the server writes one event per chunk)
                size_line = upstream.readline()
                size = int(size_line.split(b";")[0], 16)
                chunk = upstream.read(size + 2)
                down.sendall(size_line + chunk)
                if size == 0:
                    return
                seen += chunk.count(b"\nid: ") + chunk.startswith(b"id: ")
                if first and seen >= self.events:
                    down.sendall(b"0\r\n\r\n")  # a complete answer, without the end event
                    return
        except (OSError, ValueError):
            pass
        finally:
            for s in (down, up):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
                s.close()

    def close(self) -> None:
        self.listener.close()


def test_events_reconnect_when_the_stream_ends_before_its_end_event(client: wf.Client, live: Live) -> None:
    job = client.start("stream", {"clean.items": ["a", "b", "c"]})
    client.wait(job.id, timeout_s=10)
    expected = [(e.id, e.kind) for e in client.events(job.id)]
    assert expected[-1][1] == "end" and len(expected) >= 3
    proxy = EndingProxy(live.url, events=2)
    try:
        with wf.Client(proxy.url, api_key=ADMIN_KEY) as ended:
            got = [(e.id, e.kind) for e in ended.events(job.id)]
    finally:
        proxy.close()
    assert got == expected  # nothing missed, nothing twice
    assert proxy.last_event_ids == ["0", str(expected[1][0])]


async def test_the_async_client_reconnects_too(client: wf.Client, live: Live) -> None:
    job = client.start("stream", {"clean.items": ["a", "b", "c"]})
    client.wait(job.id, timeout_s=10)
    expected = [(e.id, e.kind) for e in client.events(job.id)]
    proxy = EndingProxy(live.url, events=1)
    try:
        async with wf.AsyncClient(proxy.url, api_key=ADMIN_KEY) as ended:
            got = [(e.id, e.kind) async for e in ended.events(job.id)]
    finally:
        proxy.close()
    assert got == expected
    assert proxy.last_event_ids == ["0", str(expected[0][0])]


def test_events_give_up_after_a_bounded_number_of_reconnects(live: Live) -> None:
    closed = socket.create_server(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()  # nothing listens there now: every attempt is refused at once
    with wf.Client(f"http://127.0.0.1:{port}") as gone:
        with pytest.raises(wf.RequestError, match="gave up after 2 reconnects"):
            list(gone.events("j", max_reconnects=2))
        with pytest.raises(wf.RequestError, match="broke"):
            list(gone.events("j", reconnect=False))


def test_durable_jobs_through_the_client(tmp_path: Path) -> None:
    with (
        live_server("tests.durable.flows", store=f"sqlite:///{tmp_path / 'w.db'}", workers=1) as live,
        wf.Client(live.url) as client,
    ):
        submitted = client.submit("noop", {"n.input": [1]}, idempotency_key="k1")
        again = client.submit("noop", {"n.input": [1]}, idempotency_key="k1")
        assert again.id == submitted.id
        assert client.store_job(submitted.id).flow == "noop"
        assert [j.id for j in client.store_jobs(flow="noop").items] == [submitted.id]
        with pytest.raises(wf.JobError) as gone:
            client.store_job("nope")
        assert gone.value.status == 404


async def test_the_async_client_makes_the_same_calls(live: Live) -> None:
    async with wf.AsyncClient(live.url, api_key=ADMIN_KEY) as client:
        job = await client.start("stream", {"clean.items": ["x"]}, keep_open=True)
        assert await client.send(job.id, "clean.items", "y") == 1
        await client.close_input(job.id)
        result = await client.wait(job.id, timeout_s=10)
        assert result.outputs["sink.all"] == [["x", "y"]]
        kinds = [e.kind async for e in client.events(job.id)]
        assert kinds[-1] == "end"
        with pytest.raises(wf.JobFinishedError):
            await client.send(job.id, "clean.items", "late")


def test_wait_and_send_keep_to_a_server_whose_caps_are_lower_than_their_defaults() -> None:
    """``wait`` long-polls in chunks of 25 s and ``send`` waited 5 s by default: against a
    server with ``max_wait_s`` and ``max_send_timeout_s`` of 0.5 both were refused (422).
    ``wait`` now lowers its chunk to the cap ``/openapi.json`` states; ``send`` leaves its
    default to the server."""
    with live_server(max_wait_s=0.5, max_send_timeout_s=0.5) as server, wf.Client(server.url) as client:
        job = client.start("stream", keep_open=True)
        assert client.send(job.id, "clean.items", "a") == 1
        client.close_input(job.id)
        assert client.wait(job.id, timeout_s=30).outputs["clean.out"] == ["a"]
        with pytest.raises(wf.RequestError) as over:  # a timeout_s given over the cap is still refused
            client.send(client.start("stream", keep_open=True).id, "clean.items", "b", timeout_s=1)
        assert over.value.status == 422


async def test_the_async_client_keeps_to_the_caps_too() -> None:
    with live_server(max_wait_s=0.5, max_send_timeout_s=0.5) as server:
        async with wf.AsyncClient(server.url) as client:
            job = await client.start("stream", keep_open=True)
            assert await client.send(job.id, "clean.items", "a") == 1
            await client.close_input(job.id)
            assert (await client.wait(job.id, timeout_s=30)).outputs["clean.out"] == ["a"]
