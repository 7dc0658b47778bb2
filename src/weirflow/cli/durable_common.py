"""What ``weirflow worker`` and ``weirflow jobs`` share: the store option, flows, errors."""

from __future__ import annotations

import math
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, NoReturn

import typer

from ..errors import FlowError, JobError, ScheduleError, StoreError, StoreOpenError, WeirflowError
from ..flow.graph import Flow
from ..flow.source import load_flows
from .inputs import InputError

USAGE_ERROR = 2
FAILURE = 1
DEFAULT_STORE = "sqlite:///weirflow.db"

StoreOption = Annotated[
    str,
    typer.Option(
        "--store",
        envvar="WEIRFLOW_STORE",
        metavar="URL",
        help="memory://, sqlite:///path/weirflow.db (relative; sqlite:////abs for absolute), "
        "postgresql://user@host:port/db or redis://[:password@]host:port/db.",
    ),
]


def finite(value: float | None) -> float | None:
    """A typer callback for a number option: click's float type takes ``nan`` and the
    infinities, which no setting here means (a lease of ``inf`` is never renewed and never
    expires: a dead worker's job would never be taken over)."""
    if value is not None and not math.isfinite(value):
        raise typer.BadParameter(f"{value} is not a finite number")
    return value


def fail(message: str, code: int) -> NoReturn:
    print(f"error: {message}", file=sys.stderr)
    raise typer.Exit(code)


@contextmanager
def cli_errors() -> Iterator[None]:
    """Bad input, an unknown job or a job in the wrong state: exit 2; the store failing: exit 1.
    One ``error:`` line on stderr, no traceback."""
    try:
        yield
    except (FlowError, InputError, JobError, ScheduleError, ValueError) as e:
        fail(str(e), USAGE_ERROR)
    except StoreOpenError as e:  # unreachable, or its settings are wrong: not worth retrying
        fail(str(e), USAGE_ERROR)
    except StoreError as e:
        fail(str(e), USAGE_ERROR if "store URL" in str(e) else FAILURE)
    except OSError as e:
        where = f"{e.filename}: " if e.filename else ""
        fail(f"{where}{e.strerror or e}", USAGE_ERROR)
    except WeirflowError as e:
        fail(str(e), FAILURE)


def load(source: str) -> list[Flow]:
    """The flows of ``--flows DIR_OR_MODULE`` (the same loader as ``weirflow serve``)."""
    return load_flows(source)
