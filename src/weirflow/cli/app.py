"""The typer app: ``weirflow run``, ``weirflow validate`` and ``weirflow demo``.

Exit codes: 0 the job completed (or the flow is valid); 1 the job failed, was
cancelled or timed out; 2 bad usage or a bad flow file. Errors are printed as
``error: <message>`` on stderr, without a traceback.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console

from ..errors import FlowError, WeirflowError
from ..flow.graph import Flow
from .execute import run_job
from .inputs import InputError, parse_inputs
from .jobs import jobs_app
from .report import exit_code, to_json
from .serve import serve
from .worker import worker

USAGE_ERROR = 2
JOB_ERROR = 1

app = typer.Typer(
    name="weirflow",
    help="Run and check weirflow flows.",
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.command()(serve)
app.command()(worker)
app.add_typer(jobs_app, name="jobs")


def _exit(message: str, code: int) -> NoReturn:
    print(f"error: {message}", file=sys.stderr)
    raise typer.Exit(code)


@contextmanager
def _cli_errors() -> Iterator[None]:
    """The one place errors become an ``error:`` line and an exit code (no traceback)."""
    try:
        yield
    except (FlowError, InputError) as e:
        _exit(str(e), USAGE_ERROR)
    except OSError as e:
        where = f"{e.filename}: " if e.filename else ""
        _exit(f"{where}{e.strerror or e}", USAGE_ERROR)
    except WeirflowError as e:
        _exit(str(e), JOB_ERROR)


def _progress_console(enabled: bool) -> Console | None:
    if enabled and sys.stderr.isatty():
        return Console(file=sys.stderr)
    return None


def _run_and_print(flow: Flow, inputs: dict[str, list[Any]], timeout_s: float | None, progress: bool) -> int:
    document = asyncio.run(run_job(flow, inputs, timeout_s=timeout_s, console=_progress_console(progress)))
    print(to_json(document))
    return exit_code(document)


@app.command()
def run(
    flow_file: Annotated[Path, typer.Argument(metavar="FLOW.yaml", help="Flow file (YAML or JSON).")],
    input_: Annotated[
        list[str] | None,
        typer.Option(
            "--input",
            "-i",
            metavar="ROUTINE.SLOT=VALUE",
            help="Items for a slot: a JSON value (one item) or @file (one string per non-empty line). "
            "Repeat to append.",
        ),
    ] = None,
    timeout: Annotated[
        float | None, typer.Option("--timeout", metavar="S", min=0, help="Cancel the job after S seconds.")
    ] = None,
    no_progress: Annotated[
        bool, typer.Option("--no-progress", help="No progress display on stderr.")
    ] = False,
) -> None:
    """Run a flow file to completion and print its outputs as JSON."""
    with _cli_errors():
        flow = Flow.load(flow_file)
        inputs = parse_inputs(input_ or [], flow)
        code = _run_and_print(flow, inputs, timeout, not no_progress)
    raise typer.Exit(code)


@app.command()
def validate(
    flow_file: Annotated[Path, typer.Argument(metavar="FLOW.yaml", help="Flow file (YAML or JSON).")],
) -> None:
    """Check a flow file: every routine importable, every connection and output valid."""
    with _cli_errors():
        flow = Flow.load(flow_file)
    print(
        f"{flow_file}: flow {flow.name!r} is valid: {len(flow.routines)} routine(s), "
        f"{len(flow.connections)} connection(s), {len(flow.outputs)} output(s)"
    )


@app.command()
def demo(
    no_progress: Annotated[
        bool, typer.Option("--no-progress", help="No progress display on stderr.")
    ] = False,
) -> None:
    """Run the bundled word-count demo and print its outputs as JSON."""
    from .. import _demo

    with _cli_errors():
        code = _run_and_print(_demo.build_flow(), _demo.inputs(), None, not no_progress)
    raise typer.Exit(code)


def main() -> None:
    """Entry point of the ``weirflow`` console script and of ``python -m weirflow``."""
    app(prog_name="weirflow")
