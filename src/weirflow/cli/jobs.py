"""``weirflow jobs submit|list|show|wait|steps|retry|cancel``: durable jobs in a store.

Tables on stdout (``rich``), or JSON with ``--json``; ``jobs show --json`` prints
the shape of API.md (``JobInfo.to_dict()``). Exit 2 with one ``error:`` line on
bad input, an unknown job, or an operation the job's state does not allow.
``jobs wait`` exits 0 once the job completed, 1 once it failed (or was cancelled),
2 when the time is up first.
"""

from __future__ import annotations

import asyncio
import datetime
import json
import os
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from ..durable.models import (
    COMPLETED,
    DEFAULT_BACKOFF,
    DEFAULT_QUEUE,
    FINISHED,
    STATUSES,
    JobInfo,
    JobRecord,
    JobSpec,
    StepRecord,
)
from ..durable.store import Store, open_store, sqlite_file
from ..errors import JobError, JobTimeoutError, StoreError, StoreOpenError
from ..redact import redact_url
from .cluster_options import labels_option, pool_option, registry_option
from .durable_common import DEFAULT_STORE, FAILURE, USAGE_ERROR, StoreOption, cli_errors, load
from .inputs import InputError, parse_inputs, parse_value

T = TypeVar("T")

jobs_app = typer.Typer(
    name="jobs",
    help="Submit, list, inspect, retry and cancel durable jobs in a store.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

#: how long past ``jobs wait --timeout`` the store may take to answer its last read
WAIT_ANSWER_MARGIN_S = 1.0
#: past that margin, what the command gives the store's driver to stop before it exits anyway
EXIT_GRACE_S = 0.5
#: the longest --timeout (a year): a longer one (or ``inf``) overflows the timers that end
#: the command (``threading.TIMEOUT_MAX``, the platform's ``time_t``)
MAX_WAIT_S = 365 * 86400.0


def _exit_at(at: float, message: str) -> threading.Timer:
    """Exit 2 with ``message`` at ``at`` (monotonic) unless cancelled first."""

    def give_up() -> None:
        print(f"error: {message}", file=sys.stderr, flush=True)
        sys.stdout.flush()
        os._exit(USAGE_ERROR)

    timer = threading.Timer(max(0.0, at - time.monotonic()), give_up)
    timer.daemon = True
    timer.start()
    return timer


JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
IdArgument = Annotated[str, typer.Argument(metavar="ID", help="The job id.")]


def _with_store(
    url: str,
    use: Callable[[Store], Awaitable[T]],
    *,
    create: bool = False,
    open_within_s: float | None = None,
    open_limit: str = "",
) -> T:
    """Open the store at ``url``, ``use`` it, close it. Only ``create`` (``jobs submit``) makes a
    SQLite store that is not there yet (and says so); reading one that does not exist is a
    usage error, not an empty answer from a file made just now. A store that has not opened
    within ``open_within_s`` (``jobs wait --timeout``) is a ``StoreOpenError`` then, not after
    the store's own connect timeout."""
    store = open_store(url)
    path = sqlite_file(url)
    creating = path is not None and not path.exists()
    if creating and not create:
        raise InputError(
            f"no store at {path}: nothing was submitted there "
            "(weirflow jobs submit or weirflow worker create one); check --store"
        )

    async def run() -> T:
        try:  # a store that cannot be opened at all is bad usage (exit 2), as for the worker
            async with asyncio.timeout(open_within_s):
                await store.open()
        except TimeoutError:
            raise StoreOpenError(
                f"the store {redact_url(url)} did not open within {open_limit or f'{open_within_s:g}s'}"
            ) from None
        except StoreOpenError:
            raise
        except StoreError as e:
            raise StoreOpenError(str(e)) from e
        if creating:  # (said once made: a store that cannot be made is only its error line)
            print(f"weirflow: creating the store {path}", file=sys.stderr)
        try:
            return await use(store)
        finally:
            await store.close()

    return asyncio.run(run())


async def _job(store: Store, job_id: str) -> JobRecord:
    record = await store.get(job_id)
    if record is None:
        raise JobError(f"no job {job_id!r} in the store")
    return record


def _time(at: float | None) -> str:
    if at is None:
        return ""
    return datetime.datetime.fromtimestamp(at, tz=datetime.UTC).strftime("%Y-%m-%d %H:%M:%S")


def _console() -> Console:
    """Tables at full width when stdout is a file or a pipe (rich would wrap at 80)."""
    return Console() if sys.stdout.isatty() else Console(width=250)


def _print_json(value: Any) -> None:
    print(json.dumps(value, ensure_ascii=False, default=repr))


def _inputs_without_flow(options: list[str]) -> dict[str, list[Any]]:
    inputs: dict[str, list[Any]] = {}
    for option in options:
        slot, sep, value = option.partition("=")
        slot = slot.strip()
        if not sep or slot.count(".") != 1:
            raise InputError(f"--input {option!r}: expected routine.slot=VALUE (VALUE is JSON, or @file)")
        inputs.setdefault(slot, []).extend(parse_value(slot, value, index=len(inputs.get(slot, []))))
    return inputs


@jobs_app.command()
def submit(
    flow: Annotated[str, typer.Argument(metavar="FLOW", help="The flow's name.")],
    input_: Annotated[
        list[str] | None,
        typer.Option(
            "--input", "-i", metavar="ROUTINE.SLOT=VALUE", help="A JSON value or @file; repeat to append."
        ),
    ] = None,
    store: StoreOption = DEFAULT_STORE,
    flows: Annotated[
        str | None,
        typer.Option(
            "--flows", metavar="DIR_OR_MODULE", help="Check the flow and its slots before submitting."
        ),
    ] = None,
    queue: Annotated[
        str | None, typer.Option("--queue", help="default: the --pool's name, else 'default'.")
    ] = None,
    attempts: Annotated[int, typer.Option("--attempts", min=1)] = 3,
    priority: Annotated[int, typer.Option("--priority", help="Higher runs first.")] = 0,
    delay: Annotated[float, typer.Option("--delay", metavar="S", min=0)] = 0.0,
    timeout: Annotated[float | None, typer.Option("--timeout", metavar="S")] = None,
    idempotency_key: Annotated[str | None, typer.Option("--idempotency-key", metavar="KEY")] = None,
    registry: Annotated[str | None, registry_option("the cluster's node registry, for --pool")] = None,
    pool: Annotated[
        str | None, pool_option("Assign the job to the least loaded node of this pool with room.")
    ] = None,
    labels: Annotated[
        list[str] | None, labels_option("With --pool: only nodes with this label (repeat).")
    ] = None,
) -> None:
    """Queue a job of FLOW; prints its id."""
    with cli_errors():
        place = _place(registry, pool, labels or [])
        if flows is not None:
            known = {f.name: f for f in load(flows)}
            if flow in known:
                inputs = parse_inputs(input_ or [], known[flow])
            else:
                # queued all the same (a worker with other flows may serve it), but said at once:
                # a worker started with these --flows would never run it
                print(
                    f"warning: no flow named {flow!r} in {flows} (flows: {', '.join(sorted(known))}):"
                    " a worker serving only these flows will not run this job",
                    file=sys.stderr,
                )
                inputs = _inputs_without_flow(input_ or [])
        else:
            inputs = _inputs_without_flow(input_ or [])
        spec = JobSpec(
            flow=flow,
            inputs=dict(inputs),
            queue=queue or pool or DEFAULT_QUEUE,
            max_attempts=attempts,
            backoff=DEFAULT_BACKOFF,
            delay_s=delay,
            priority=priority,
            idempotency_key=idempotency_key,
            timeout_s=timeout,
        )
        if place is None:
            print(_with_store(store, lambda s: s.submit(spec), create=True))
            return
        from .nodes import submit_to_pool

        url, pool_name, wanted = place
        print(
            _with_store(
                store, lambda s: submit_to_pool(url, s, spec, pool=pool_name, labels=wanted), create=True
            )
        )


def _place(
    registry: str | None, pool: str | None, labels: list[str]
) -> tuple[str, str, dict[str, str]] | None:
    """``(registry URL, pool, labels)`` for a submit with ``--pool``; ``None`` without."""
    from .nodes import parse_labels

    if pool is None:
        if labels:
            raise InputError("--labels picks among the nodes of a pool: give --pool too")
        return None
    if not pool:
        raise InputError("--pool must not be empty")
    if registry is None:
        raise InputError("--pool needs --registry URL (the node registry to dispatch the job through)")
    # checked before any store is opened (or made): a refused command creates nothing
    from ..cluster.registry import redact
    from ..redis_url import registry_url_problem

    problem = registry_url_problem(registry)
    if problem is not None:
        raise InputError(f"--registry {redact(registry)!r}: {problem}")
    return registry, pool, parse_labels(labels)


@jobs_app.command("list")
def list_(
    store: StoreOption = DEFAULT_STORE,
    queue: Annotated[str | None, typer.Option("--queue")] = None,
    status: Annotated[str | None, typer.Option("--status", help=f"One of {', '.join(STATUSES)}.")] = None,
    flow: Annotated[str | None, typer.Option("--flow", help="Only jobs of this flow.")] = None,
    limit: Annotated[int, typer.Option("--limit", min=1)] = 50,
    offset: Annotated[int, typer.Option("--offset", min=0, help="Skip this many of the newest.")] = 0,
    as_json: JsonOption = False,
) -> None:
    """The newest jobs."""
    with cli_errors():
        if status is not None and status not in STATUSES:
            raise InputError(f"--status {status!r}: expected one of {', '.join(STATUSES)}")
        records = _with_store(
            store, lambda s: s.list_jobs(queue=queue, status=status, flow=flow, limit=limit, offset=offset)
        )
    if as_json:
        _print_json([r.to_dict() for r in records])
        return
    table = Table()
    table.add_column("id", no_wrap=True, min_width=32)
    for name in ("flow", "queue", "status", "attempt"):
        table.add_column(name)
    table.add_column("created", no_wrap=True)
    table.add_column("error")
    for r in records:
        table.add_row(
            r.id,
            r.flow,
            r.queue,
            r.status,
            f"{r.attempt}/{r.max_attempts}",
            _time(r.created_at),
            r.error or "",
        )
    _console().print(table)


def _steps_table(steps: list[StepRecord]) -> Table:
    table = Table(
        "routine",
        "seq",
        "status",
        "attempt",
        "progress",
        "message",
        "started",
        "completed",
        "worker",
        "error",
    )
    for s in steps:
        table.add_row(
            s.routine,
            str(s.seq),
            s.status,
            str(s.attempt),
            f"{s.progress:.0f}%",
            s.message,
            _time(s.started_at),
            _time(s.completed_at),
            s.worker or "",
            s.error or "",
        )
    return table


@jobs_app.command()
def show(job_id: IdArgument, store: StoreOption = DEFAULT_STORE, as_json: JsonOption = False) -> None:
    """One job: status, attempt, error (with its traceback), steps, outputs and dead letters."""

    async def get(s: Store) -> tuple[JobRecord, list[StepRecord]]:
        return await _job(s, job_id), await s.steps(job_id)

    with cli_errors():
        record, steps = _with_store(store, get)
    _show(record, steps, as_json)


@jobs_app.command()
def wait(
    job_id: IdArgument,
    store: StoreOption = DEFAULT_STORE,
    timeout: Annotated[
        float | None, typer.Option("--timeout", metavar="S", help="Give up after S seconds.")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Wait until a job is finished, then show it as ``jobs show`` does. Exit 0 if it
    completed, 1 if it failed or was cancelled, 2 if it is not finished within --timeout."""

    # --timeout counts from the start (opening the store is part of it), and the command
    # ends at most about a second past it, whatever the store's driver does
    limit_at = None if timeout is None else time.monotonic() + timeout + WAIT_ANSWER_MARGIN_S
    late = f"job {job_id}: the store did not answer within --timeout {timeout or 0:g}s"

    async def get(s: Store) -> tuple[JobRecord, list[StepRecord]]:
        # a store that stops answering is exit 2 soon after --timeout: exit 1 would say the
        # job failed, and the store's own deadlines (and retries) could add several seconds
        limit_s = None if limit_at is None else max(0.0, limit_at - time.monotonic())
        left = None if limit_s is None else max(0.0, limit_s - WAIT_ANSWER_MARGIN_S)
        try:
            async with asyncio.timeout(limit_s):
                record = await s.wait_finished(job_id, left)
        except TimeoutError:
            raise JobTimeoutError(late) from None
        except StoreOpenError:
            raise
        except StoreError as e:
            raise StoreOpenError(f"{e} (the job's state is unknown)") from e
        if record is None:
            raise JobError(f"no job {job_id!r} in the store")
        if record.status not in FINISHED:
            raise JobTimeoutError(f"job {job_id} is still {record.status} after {timeout:g}s")
        return record, await s.steps(job_id)

    with cli_errors():
        if timeout is not None and not 0 <= timeout <= MAX_WAIT_S:
            raise InputError(
                f"--timeout {timeout:g}: expected a number of seconds from 0 to {MAX_WAIT_S:g} "
                "(leave it out to wait for ever)"
            )
        # (a driver can take many seconds to give up on a cancelled call, and to close its
        # pool: psycopg on a stopped PostgreSQL, 11 s and 5 s; this read-only command then
        # ends anyway, as it said it would)
        watchdog = None if limit_at is None else _exit_at(limit_at + EXIT_GRACE_S, late)
        try:
            open_within_s = None if limit_at is None else max(0.0, limit_at - time.monotonic())
            open_limit = f"--timeout {timeout:g}s" if timeout is not None else ""
            record, steps = _with_store(store, get, open_within_s=open_within_s, open_limit=open_limit)
        finally:
            if watchdog is not None:
                watchdog.cancel()
    _show(record, steps, as_json)
    if record.status != COMPLETED:
        raise typer.Exit(FAILURE)


def _show(record: JobRecord, steps: list[StepRecord], as_json: bool) -> None:
    if as_json:
        _print_json(JobInfo.of(record, steps).to_dict())
        return
    console = _console()
    about = Table.grid(padding=(0, 2))
    for name, value in (
        ("id", record.id),
        ("flow", record.flow),
        ("queue", record.queue),
        ("status", record.status),
        ("attempt", f"{record.attempt}/{record.max_attempts}"),
        ("stalls", str(record.stalls)),
        ("worker", record.worker_id or ""),
        ("node", record.node or ""),
        ("created", _time(record.created_at)),
        ("started", _time(record.started_at)),
        ("finished", _time(record.finished_at)),
        ("error", record.error or ""),
    ):
        about.add_row(name, value)
    if record.outputs:
        about.add_row("outputs", json.dumps(record.outputs, ensure_ascii=False))
    if record.dead_letters:
        about.add_row("dead letters", str(len(record.dead_letters)))
    console.print(about)
    if steps:
        console.print(_steps_table(steps))
    for letter in record.dead_letters or []:
        item = json.dumps(letter.get("item"), ensure_ascii=False)
        console.print(
            f"dead letter {letter.get('slot')}: {letter.get('reason')} {item} {letter.get('error') or ''}"
        )
    if record.error_detail:
        console.print(record.error_detail, markup=False, highlight=False)


@jobs_app.command()
def steps(job_id: IdArgument, store: StoreOption = DEFAULT_STORE, as_json: JsonOption = False) -> None:
    """A job's steps: one row per handler call, with progress."""

    async def get(s: Store) -> list[StepRecord]:
        await _job(s, job_id)
        return await s.steps(job_id)

    with cli_errors():
        rows = _with_store(store, get)
    if as_json:
        _print_json([s.to_dict() for s in rows])
        return
    _console().print(_steps_table(rows))


@jobs_app.command()
def retry(
    job_id: IdArgument,
    store: StoreOption = DEFAULT_STORE,
    from_start: Annotated[bool, typer.Option("--from-start", help="Run every step again.")] = False,
) -> None:
    """Queue a failed, cancelled or stalled job again with fresh attempts."""
    with cli_errors():
        record = _with_store(store, lambda s: s.retry(job_id, from_start=from_start))
    print(f"{record.id} {record.status}")


@jobs_app.command()
def cancel(job_id: IdArgument, store: StoreOption = DEFAULT_STORE) -> None:
    """Cancel a queued or running job (a running one stops at its worker's next heartbeat)."""
    with cli_errors():
        record = _with_store(store, lambda s: s.cancel(job_id))
    print(f"{record.id} {record.status}")
