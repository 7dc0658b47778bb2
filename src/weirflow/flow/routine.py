"""Routines: input slots, output events, and the handlers bound to slots.

A ``Routine`` subclass declares ``Slot`` and ``Event`` class attributes and binds
handlers with ``@slot.handler`` (one call per item), ``@wf.batch(slot, ...)``
(a list per call) or ``@wf.join(slot_a, slot_b)`` (one item of each per call).
Everything is checked when the class is created, so a misspelt binding fails at
import time, not in production.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Literal, TypeVar

from ..errors import FlowError
from .policy import DEFAULT_CAPACITY, DEFAULT_ERROR_POLICY, ErrorPolicy, Overflow

if TYPE_CHECKING:
    from ..runtime.context import Context

F = TypeVar("F", bound=Callable[..., Any])

_BINDING_ATTR = "__weirflow_binding__"

ActivationKind = Literal["each", "batch", "join"]
Executor = Literal["thread", "process"]
EXECUTORS = ("thread", "process")


class Slot:
    """An input of a routine: a bounded queue per job, with an overflow policy.

    ``capacity`` is the number of queued items (not counting the ones a handler
    holds); ``overflow`` says what happens when it is full; with ``block`` an
    emitter waits, up to ``block_timeout_s`` if set, then gets ``SlotFullError``.
    """

    def __init__(
        self,
        capacity: int = DEFAULT_CAPACITY,
        overflow: Overflow | str = Overflow.BLOCK,
        block_timeout_s: float | None = None,
    ) -> None:
        if not isinstance(capacity, int) or isinstance(capacity, bool) or capacity < 1:
            raise FlowError(f"Slot capacity must be an integer >= 1, not {capacity!r}")
        if block_timeout_s is not None and block_timeout_s < 0:
            raise FlowError(f"Slot block_timeout_s must be >= 0, not {block_timeout_s!r}")
        self.capacity = capacity
        self.overflow = Overflow.parse(overflow)
        self.block_timeout_s = block_timeout_s
        self.name = ""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def handler(self, fn: F) -> F:
        """Bind ``fn(self, item, ctx)`` to be called once per item of this slot."""
        setattr(fn, _BINDING_ATTR, _Binding("each", (self,)))
        return fn

    def __repr__(self) -> str:
        return f"Slot({self.name!r}, capacity={self.capacity}, overflow={self.overflow.value!r})"


class Event:
    """An output of a routine; ``ctx.emit(self.event, item)`` sends to every connected slot."""

    def __init__(self, doc: str = "") -> None:
        self.doc = doc
        self.name = ""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"Event({self.name!r})"


@dataclass(frozen=True)
class _Binding:
    kind: ActivationKind
    slots: tuple[Slot, ...]
    max_items: int = 1
    max_wait_s: float = 0.0


def batch(slot: Slot, *, max_items: int = 100, max_wait_s: float = 0.05) -> Callable[[F], F]:
    """Bind ``fn(self, items, ctx)``: called with up to ``max_items`` items at once.

    A partial batch is handed over after ``max_wait_s`` from its first item, or as
    soon as no further item can arrive.
    """
    if max_items < 1:
        raise FlowError(f"batch max_items must be >= 1, not {max_items!r}")
    if max_wait_s < 0:
        raise FlowError(f"batch max_wait_s must be >= 0, not {max_wait_s!r}")

    def bind(fn: F) -> F:
        setattr(fn, _BINDING_ATTR, _Binding("batch", (slot,), max_items, max_wait_s))
        return fn

    return bind


def join(*slots: Slot) -> Callable[[F], F]:
    """Bind ``fn(self, a_item, b_item, ..., ctx)``: called once an item waits in every slot."""
    if len(slots) < 2:
        raise FlowError("join needs at least two slots")

    def bind(fn: F) -> F:
        setattr(fn, _BINDING_ATTR, _Binding("join", tuple(slots)))
        return fn

    return bind


@dataclass(frozen=True)
class Activation:
    """A resolved binding: which slots feed which handler, and how."""

    kind: ActivationKind
    slots: tuple[str, ...]
    method: str
    is_async: bool
    wants_ctx: bool
    max_items: int = 1
    max_wait_s: float = 0.0


def _wants_ctx(cls: type, fn: Callable[..., Any], n_items: int) -> bool:
    params = [
        p
        for p in inspect.signature(fn).parameters.values()
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
    ]
    n = len(params) - 1  # self
    if n == n_items + 1:
        return True
    if n == n_items:
        return False
    raise FlowError(
        f"{cls.__qualname__}.{fn.__name__} must take (self, {'item, ' * n_items}ctx) "
        f"or (self{', item' * n_items}); it takes {n} argument(s) after self"
    )


def check_executor(value: object, owner: str) -> None:
    if value not in EXECUTORS:
        raise FlowError(f"{owner}.executor must be 'thread' or 'process', not {value!r}")


def check_process_handlers(cls: type[Routine]) -> None:
    """A process routine's handlers run in a child process: plain ``def`` only."""
    for a in cls.activations:
        if a.is_async:
            raise FlowError(
                f"{cls.__qualname__}.{a.method} is async; a routine with executor = 'process' "
                "needs plain def handlers"
            )


