"""The flow behind ``weirflow demo``: the top words of a short text.

``lines.text`` -> ``Tokenize`` -> ``Filter`` (drops stop words) -> ``Tally`` (a batch
handler that pretends each batch is a round trip to a store, so the progress
display has something to show) -> ``top`` and ``total`` outputs. About one second
end to end.
"""

from __future__ import annotations

import asyncio
import re
from collections import Counter
from typing import Any

from . import Context, Event, Flow, Routine, Slot, batch

TEXT = """\
A weir is a low dam across a river that raises the water upstream.
Water flows over the weir in a smooth sheet, and the flow can be measured.
The river keeps moving, but the weir holds back enough water to keep the level steady.
Mills were built beside the weir so the water could turn the wheel.
When the river floods, the water rises over the weir and the mill wheel turns faster.
A fish ladder beside the weir lets fish climb past the dam.
The miller watched the water, the wheel and the level of the river every day.
Every flow has a source, a path and a place where the water settles.
"""

STOP_WORDS = frozenset(
    {"a", "an", "and", "the", "to", "of", "over", "in", "so", "but", "be", "can", "could"}
    | {"has", "every", "where", "when", "past", "back", "lets"}
)


class Tokenize(Routine):
    """One line of text in, its lower-case words out."""

    text = Slot()
    words = Event()

    @text.handler
    async def split(self, line: str, ctx: Context) -> None:
        for word in re.findall(r"[a-z']+", line.lower()):
            await ctx.emit(self.words, word)


class Filter(Routine):
    """Drops the words in ``stop_words``."""

    words = Slot(capacity=32)
    kept = Event()
    stop_words: frozenset[str] = frozenset()

    @words.handler
    async def keep(self, word: str, ctx: Context) -> None:
        if word not in self.stop_words:
            await ctx.emit(self.kept, word)


class Tally(Routine):
    """Counts words in batches; at the end emits the ``top`` words and the ``total``."""

    words = Slot(capacity=16)
    top = Event()
    total = Event()
    n_top: int = 5
    batch_delay_s: float = 0.08

    @batch(words, max_items=8, max_wait_s=0.02)
    async def count(self, words: list[str], ctx: Context) -> None:
        await asyncio.sleep(self.batch_delay_s)  # stands in for a write to a store
        counts: Counter[str] = ctx.state.setdefault("counts", Counter())
        counts.update(words)

    async def on_end(self, ctx: Context) -> None:
        counts: Counter[str] = ctx.state.get("counts", Counter())
        for word, n in counts.most_common(self.n_top):
            await ctx.emit(self.top, [word, n])
        await ctx.emit(self.total, sum(counts.values()))


def build_flow() -> Flow:
    flow = Flow("demo-top-words")
    flow.add("lines", Tokenize())
    flow.add("filter", Filter(stop_words=STOP_WORDS))
    flow.add("tally", Tally(n_top=5))
    flow.connect("lines.words", "filter.words")
    flow.connect("filter.kept", "tally.words")
    flow.output("tally.top")
    flow.output("tally.total")
    flow.validate()
    return flow


def inputs() -> dict[str, list[Any]]:
    return {"lines.text": TEXT.splitlines()}
