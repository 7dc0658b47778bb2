"""Importable routines for flow-file tests (flow files name them by module path)."""

from __future__ import annotations

from typing import Any

import weirflow as wf


class Source(wf.Routine):
    inp = wf.Slot()
    out = wf.Event()

    @inp.handler
    async def fwd(self, item: Any, ctx: wf.Context) -> None:
        await ctx.emit(self.out, item)


class Sink(wf.Routine):
    inp = wf.Slot()
    label: str = ""  # a setting (``with: {label: ...}``)

    @inp.handler
    def take(self, item: Any) -> None: ...


@wf.routine
def upper(text: str) -> str:
    return text.upper()


def plain(text: str) -> str:
    return text[::-1]


NOT_A_ROUTINE = 42
