"""The journal's records, defined once: their types, and the codec that writes them.

A job's journal is a list of records in causal order. As objects (what ``LogJournal``
keeps and ``restore_from`` reads) they are the ``TypedDict``\\ s below, made from the
runtime's objects by ``enq``, ``start``, ``done``, ``dead_letter``, ``end`` and
``RESUME``. As text (what the durable journal stores) each is one line of JSON,
written by ``Codec`` and read back by ``decode``:

- ``resume``, ``end`` and ``dl`` (rare) are the objects as they are;
- the frequent ones are arrays, small to write:

  - ``[0, slot, item, by]``: an ``enq``;
  - ``[1, routine, seq, attempt, consumed]``: a ``start``;
  - ``[2, routine, seq, attempt, state, emitted]``: a ``done``;
  - ``[3, routine, seq, attempt, consumed, enq, state, emitted]``: a whole step, its
    ``start``, its enqueues (``enq`` lists ``[slot, k]``: the ``k``-th emitted item
    went to ``slot``) and its ``done``, written as one where nothing else happened
    between them;

  ``done`` and whole steps end with ``status, final, on_end, error`` unless they are
  ``"completed", true, false, null``;
  - ``[4, routine, attempt, seq, consumed, n]``: ``n`` whole steps of ``routine`` in a
    row, numbered ``seq``, ``seq + 1``, ...: each took one item from the slot
    ``consumed``, emitted nothing and completed with no state;
  - ``[5, routine, attempt, seq, consumed, slot, event, items]``: whole steps in a
    row likewise, one per item of ``items``: each took one item from ``consumed``,
    emitted its item on ``event``, which went to ``slot`` (``by`` ``[routine, seq, 0]``),
    and completed with no state (a chain's steps: one record for a run of them).

  (Runs, 4 and 5, are written since the journal of December 2026; a version before
  them refuses a journal that holds one, ``UnknownRecordError``, rather than misread it.)

An ``enq``'s ``by`` says where the item came from: ``"input"`` (``INPUT``), ``None``
(a ``send``) or ``[routine, seq, k]``: the ``k``-th emit of that step (journals of
older versions wrote ``[routine, seq]``). A ``start`` that consumed nothing is an
``on_end`` call (every handler call takes at least one item).

Items and state must be values ``weirflow.storable`` accepts (JSON that comes back
exactly) for the text form: ``Codec.item`` raises ``UnstorableError`` (a
``StoreError``) for anything else.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Literal, NotRequired, TypedDict

import orjson

from .. import storable

if TYPE_CHECKING:
    from .journal import Step
    from .results import DeadLetter, JobStatus

Origin = list[Any] | str | None


class EnqRecord(TypedDict):
    t: Literal["enq"]
    slot: str
    item: Any
    by: Origin


class StartRecord(TypedDict):
    t: Literal["start"]
    routine: str
    seq: int
    attempt: int
    consumed: list[str]


class DoneRecord(TypedDict):
    t: Literal["done"]
    routine: str
    seq: int
    attempt: int
    status: str
    final: bool
    on_end: bool
    state: dict[str, Any]
    emitted: list[list[Any]]
    error: str | None


class DeadLetterRecord(TypedDict):
    t: Literal["dl"]
    slot: str
    item: Any
    reason: str
    error: str | None
    at: float
    queued: bool
    input: NotRequired[bool]  # a starting input its slot refused (written only when true)


class ResumeRecord(TypedDict):
    t: Literal["resume"]


class EndRecord(TypedDict):
    t: Literal["end"]
    status: str
    error: str | None


Record = EnqRecord | StartRecord | DoneRecord | DeadLetterRecord | ResumeRecord | EndRecord

RESUME: ResumeRecord = {"t": "resume"}


# -- the objects, from the runtime's -----------------------------------------------------


def origin(by: Step | str | None, item: Any) -> Origin:
    """``by`` of an ``enq`` of ``item``: what ``Journal.enqueued`` was given as its origin."""
    if isinstance(by, str) or by is None:
        return by
    return [by.routine, by.seq, by.position(item)]


def enq(slot: str, item: Any, by: Step | str | None) -> EnqRecord:
    return {"t": "enq", "slot": slot, "item": item, "by": origin(by, item)}


def start(step: Step) -> StartRecord:
    return {
        "t": "start",
        "routine": step.routine,
        "seq": step.seq,
        "attempt": step.attempt,
        "consumed": [name for name, _ in step.consumed],
    }


def done(step: Step) -> DoneRecord:
    return {
        "t": "done",
        "routine": step.routine,
        "seq": step.seq,
        "attempt": step.attempt,
        "status": step.status,
        "final": step.final,
        "on_end": step.on_end,
        "state": step.state,
        "emitted": [[event, item] for event, item in step.emitted],
        "error": step.error,
    }


def dead_letter(letter: DeadLetter, *, queued: bool, of_input: bool = False) -> DeadLetterRecord:
    rec: DeadLetterRecord = {
        "t": "dl",
        "slot": letter.slot,
        "item": letter.item,
        "reason": letter.reason,
        "error": letter.error,
        "at": letter.at,
        "queued": queued,
    }
    if of_input:
        rec["input"] = True
    return rec


def end(status: JobStatus, error: str | None) -> EndRecord:
    return {"t": "end", "status": status.value, "error": error}


# -- the text form -------------------------------------------------------------------------

ENQ, START, DONE, STEP, RUN, EMIT_RUN = 0, 1, 2, 3, 4, 5
RESUME_LINE = b'{"t":"resume"}'
_DEFAULT_END = ("completed", True, False, None)  # status, final, on_end, error when not written


def dumps(value: Any, what: str) -> bytes:
    """``value`` as JSON, if it comes back exactly (``weirflow.storable``; else
    ``UnstorableError``, a ``StoreError``, naming where the problem is).

    Integers in range and strings without NUL characters are written straight away: they
    come back exactly, so the decode ``storable.encode`` makes to be sure is skipped for
    the commonest items (anything else, or a string orjson refuses, goes through it)."""
    kind = type(value)
    if kind is int:
        if storable.INT_MIN <= value < storable.INT_END:
            return orjson.dumps(value)
    elif kind is str:
        try:
            text = orjson.dumps(value)
        except TypeError:
            pass
        else:
            if b"\\u0000" not in text:
                return text
    return storable.encode(value, what)


class _Names(dict[str, bytes]):
    """Names encoded as JSON strings, on first use (a dict: the lookup is C code)."""

    def __missing__(self, name: str) -> bytes:
        encoded = self[name] = orjson.dumps(name)
        return encoded


class Codec:
    """Writes records as lines (``bytes``), the parts a journal reuses encoded once.

    Routine, slot and event names are encoded on first use and kept; an item is
    encoded by the caller (``item``) once, and its bytes reused in every record that
    holds it. The methods take already encoded parts where a journal holds them.
    """

    def __init__(self) -> None:
        self.names = _Names()

    def name(self, name: str) -> bytes:
        return self.names[name]

    @staticmethod
    def item(item: Any) -> bytes:
        return dumps(item, "item")

    def origin(self, by: Step | str | None, item: Any) -> bytes:
        if by is None:
            return b"null"
        if isinstance(by, str):  # (``INPUT``: a name, encoded once)
            return self.names[by]
        return b"[%b,%d,%d]" % (self.names[by.routine], by.seq, by.position(item))

    def enq(self, slot: bytes, item: bytes, by: bytes) -> bytes:
        return b"[0,%b,%b,%b]" % (slot, item, by)

    def emitted_by(self, routine: bytes, seq: int, k: int) -> bytes:
        """``by`` of the ``k``-th emit of a step."""
        return b"[%b,%d,%d]" % (routine, seq, k)

    def head(self, step: Step) -> bytes:
        """``routine, seq, attempt, consumed`` of a step."""
        names = self.names
        taken = step.consumed
        consumed = names[taken[0][0]] if len(taken) == 1 else b",".join(names[n] for n, _ in taken)
        return b"%b,%d,%d,[%b]" % (names[step.routine], step.seq, step.attempt, consumed)

    def start(self, head: bytes) -> bytes:
        return b"[1,%b]" % head

    def finished(
        self,
        step: Step,
        sent: Sequence[tuple[bytes, int, *tuple[Any, ...]]] | None,
        item: Callable[[Any], bytes] | None = None,
    ) -> bytes:
        """The line of a finished step: its ``done`` (``sent`` is ``None``), or the whole step
        when its ``start`` was held back, ``sent`` listing ``(slot, k, ...)``: the ``k``-th
        emitted item went to ``slot`` (what follows is the caller's). ``item(x)`` encodes an
        emitted item (a journal passes one that reuses what it encoded at the emit).
        Raises ``UnstorableError`` if the state or an item cannot be stored.

        (One function for the whole line: this runs once per step of every durable job.)"""
        encode = item or self.item
        names = self.names
        state = storable.encode(step.state, "state") if step.state else b"{}"
        out = step.emitted
        if not out:
            emitted = b""
        elif len(out) == 1:
            emitted = b"[%b,%b]" % (names[out[0][0]], encode(out[0][1]))
        else:
            emitted = b",".join([b"[%b,%b]" % (names[ev], encode(x)) for ev, x in out])
        if step.status == "completed" and step.final and not step.on_end and step.error is None:
            tail = b""
        else:
            tail = b",%b,%b,%b,%b" % (
                names[step.status],
                b"true" if step.final else b"false",
                b"true" if step.on_end else b"false",
                orjson.dumps(step.error),
            )
        if sent is None:
            routine = names[step.routine]
            return b"[2,%b,%d,%d,%b,[%b]%b]" % (routine, step.seq, step.attempt, state, emitted, tail)
        if not sent:
            enq = b""
        elif len(sent) == 1:
            enq = b"[%b,%d]" % (sent[0][0], sent[0][1])
        else:
            enq = b",".join([b"[%b,%d]" % (e[0], e[1]) for e in sent])
        return b"[3,%b,[%b],%b,[%b]%b]" % (self.head(step), enq, state, emitted, tail)

    @staticmethod
    def dead_letter(letter: DeadLetter, item: bytes, *, queued: bool, of_input: bool = False) -> bytes:
        return b'{"t":"dl","slot":%b,"item":%b,"reason":%b,"error":%b,"at":%b,"queued":%b%b}' % (
            orjson.dumps(letter.slot),
            item,
            orjson.dumps(letter.reason),
            orjson.dumps(letter.error),
            orjson.dumps(letter.at),
            b"true" if queued else b"false",
            b',"input":true' if of_input else b"",
        )

    @staticmethod
    def end(status: JobStatus, error: str | None) -> bytes:
        return orjson.dumps(end(status, error))


class UnknownRecordError(ValueError):
    """A line that is no record this version knows (a newer version wrote it?)."""


def decode(line: str | bytes, out: list[Record]) -> None:
    """Append the records one line stands for to ``out`` (``UnknownRecordError`` if none)."""
    rec = orjson.loads(line)
    if type(rec) is dict:
        if rec.get("t") not in ("enq", "start", "done", "dl", "resume", "end"):
            raise UnknownRecordError(line)
        out.append(rec)  # type: ignore[arg-type]  # (the object form, as written)
        return
    if type(rec) is not list or not rec or rec[0] not in (0, 1, 2, 3, 4, 5):
        raise UnknownRecordError(line)
    kind = rec[0]
    if kind == ENQ:
        _, slot, item, by = rec
        out.append({"t": "enq", "slot": slot, "item": item, "by": by})
        return
    if kind >= RUN:
        _runs(rec, out)
        return
    routine, seq, attempt = rec[1:4]
    if kind == START:
        out.append({"t": "start", "routine": routine, "seq": seq, "attempt": attempt, "consumed": rec[4]})
        return
    if kind == DONE:
        state, emitted, tail = rec[4], rec[5], rec[6:]
    else:
        out.append({"t": "start", "routine": routine, "seq": seq, "attempt": attempt, "consumed": rec[4]})
        out.extend(
            {"t": "enq", "slot": slot, "item": rec[7][k][1], "by": [routine, seq, k]} for slot, k in rec[5]
        )
        state, emitted, tail = rec[6], rec[7], rec[8:]
    status, final, on_end, error = tail or _DEFAULT_END
    out.append(
        {
            "t": "done",
            "routine": routine,
            "seq": seq,
            "attempt": attempt,
            "status": status,
            "final": final,
            "on_end": on_end,
            "state": state,
            "emitted": emitted,
            "error": error,
        }
    )


def _runs(rec: list[Any], out: list[Record]) -> None:
    """The records of a run of whole steps (``[4, ...]``, ``[5, ...]``), as ``[3, ...]``
    records of each of them would decode."""
    if rec[0] == RUN:
        _, routine, attempt, seq, consumed, n = rec
        emits: list[Any] = [None] * n
        slot = event = None
    else:
        _, routine, attempt, seq, consumed, slot, event, emits = rec
    for i, item in enumerate(emits):
        s = seq + i
        out.append({"t": "start", "routine": routine, "seq": s, "attempt": attempt, "consumed": [consumed]})
        if slot is not None:
            out.append({"t": "enq", "slot": slot, "item": item, "by": [routine, s, 0]})
        out.append(
            {
                "t": "done",
                "routine": routine,
                "seq": s,
                "attempt": attempt,
                "status": "completed",
                "final": True,
                "on_end": False,
                "state": {},
                "emitted": [] if slot is None else [[event, item]],
                "error": None,
            }
        )
