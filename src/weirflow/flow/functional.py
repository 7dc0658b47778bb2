"""``@wf.routine``: a routine from a function of one item.

The routine has slot ``input`` and event ``output``. A returned value other than
``None`` is emitted on ``output``; a generator (sync or async) emits each value
it yields. The function may take ``(item)`` or ``(item, ctx)``.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar, overload

from ..errors import FlowError
from .policy import DEFAULT_CAPACITY, DEFAULT_ERROR_POLICY, ErrorPolicy, Overflow
from .routine import Event, Routine, Slot

if TYPE_CHECKING:
    from ..runtime.context import Context


class FunctionRoutine(Routine):
    """A routine wrapping one function; calling it calls the function."""

    fn: ClassVar[Callable[..., Any]]
    fn_wants_ctx: ClassVar[bool]

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return type(self).fn(*args, **kwargs)

    def _args(self, item: Any, ctx: Context) -> tuple[Any, ...]:
        return (item, ctx) if self.fn_wants_ctx else (item,)

    def use_path(self) -> str:
        fn = type(self).fn
        if "<locals>" in fn.__qualname__:
            raise FlowError(f"{fn.__qualname__} is defined inside a function; a flow file cannot name it")
        return f"{fn.__module__}:{fn.__qualname__}"

    def config(self) -> dict[str, Any]:
        return {}


def _make_class(
    fn: Callable[..., Any],
    *,
    capacity: int,
    overflow: Overflow | str,
    block_timeout_s: float | None,
    concurrency: int,
    on_error: ErrorPolicy,
) -> type[FunctionRoutine]:
    params = [
        p
        for p in inspect.signature(fn).parameters.values()
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
    ]
    if len(params) not in (1, 2):
        raise FlowError(f"@wf.routine {fn.__qualname__} must take (item) or (item, ctx)")
    ns: dict[str, Any] = {
        "input": Slot(capacity, overflow, block_timeout_s),
        "output": Event(),
        "fn": staticmethod(fn),
        "fn_wants_ctx": len(params) == 2,
        "concurrency": concurrency,
        "on_error": on_error,
        "__module__": fn.__module__,
        "__qualname__": f"routine[{fn.__qualname__}]",
        "__doc__": fn.__doc__,
    }
    ns_slot: Slot = ns["input"]
    if inspect.isasyncgenfunction(fn):

        async def handle_agen(self: FunctionRoutine, item: Any, ctx: Context) -> None:
            async for value in type(self).fn(*self._args(item, ctx)):
                await ctx.emit("output", value)

        ns["handle"] = ns_slot.handler(handle_agen)
    elif inspect.iscoroutinefunction(fn):

        async def handle_async(self: FunctionRoutine, item: Any, ctx: Context) -> None:
            value = await type(self).fn(*self._args(item, ctx))
            if value is not None:
                await ctx.emit("output", value)

        ns["handle"] = ns_slot.handler(handle_async)
    elif inspect.isgeneratorfunction(fn):

        def handle_gen(self: FunctionRoutine, item: Any, ctx: Context) -> None:
            for value in type(self).fn(*self._args(item, ctx)):
                ctx.emit("output", value)

        ns["handle"] = ns_slot.handler(handle_gen)
    else:

        def handle_sync(self: FunctionRoutine, item: Any, ctx: Context) -> None:
            value = type(self).fn(*self._args(item, ctx))
            if value is not None:
                ctx.emit("output", value)

        ns["handle"] = ns_slot.handler(handle_sync)
    return type(f"routine_{fn.__name__}", (FunctionRoutine,), ns)


@overload
def routine(fn: Callable[..., Any], /) -> FunctionRoutine: ...


@overload
def routine(
    *,
    capacity: int = DEFAULT_CAPACITY,
    overflow: Overflow | str = Overflow.BLOCK,
    block_timeout_s: float | None = None,
    concurrency: int = 1,
    on_error: ErrorPolicy = DEFAULT_ERROR_POLICY,
) -> Callable[[Callable[..., Any]], FunctionRoutine]: ...


def routine(
    fn: Callable[..., Any] | None = None,
    /,
    *,
    capacity: int = DEFAULT_CAPACITY,
    overflow: Overflow | str = Overflow.BLOCK,
    block_timeout_s: float | None = None,
    concurrency: int = 1,
    on_error: ErrorPolicy = DEFAULT_ERROR_POLICY,
) -> FunctionRoutine | Callable[[Callable[..., Any]], FunctionRoutine]:
    """Make a routine of a function: ``@wf.routine`` or ``@wf.routine(capacity=64, ...)``."""

    def wrap(f: Callable[..., Any]) -> FunctionRoutine:
        cls = _make_class(
            f,
            capacity=capacity,
            overflow=overflow,
            block_timeout_s=block_timeout_s,
            concurrency=concurrency,
            on_error=on_error,
        )
        return cls()

    if fn is not None:
        return wrap(fn)
    return wrap
