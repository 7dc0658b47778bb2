"""The typer app: ``weirflow run``, ``weirflow validate`` and ``weirflow demo``.

Exit codes: 0 the job completed (or the flow is valid); 1 the job failed, was
cancelled or timed out; 2 bad usage or a bad flow file; 130 interrupted (Ctrl-C).
Errors are printed as one ``error: <message>`` line on stderr, without a traceback;
bad arguments too (click's usage box is replaced by that line, naming the flag).
"""

from __future__ import annotations

# isort: off
from .._structlog import configure_plainly  # first: structlog imported without rich (see there)

# isort: on

import asyncio
import importlib
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import structlog
import typer

from .. import __version__
from ..errors import FlowError, WeirflowError
from ..flow.graph import Flow
from ..logsetup import library_logs_to_stderr
from ._click import clicks
from .inputs import InputError, parse_inputs
from .report import exit_code, to_json

if TYPE_CHECKING:
    from rich.console import Console

USAGE_ERROR = 2
JOB_ERROR = 1
INTERRUPTED = 130  # 128 + SIGINT, as shells report it


def _version(value: bool) -> None:
    if value:
        print(f"weirflow {__version__}")
        raise typer.Exit(0)


def _options(
    version: Annotated[
        bool,
        typer.Option("--version", is_eager=True, callback=_version, help="Print the version and exit."),
    ] = False,
) -> None:
    """Run and check weirflow flows; serve them over HTTP; run durable jobs."""


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
        from rich.console import Console

        return Console(file=sys.stderr)
    return None


def _run_and_print(flow: Flow, inputs: dict[str, list[Any]], timeout_s: float | None, progress: bool) -> int:
    from .execute import RunInterruptedError, run_job

    try:
        document = asyncio.run(
            run_job(flow, inputs, timeout_s=timeout_s, console=_progress_console(progress))
        )
    except RunInterruptedError as stop:  # Ctrl-C: the job was cancelled; say what it had done
        print(f"interrupted: {stop.summary}", file=sys.stderr)
        print(to_json(stop.document))
        return INTERRUPTED
    print(to_json(document))
    return exit_code(document)


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


#: each command -> its function, or the module (of this package) that has it, imported only
#: when that command is built: ``weirflow worker`` loads no other command's module (``jobs``
#: and ``nodes`` print rich tables, ``run`` shows a rich progress display)
COMMANDS: dict[str, Callable[..., Any] | str] = {
    "serve": ".serve",
    "worker": ".worker",
    "run": run,
    "validate": validate,
    "demo": demo,
}
#: each group of commands -> the module with its ``<name>_app``
GROUPS = {"jobs": ".jobs", "schedules": ".schedules", "nodes": ".nodes", "pipelines": ".pipelines"}


def build_app(only: str | None = None) -> typer.Typer:
    """The ``weirflow`` app; with ``only``, the app with that command (or group of commands)
    alone: a run of ``weirflow worker ...`` parses its arguments the same way, help and
    errors included, without typer building the other 20-odd commands' click objects first
    (a tenth of a worker's start-up)."""
    built = typer.Typer(
        name="weirflow",
        help="Run and check weirflow flows.",
        add_completion=False,
        no_args_is_help=True,
        pretty_exceptions_enable=False,
    )
    built.callback()(_options)
    for name, command in COMMANDS.items():
        if only in (None, name):
            if isinstance(command, str):
                command = getattr(importlib.import_module(command, __package__), name)
            built.command(name)(command)
    for name, module in GROUPS.items():
        if only in (None, name):
            built.add_typer(getattr(importlib.import_module(module, __package__), f"{name}_app"), name=name)
    return built


if TYPE_CHECKING:
    app: typer.Typer  # (the whole app, built when first asked for)


def __getattr__(name: str) -> Any:
    if name == "app":
        globals()["app"] = built = build_app()
        return built
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _stderr_logger(*_: Any) -> structlog.PrintLogger:
    return structlog.PrintLogger(sys.stderr)


def _urls_given() -> list[str]:
    """The URLs of the command line and of the environment's settings (a store's, a
    registry's): their passwords are masked in the libraries' log lines."""
    values = [arg.partition("=")[2] if arg.startswith("--") else arg for arg in sys.argv[1:]]
    values += [v for k, v in os.environ.items() if k.startswith("WEIRFLOW_")]
    return [v for v in values if "://" in v]


def main() -> None:
    """Entry point of the ``weirflow`` console script and of ``python -m weirflow``.

    Runs the app outside click's standalone mode, so that a bad argument is one
    ``error:`` line (naming the flag) and exit 2, and Ctrl-C outside a job is exit 130.
    Logs (structlog's, and the libraries' through ``logging``) go to stderr, like every
    message: stdout is for answers."""
    configure_plainly(logger_factory=_stderr_logger)  # (sys.stderr looked up at each line)
    library_logs_to_stderr(_urls_given())
    try:
        given = sys.argv[1] if len(sys.argv) > 1 else None
        the_app = build_app(given if given in COMMANDS or given in GROUPS else None)
        code = the_app(prog_name="weirflow", standalone_mode=False)
    except clicks.NoArgsIsHelpError as e:  # a group given no command: its help, as usage
        if e.ctx is not None:
            print(e.ctx.get_help())
        sys.exit(USAGE_ERROR)
    except clicks.UsageError as e:
        where = f"{e.ctx.command_path}: " if e.ctx is not None else ""
        print(f"error: {where}{e.format_message()}".replace("\n", " "), file=sys.stderr)
        sys.exit(USAGE_ERROR)
    except clicks.ClickException as e:
        print(f"error: {e.format_message()}".replace("\n", " "), file=sys.stderr)
        sys.exit(e.exit_code)
    except (typer.Abort, KeyboardInterrupt):
        print("interrupted", file=sys.stderr)
        sys.exit(INTERRUPTED)
    sys.exit(code if isinstance(code, int) else 0)
