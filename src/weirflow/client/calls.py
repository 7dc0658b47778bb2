"""What each call of the HTTP API sends and how its answer is read: shared by ``Client``
and ``AsyncClient``, so the two differ only in how they do the I/O.

An answer that is not a success becomes the exception the same call raises in
process: the server names it (``"error": "InputClosedError"``), and the client
raises a class that is both ``RequestError`` (with ``status`` and ``detail``) and
that ``weirflow`` error, so ``except wf.InputClosedError`` works the same against a
server as against an ``Engine``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, TypeAdapter

from .. import errors
from ..debug.conditions import ConditionError
from ..errors import RequestError, WeirflowError

T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)

Inputs = Mapping[str, Any]


class AuthError(RequestError):
    """The API key is missing or wrong (401), or its role may not make this call (403)."""


class NotFoundError(RequestError, errors.JobError):
    """No job, flow or breakpoint by that name (404)."""


class UnavailableError(RequestError, errors.StoreError):
    """The server is starting, stopping or has no store for this call (503)."""


_STATUS: dict[int, type[RequestError]] = {
    401: AuthError,
    403: AuthError,
    404: NotFoundError,
    503: UnavailableError,
}
_MIXED: dict[type[WeirflowError], type[RequestError]] = {}


def _mixed(kind: type[WeirflowError]) -> type[RequestError]:
    """A ``RequestError`` that is also ``kind`` (made once per kind)."""
    cls = _MIXED.get(kind)
    if cls is None:
        cls = type(kind.__name__, (RequestError, kind), {"__module__": __name__, "__doc__": kind.__doc__})
        _MIXED[kind] = cls
    return cls


def _named(name: object) -> type[WeirflowError] | None:
    if name == "ConditionError":
        return ConditionError
    kind = getattr(errors, name, None) if isinstance(name, str) else None
    return kind if isinstance(kind, type) and issubclass(kind, WeirflowError) else None


def error_for(status: int, body: Any) -> RequestError:
    """The exception for an error answer (``body`` is its JSON, or its text)."""
    data: dict[str, Any] = body if isinstance(body, dict) else {"detail": str(body)}
    detail = str(data.get("detail") or f"HTTP {status}")
    kind = _named(data.get("error"))
    if status in (401, 403):
        kind = None  # auth is the client's problem whatever else the server says
    if kind is None and status == 409:
        kind = errors.JobError
    if kind is None and status == 429:
        kind = errors.SlotFullError
    if kind is None:
        cls = _STATUS.get(status, RequestError)
        return cls(detail, status, data)
    exc = _mixed(kind).__new__(_mixed(kind))
    RequestError.__init__(exc, detail, status, data)
    if issubclass(kind, errors.SlotFullError):  # the fields a caller acts on
        exc.slot = data.get("slot")  # type: ignore[attr-defined]
        exc.capacity = data.get("capacity")  # type: ignore[attr-defined]
        exc.waited_s = None  # type: ignore[attr-defined]
    if issubclass(kind, errors.SendWindowFullError):  # the pipeline's send window, not its slot
        exc.unacked = data.get("unacked")  # type: ignore[attr-defined]
    if issubclass(kind, errors.PipelineStateError):
        exc.state = data.get("state") or ("full" if status == 429 else "")  # type: ignore[attr-defined]
    if issubclass(kind, ConditionError):
        exc.line, exc.column = data.get("line"), data.get("column")  # type: ignore[attr-defined]
    if issubclass(kind, errors.FlowError):
        exc.problems = [detail]  # type: ignore[attr-defined]
    exc.accepted = data.get("accepted")  # type: ignore[attr-defined]  # 409/429 on a send
    return exc


@dataclasses.dataclass(frozen=True, slots=True)
class Call(Generic[T]):
    """One request and the reader of its answer."""

    method: str
    path: str
    read: Callable[[Any], T]
    params: dict[str, Any] | None = None
    json: Any = None
    expect_json: bool = True


def model(cls: type[M]) -> Callable[[Any], M]:
    return cls.model_validate


def models(cls: type[M]) -> Callable[[Any], list[M]]:
    adapter = TypeAdapter(list[cls])  # type: ignore[valid-type]

    def read(data: Any) -> list[M]:
        return adapter.validate_python(data)

    return read


def field(name: str) -> Callable[[Any], Any]:
    def read(data: Any) -> Any:
        return data[name]

    return read


def nothing(_: Any) -> None:
    return None


def items(inputs: Inputs | None) -> dict[str, list[Any]]:
    """``{"r.slot": item or [items]}`` as the API takes it: a list per slot. A list or a tuple
    is the slot's items, as ``engine.start`` reads them."""
    return {slot: list(v) if isinstance(v, list | tuple) else [v] for slot, v in (inputs or {}).items()}


def query(**params: Any) -> dict[str, Any]:
    return {k: v for k, v in params.items() if v is not None}


def answer(call: Call[T], status: int, text: str, data: Callable[[], Any]) -> T:
    """Read a complete answer: ``call``'s model on success, else the error it stands for."""
    if status >= 400:
        try:
            body = data()
        except ValueError:
            body = text
        raise error_for(status, body)
    return call.read(data() if call.expect_json else None)


@dataclasses.dataclass(frozen=True, slots=True)
class Event:
    """One server-sent event of a job: ``kind`` (``status``, ``queue``, ``dead_letter``,
    ``breakpoint``, ``end``, ``gap``...), its JSON ``data`` and its ``id`` (``None`` for a gap)."""

    kind: str
    data: Any
    id: int | None