class Routine:
    """Base class of routines. Subclasses declare slots, events and handlers.

    Class attributes: ``concurrency`` (handler calls at once, default 1, which
    keeps per-slot order), ``on_error`` (an ``ErrorPolicy``) and ``executor``:
    where plain ``def`` handlers run, ``"thread"`` (the default: threads of this
    process) or ``"process"`` (child processes of the engine's pool, for CPU-bound
    work; every handler must then be a plain ``def``, and the routine, its items,
    state and emits must pickle). Override
    ``on_end(ctx)`` (sync or async) to run once per job after the routine's last
    handler call. Instances hold configuration only: keyword arguments given to
    the constructor become attributes, and the engine never mutates them.
    """

    concurrency: ClassVar[int] = 1
    on_error: ClassVar[ErrorPolicy] = DEFAULT_ERROR_POLICY
    executor: Executor = "thread"  # class attribute; a flow file may set it per routine

    slots: ClassVar[dict[str, Slot]] = {}
    events: ClassVar[dict[str, Event]] = {}
    activations: ClassVar[tuple[Activation, ...]] = ()
    has_on_end: ClassVar[bool] = False
    on_end_is_async: ClassVar[bool] = False

    _init_args: tuple[Any, ...]
    _init_kwargs: dict[str, Any]

    def __new__(cls, *args: Any, **kwargs: Any) -> Routine:
        obj = super().__new__(cls)
        obj._init_args = args
        obj._init_kwargs = dict(kwargs)
        return obj

    def __init__(self, **config: Any) -> None:
        for key, value in config.items():
            if key in self.slots or key in self.events or key.startswith("_"):
                raise FlowError(f"{type(self).__qualname__}: cannot configure {key!r}")
            setattr(self, key, value)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        slots: dict[str, Slot] = {}
        events: dict[str, Event] = {}
        bound: dict[str, tuple[Callable[..., Any], _Binding]] = {}
        for klass in reversed(cls.__mro__):
            for attr, value in vars(klass).items():
                if isinstance(value, Slot):
                    slots[attr] = value
                elif isinstance(value, Event):
                    events[attr] = value
                elif callable(value) and hasattr(value, _BINDING_ATTR):
                    bound[attr] = (value, getattr(value, _BINDING_ATTR))
                elif attr in bound:
                    del bound[attr]  # overridden by a plain method
        clash = set(slots) & set(events)
        if clash:
            raise FlowError(f"{cls.__qualname__}: {sorted(clash)} declared as both slot and event")
        if not isinstance(cls.concurrency, int) or cls.concurrency < 1:
            raise FlowError(f"{cls.__qualname__}.concurrency must be an integer >= 1")
        if not isinstance(cls.on_error, ErrorPolicy):
            raise FlowError(f"{cls.__qualname__}.on_error must be a wf.ErrorPolicy")
        check_executor(cls.executor, cls.__qualname__)
        names = {id(s): n for n, s in slots.items()}
        owner: dict[str, str] = {}
        activations: list[Activation] = []
        for method, (fn, binding) in bound.items():
            slot_names: list[str] = []
            for s in binding.slots:
                if id(s) not in names:
                    raise FlowError(
                        f"{cls.__qualname__}.{method} is bound to a slot that is not "
                        f"an attribute of {cls.__qualname__}"
                    )
                name = names[id(s)]
                if name in owner:
                    raise FlowError(
                        f"{cls.__qualname__}: slot {name!r} is bound to both {owner[name]} and {method}"
                    )
                owner[name] = method
                slot_names.append(name)
            n_items = len(slot_names) if binding.kind == "join" else 1
            activations.append(
                Activation(
                    kind=binding.kind,
                    slots=tuple(slot_names),
                    method=method,
                    is_async=inspect.iscoroutinefunction(fn),
                    wants_ctx=_wants_ctx(cls, fn, n_items),
                    max_items=binding.max_items,
                    max_wait_s=binding.max_wait_s,
                )
            )
        cls.slots = slots
        cls.events = events
        cls.activations = tuple(activations)
        cls.has_on_end = cls.on_end is not Routine.on_end
        cls.on_end_is_async = inspect.iscoroutinefunction(cls.on_end)
        if cls.executor == "process":
            check_process_handlers(cls)

    def unbound_slots(self) -> list[str]:
        """Slots that no handler consumes (a flow with such a slot does not validate)."""
        bound = {s for a in self.activations for s in a.slots}
        return [s for s in self.slots if s not in bound]

    def on_end(self, ctx: Context) -> Any:
        """Called once per job after the routine's last handler call; may emit."""
        return None

    def use_path(self) -> str:
        """``module:QualName`` by which a flow file refers to this routine's class."""
        cls = type(self)
        if "<locals>" in cls.__qualname__:
            raise FlowError(f"{cls.__qualname__} is defined inside a function; a flow file cannot name it")
        return f"{cls.__module__}:{cls.__qualname__}"

    def config(self) -> dict[str, Any]:
        """The keyword arguments this instance was built with (``with:`` in a flow file)."""
        if self._init_args:
            raise FlowError(
                f"{type(self).__qualname__} was built with positional arguments; "
                "a flow file can only express keyword arguments"
            )
        return dict(self._init_kwargs)
