"""The journals durable workers attach to the one ``Engine`` they may share.

An engine has one journal slot. Each worker attaches its own journals (its step rows and
its durable journal) to the engine's, and at its stop detaches only those: several
workers on one engine (one per queue, say) each keep theirs however they stop, and the
engine's own journal (a ``LogJournal``, say), the one it had before the first worker came,
comes back when the last one goes. (A worker's durable journal writes only the jobs it
began, under their tokens, so each job's records reach its own worker's journal once;
the others drop them.) A job keeps the journal it started with (``Job.journal``).
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass, field

from ..runtime.engine import Engine
from ..runtime.journal import Journal, Journals


@dataclass
class _Attached:
    base: Journal | None  # the engine's journal before the first worker attached
    members: list[Journal] = field(default_factory=list)


_attached: weakref.WeakKeyDictionary[Engine, _Attached] = weakref.WeakKeyDictionary()


def attach(engine: Engine, journals: list[Journal]) -> None:
    """Add ``journals`` (one worker's) to ``engine``'s."""
    state = _attached.get(engine)
    if state is None:
        state = _attached[engine] = _Attached(engine.journal)
    state.members.extend(journals)
    _install(engine, state)


def detach(engine: Engine, journals: list[Journal]) -> None:
    """Take ``journals`` (those ``attach`` added for one worker) out of ``engine``'s, the
    other workers' kept."""
    state = _attached.get(engine)
    if state is None:
        return
    state.members = [j for j in state.members if not any(j is mine for mine in journals)]
    _install(engine, state)
    if not state.members:
        del _attached[engine]


def _install(engine: Engine, state: _Attached) -> None:
    journals = [j for j in (state.base, *state.members) if j is not None]
    if not journals:
        engine.journal = None
    else:  # (one journal is installed as it is: no ``Journals`` call in between)
        engine.journal = journals[0] if len(journals) == 1 else Journals(*journals)
