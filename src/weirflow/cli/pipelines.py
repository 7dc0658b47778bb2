"""``weirflow pipelines start|list|show|pause|resume|stop|results|dead-letters --server URL``.

Every command talks to a running ``weirflow serve`` through ``wf.Client`` (the API key
from ``--api-key`` or ``WEIRFLOW_API_KEY``). ``results --follow`` keeps consuming and
printing outputs (one JSON value a line) until interrupted. Exit 2 with one ``error:``
line for a bad option, an unknown pipeline (404), a bad command (422) or a pipeline in
the wrong state (409); 1 when the server cannot be reached or times out (504).
"""

from __future__ import annotations

import datetime
import json
import select
import signal
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, TypeVar
from urllib.parse import urlsplit

import typer
from rich.table import Table

from ..errors import RequestError
from ..redact import redact_url
from .inputs import InputError
from .jobs import JsonOption, _console, _inputs_without_flow, _print_json

if TYPE_CHECKING:
    from ..client import Client

T = TypeVar("T")

pipelines_app = typer.Typer(
    name="pipelines",
    help="Start, watch and stop supervised pipelines on a weirflow server.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

ServerOption = Annotated[
    str,
    typer.Option("--server", metavar="URL", envvar="WEIRFLOW_SERVER", help="The weirflow server's URL."),
]
KeyOption = Annotated[
    str | None,
    typer.Option("--api-key", metavar="KEY", envvar="WEIRFLOW_API_KEY", help="API key (Bearer)."),
]
IdArgument = Annotated[str, typer.Argument(metavar="ID", help="The pipeline id.")]
DEFAULT_SERVER = "http://127.0.0.1:8000"
USAGE_ERROR = 2


def _exit(message: str, code: int) -> NoReturn:
    print(f"error: {message}", file=sys.stderr)
    raise typer.Exit(code)


@contextmanager
def _errors() -> Iterator[None]:
    try:
        yield
    except InputError as e:
        _exit(str(e), USAGE_ERROR)
    except RequestError as e:
        _exit(e.detail, USAGE_ERROR if 400 <= e.status < 500 else 1)


def _check_server(server: str) -> None:
    """A ``--server`` that is not an http(s) URL is bad usage (exit 2), not a server down (1)."""
    url = urlsplit(server)
    if url.scheme not in ("http", "https") or not url.hostname:
        _exit(f"--server {redact_url(server)!r} is not an http:// or https:// URL", USAGE_ERROR)


def _call(server: str, api_key: str | None, use: Callable[[Any], T]) -> T:
    from ..client import Client

    _check_server(server)
    with _errors(), Client(server, api_key=api_key) as client:
        return use(client)


def _time(at: float | None) -> str:
    if at is None:
        return ""
    return datetime.datetime.fromtimestamp(at, tz=datetime.UTC).strftime("%H:%M:%S")


def _table(infos: list[Any]) -> None:
    table = Table()
    for column in ("id", "name", "flow", "state", "pid", "restarts", "rss MiB", "rtt p50 ms", "last exit"):
        table.add_column(column)
    for p in infos:
        exit_ = p.last_exit.reason if p.last_exit is not None else ""
        rss = "" if p.rss_mb is None else f"{p.rss_mb:.0f}"
        rtt = p.health.rtt_ms.p50
        table.add_row(
            p.id,
            p.name,
            p.flow,
            p.state,
            str(p.pid or ""),
            str(p.restarts),
            rss,
            "" if rtt is None else f"{rtt:g}",
            exit_,
        )
    _console().print(table)


def _show(info: Any, as_json: bool) -> None:
    if as_json:
        _print_json(info.model_dump())
        return
    _table([info])
    if info.reason:
        print(f"reason: {info.reason}")
    h = info.health
    print(
        f"health: failures {h.failures}, interval {h.interval_s:g}s, deadline {h.deadline_s:g}s, "
        f"last ok {_time(h.last_ok_at)}"
    )


@pipelines_app.command()
def start(
    flow: Annotated[str, typer.Argument(metavar="FLOW", help="The flow's name.")],
    input_: Annotated[
        list[str] | None,
        typer.Option("--input", "-i", metavar="ROUTINE.SLOT=VALUE", help="A JSON value or @file; repeat."),
    ] = None,
    name: Annotated[str | None, typer.Option("--name", help="A name to show.")] = None,
    restart: Annotated[
        str, typer.Option("--restart", help="permanent, transient or temporary.")
    ] = "permanent",
    max_rss_mb: Annotated[float | None, typer.Option("--max-rss-mb", help="Replace past this RSS.")] = None,
    server: ServerOption = DEFAULT_SERVER,
    api_key: KeyOption = None,
    as_json: JsonOption = False,
) -> None:
    """Start a pipeline; prints it (its id first)."""
    with _errors():
        inputs = _inputs_without_flow(input_ or [])
    info = _call(
        server,
        api_key,
        lambda c: c.start_pipeline(flow, inputs, name=name, restart=restart, max_rss_mb=max_rss_mb),
    )
    if as_json:
        _print_json(info.model_dump())
    else:
        print(info.id)


@pipelines_app.command("list")
def list_(
    server: ServerOption = DEFAULT_SERVER, api_key: KeyOption = None, as_json: JsonOption = False
) -> None:
    """Every pipeline on the server."""
    infos = _call(server, api_key, lambda c: c.pipelines())
    if as_json:
        _print_json([p.model_dump() for p in infos])
    else:
        _table(infos)


@pipelines_app.command()
def show(
    pipeline_id: IdArgument,
    server: ServerOption = DEFAULT_SERVER,
    api_key: KeyOption = None,
    as_json: JsonOption = False,
) -> None:
    """One pipeline: state, restarts, last exit, health."""
    _show(_call(server, api_key, lambda c: c.pipeline(pipeline_id)), as_json)


@pipelines_app.command()
def pause(
    pipeline_id: IdArgument,
    server: ServerOption = DEFAULT_SERVER,
    api_key: KeyOption = None,
    as_json: JsonOption = False,
) -> None:
    """Pause the pipeline's job (sends keep queueing)."""
    _show(_call(server, api_key, lambda c: c.pause_pipeline(pipeline_id)), as_json)


@pipelines_app.command()
def resume(
    pipeline_id: IdArgument,
    server: ServerOption = DEFAULT_SERVER,
    api_key: KeyOption = None,
    as_json: JsonOption = False,
) -> None:
    """Resume a paused pipeline."""
    _show(_call(server, api_key, lambda c: c.resume_pipeline(pipeline_id)), as_json)


@pipelines_app.command()
def stop(
    pipeline_id: IdArgument,
    grace_s: Annotated[float | None, typer.Option("--grace-s", help="Drain time before SIGTERM.")] = None,
    server: ServerOption = DEFAULT_SERVER,
    api_key: KeyOption = None,
    as_json: JsonOption = False,
) -> None:
    """Stop a pipeline: drain, SIGTERM, SIGKILL after the grace period."""
    _show(_call(server, api_key, lambda c: c.stop_pipeline(pipeline_id, grace_s=grace_s)), as_json)


@pipelines_app.command("dead-letters")
def dead_letters(
    pipeline_id: IdArgument,
    server: ServerOption = DEFAULT_SERVER,
    api_key: KeyOption = None,
    as_json: JsonOption = False,
) -> None:
    """Items the pipeline did not process (its child ended first...), oldest first."""
    page = _call(server, api_key, lambda c: c.pipeline_dead_letters(pipeline_id))
    if as_json:
        _print_json(page.model_dump())
        return
    table = Table()
    for column in ("seq", "slot", "reason", "item", "error", "at"):
        table.add_column(column)
    for d in page.items:
        item = json.dumps(d.item, ensure_ascii=False, default=repr)
        table.add_row(str(d.seq or ""), d.slot, d.reason, item, d.error or "", _time(d.at))
    _console().print(table)
    dropped = f" ({page.dropped} older ones no longer kept)" if page.dropped else ""
    print(f"{page.total} dead letter(s){dropped}")


@pipelines_app.command()
def rm(
    pipeline_id: IdArgument,
    server: ServerOption = DEFAULT_SERVER,
    api_key: KeyOption = None,
    as_json: JsonOption = False,
) -> None:
    """Remove a stopped or failed pipeline (with its unread outputs) from the server."""
    _show(_call(server, api_key, lambda c: c.forget_pipeline(pipeline_id)), as_json)


@pipelines_app.command()
def results(
    pipeline_id: IdArgument,
    max_items: Annotated[int, typer.Option("--max", min=1, help="At most this many per call.")] = 100,
    wait_s: Annotated[float, typer.Option("--wait-s", min=0, help="Wait this long for the first.")] = 1.0,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep consuming until Ctrl-C.")] = False,
    server: ServerOption = DEFAULT_SERVER,
    api_key: KeyOption = None,
) -> None:
    """Consume the pipeline's outputs, printing one JSON value a line (oldest first)."""
    from ..client import Client

    _check_server(server)
    with _errors(), Client(server, api_key=api_key) as client:
        try:
            # consuming needs an admin key: find out before printing anything (takes nothing)
            client.pipeline_results(pipeline_id, before=0)
            while True:
                if not _print_a_page(client, pipeline_id, max_items, wait_s) and not follow:
                    return
        except KeyboardInterrupt:
            # what was printed was consumed, what was not was not (see _print_a_page), and a
            # script can tell an interrupt from the end of the outputs
            raise typer.Exit(130) from None


def _print_a_page(client: Client, pipeline_id: str, max_items: int, wait_s: float) -> int:
    """Peek at up to ``max_items`` outputs, print them, then consume exactly those printed
    (``before``); how many are left. Consuming first would lose a page an interrupt cuts
    short. An interrupt while waiting for the page stops at once (nothing was taken); one
    while it is printed lets the line in hand finish and the lines printed be consumed,
    then stops (a second one stops at once: a reader that does not read any more)."""
    page = client.pipeline_results(pipeline_id, max_items=max_items, wait_s=wait_s, peek=True)
    with _interrupt_deferred() as interrupted:
        printed = 0
        try:
            for item in page.items:
                if interrupted:
                    break
                _write_line(json.dumps(item, ensure_ascii=False, default=repr))
                printed += 1
        finally:
            left = page.remaining
            if printed:
                done = client.pipeline_results(pipeline_id, max_items=printed, before=page.offset + printed)
                left = done.remaining
    return left


def _write_line(text: str) -> None:
    """``text`` and a newline on stdout, all of it, flushed. Written by hand rather than with
    ``print``: when stdout's binary layer is unbuffered (``PYTHONUNBUFFERED=1``, common in
    containers, or ``python -u``), ``print`` hands the text to the raw file in one call and
    ignores how much of it was written, so a write that a signal (the Ctrl-C this command
    defers) cuts short drops the rest of the line. This writes until all of it is out."""
    out = sys.stdout
    out.flush()
    binary = getattr(out, "buffer", None)
    if binary is None:  # a text-only stream
        out.write(text + "\n")
        out.flush()
        return
    data = memoryview((text + "\n").encode(out.encoding or "utf-8", out.errors or "strict"))
    while data:
        n = binary.write(data)
        if n is None:  # a non-blocking stdout that is full: wait until it takes more
            select.select([], [binary.fileno()], [])
            continue
        data = data[n:]
    binary.flush()


@contextmanager
def _interrupt_deferred() -> Iterator[list[int]]:
    """SIGINT in the block is noted (the list yielded is non-empty then) and raised as
    ``KeyboardInterrupt`` at its end; a second one is raised at once. Not the main thread
    (no signal handler can be set): as usual."""
    interrupts: list[int] = []

    def note(signum: int, frame: object) -> None:
        interrupts.append(signum)
        if len(interrupts) > 1:
            raise KeyboardInterrupt

    try:
        previous = signal.signal(signal.SIGINT, note)
    except ValueError:
        yield interrupts
        return
    try:
        yield interrupts
    finally:
        signal.signal(signal.SIGINT, previous)
    if interrupts:
        raise KeyboardInterrupt
