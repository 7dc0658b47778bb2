"""``weirflow nodes list --registry URL``, and the node a ``weirflow worker --registry`` becomes.

``list`` lists the registry once (one Lua script) and prints the live nodes as a
table or ``--json``. A registry that cannot be opened (Redis unreachable within the
deadline, a wrong password, no such database) is exit 2 with one ``error:`` line
naming the URL without its password, as ``weirflow jobs`` does for a store it cannot
open. Bad ``--labels``: exit 2.
"""

from __future__ import annotations

import asyncio
import datetime
import sys
import time
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from ..errors import ClusterError, InvalidNodeError
from .durable_common import USAGE_ERROR, cli_errors, fail
from .jobs import JsonOption, _console, _print_json

if TYPE_CHECKING:
    from ..cluster import Membership, Node
    from ..durable.models import JobSpec
    from ..durable.store import Store
    from ..durable.worker import Worker

nodes_app = typer.Typer(
    name="nodes",
    help="The nodes of a cluster registry (docs/cluster.md).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

RegistryOption = Annotated[
    str,
    typer.Option("--registry", envvar="WEIRFLOW_REGISTRY", metavar="URL", help="redis://host:port/db."),
]
#: each registry call of a one-shot command: a command can wait a little longer than a
#: server's 0.1 s (1 s missed a fresh connection's first list on a busy machine, and
#: `jobs submit --pool` then queued its job unassigned); a registry that is down costs
#: a command at most this, then it says so and goes on
CLI_DEADLINE_S = 3.0


def parse_labels(options: list[str]) -> dict[str, str]:
    labels: dict[str, str] = {}
    for option in options:
        key, sep, value = option.partition("=")
        if not sep or not key.strip():
            raise InvalidNodeError(f"--labels {option!r}: expected KEY=VALUE")
        labels[key.strip()] = value.strip()
    return labels


def node_membership(
    url: str | None, worker: Worker, *, pool: str, labels: list[str], capacity: int
) -> Membership | None:
    """The node ``weirflow worker --registry`` registers (None without ``--registry``):
    its id is the worker's, its running count the worker's claimed jobs; the worker
    claims as that node (``Worker.node``)."""
    if url is None:
        if labels:
            raise InvalidNodeError("--labels needs --registry")
        return None
    from ..cluster import Membership, Registry

    # the worker is the node: it claims the jobs assigned to it, within its capacity
    worker.node, worker.node_capacity = worker.worker_id, capacity
    return Membership(
        Registry(url, ttl_s=max(3.0, worker.lease_s / 3)),
        worker.worker_id,
        pool=pool,
        capacity=capacity,
        labels=parse_labels(labels),
        running=lambda: len(worker.running),
    )


async def submit_to_pool(url: str, store: Store, spec: JobSpec, *, pool: str, labels: dict[str, str]) -> str:
    """``weirflow jobs submit --pool``: ``spec`` assigned to a node of ``pool`` through the
    registry at ``url`` (``Dispatcher.submit``); its id. A registry that does not answer
    is said on stderr, and the job is queued unassigned, as ``engine.submit`` does."""
    from ..cluster import Dispatcher, Registry

    reg = Registry(url, deadline_s=CLI_DEADLINE_S, probe_interval_s=3600)
    dispatcher = Dispatcher(reg, owns=True)
    await dispatcher.open()
    try:
        if reg.status != "normal":
            print(
                f"warning: the registry {reg.safe_url} did not answer: the job is queued unassigned",
                file=sys.stderr,
            )
        job_id, _ = await dispatcher.submit(store, spec, pool=pool, labels=labels)
        return job_id
    finally:
        await dispatcher.close()


async def _list(url: str) -> list[Node]:
    from ..cluster import Registry

    reg = Registry(url, deadline_s=CLI_DEADLINE_S, probe_interval_s=3600)
    try:
        await reg.start()
    except ClusterError as e:  # not worth retrying: it is down or its settings are wrong
        fail(f"registry {reg.safe_url}: {e}", USAGE_ERROR)
    try:
        return reg.nodes()
    finally:
        await reg.close()


def _age(heartbeat_at: float) -> str:
    return f"{max(0.0, time.time() - heartbeat_at):.1f}s ago"


@nodes_app.command("list")
def list_(
    registry: RegistryOption,
    pool: Annotated[str | None, typer.Option("--pool", help="Only this pool's nodes.")] = None,
    as_json: JsonOption = False,
) -> None:
    """List the registry's live nodes (up, draining, or down by a heartbeat older than their ttl)."""
    import structlog

    # stdout is the table or the JSON: the registry's log lines go to stderr
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(sys.stderr))
    with cli_errors():
        nodes = [n for n in asyncio.run(_list(registry)) if pool is None or n.pool == pool]
    if as_json:
        _print_json([n.to_dict() for n in nodes])
        return
    table = Table("id", "pool", "state", "running", "capacity", "labels", "address", "heartbeat")
    for n in nodes:
        when = datetime.datetime.fromtimestamp(n.heartbeat_at, tz=datetime.UTC).strftime("%H:%M:%S")
        table.add_row(
            n.id,
            n.pool,
            n.state,
            str(n.running),
            str(n.capacity),
            ",".join(f"{k}={v}" for k, v in sorted(n.labels.items())),
            n.address,
            f"{when} ({_age(n.heartbeat_at)})",
        )
    _console().print(table)
