"""``weirflow schedules add|list|remove``: repeatable jobs in a store.

``add`` creates or replaces a schedule (``--cron EXPR`` or ``--every S``) and prints it;
workers of its queue fire its ticks, one job per tick. Exit 2 with one ``error:`` line
on a bad cron expression, time zone or option, or an unknown schedule.
"""

from __future__ import annotations

import datetime
from typing import Annotated

import typer
from rich.table import Table

from ..durable.models import DEFAULT_BACKOFF
from ..durable.schedules import CATCHUP, DEFAULT_MISFIRE_GRACE_S, Schedule
from ..errors import JobError, ScheduleError
from .durable_common import DEFAULT_STORE, StoreOption, cli_errors, load
from .inputs import parse_inputs
from .jobs import JsonOption, _console, _inputs_without_flow, _print_json, _with_store

schedules_app = typer.Typer(
    name="schedules",
    help="Add, list and remove schedules (repeatable jobs) in a store.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

NameArgument = Annotated[str, typer.Argument(metavar="NAME", help="The schedule's name.")]


def _time(at: float | None, tz: str = "UTC") -> str:
    if at is None:
        return ""
    from zoneinfo import ZoneInfo

    return datetime.datetime.fromtimestamp(at, tz=ZoneInfo(tz)).strftime("%Y-%m-%d %H:%M:%S %Z")


@schedules_app.command()
def add(
    name: NameArgument,
    flow: Annotated[str, typer.Argument(metavar="FLOW", help="The flow's name.")],
    input_: Annotated[
        list[str] | None,
        typer.Option(
            "--input", "-i", metavar="ROUTINE.SLOT=VALUE", help="A JSON value or @file; repeat to append."
        ),
    ] = None,
    cron: Annotated[str | None, typer.Option("--cron", metavar="EXPR", help='e.g. "*/5 * * * *".')] = None,
    every: Annotated[float | None, typer.Option("--every", metavar="S", help="Every S seconds.")] = None,
    tz: Annotated[str, typer.Option("--tz", help="Time zone of --cron, e.g. Europe/Paris.")] = "UTC",
    catchup: Annotated[
        str, typer.Option("--catchup", help="Missed ticks: once (run the latest) or skip.")
    ] = "once",
    misfire_grace: Annotated[
        float,
        typer.Option("--misfire-grace", metavar="S", help="With skip: how late a tick may run."),
    ] = DEFAULT_MISFIRE_GRACE_S,
    store: StoreOption = DEFAULT_STORE,
    flows: Annotated[
        str | None,
        typer.Option("--flows", metavar="DIR_OR_MODULE", help="Check the flow and its slots first."),
    ] = None,
    queue: Annotated[str, typer.Option("--queue")] = "default",
    attempts: Annotated[int, typer.Option("--attempts")] = 3,
    priority: Annotated[int, typer.Option("--priority", help="Higher runs first.")] = 0,
    timeout: Annotated[float | None, typer.Option("--timeout", metavar="S")] = None,
    as_json: JsonOption = False,
) -> None:
    """Create or replace schedule NAME: a job of FLOW at every tick."""
    with cli_errors():
        if catchup not in CATCHUP:
            raise ScheduleError(f"--catchup {catchup!r}: expected one of {', '.join(CATCHUP)}")
        if flows is not None:
            known = {f.name: f for f in load(flows)}
            if flow not in known:
                raise JobError(f"no flow named {flow!r} in {flows} (flows: {', '.join(sorted(known))})")
            inputs = dict(parse_inputs(input_ or [], known[flow]))
        else:
            inputs = dict(_inputs_without_flow(input_ or []))
        schedule = Schedule(
            name=name,
            flow=flow,
            inputs=inputs,
            queue=queue,
            cron=cron,
            every_s=every,
            tz=tz,
            catchup=catchup,
            misfire_grace_s=misfire_grace,
            max_attempts=attempts,
            backoff=DEFAULT_BACKOFF,
            priority=priority,
            timeout_s=timeout,
        )
        stored = _with_store(store, lambda s: s.add_schedule(schedule), create=True)
    if as_json:
        _print_json(stored.to_dict())
    else:
        print(f"{stored.name} next {_time(stored.next_at, stored.tz)}")


@schedules_app.command("list")
def list_(
    store: StoreOption = DEFAULT_STORE,
    queue: Annotated[str | None, typer.Option("--queue")] = None,
    as_json: JsonOption = False,
) -> None:
    """The store's schedules, by name, with their next and last ticks."""
    with cli_errors():
        found = _with_store(store, lambda s: s.list_schedules(queue=queue))
    if as_json:
        _print_json([s.to_dict() for s in found])
        return
    table = Table("name", "flow", "queue", "when", "tz", "catchup", "next", "last", "last job")
    for s in found:
        when = s.cron if s.cron is not None else f"every {s.every_s:g}s"
        table.add_row(
            s.name,
            s.flow,
            s.queue,
            when,
            s.tz,
            s.catchup,
            _time(s.next_at, s.tz),
            _time(s.last_at, s.tz),
            s.last_job_id or "",
        )
    _console().print(table)


@schedules_app.command()
def remove(name: NameArgument, store: StoreOption = DEFAULT_STORE) -> None:
    """Delete schedule NAME (the jobs it already made stay)."""
    with cli_errors():
        if not _with_store(store, lambda s: s.remove_schedule(name)):
            raise ScheduleError(f"no schedule {name!r} in the store")
    print(f"{name} removed")
