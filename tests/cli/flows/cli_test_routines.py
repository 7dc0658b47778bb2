"""Routines for the CLI tests' flow files (imported from this directory by the flow loader)."""

from __future__ import annotations

import asyncio
import os
import sys

import weirflow as wf


class Boom(wf.Routine):
    """Fails on the item ``"boom"``; with the default policy that fails the job."""

    items = wf.Slot()
    out = wf.Event()

    @items.handler
    async def handle(self, item: str, ctx: wf.Context) -> None:
        if item == "boom":
            raise RuntimeError("kaboom")
        await ctx.emit(self.out, item)


class Slow(wf.Routine):
    """Takes ``delay_s`` per item."""

    items = wf.Slot()
    out = wf.Event()
    delay_s: float = 30.0

    @items.handler
    async def handle(self, item: object, ctx: wf.Context) -> None:
        if os.environ.get("CLI_TEST_ANNOUNCE"):  # lets a test wait for the job to be running
            print(f"handling {item}", file=sys.stderr, flush=True)
        await asyncio.sleep(self.delay_s)
        await ctx.emit(self.out, item)


class Echo(wf.Routine):
    """Emits every item as it is (any JSON value)."""

    items = wf.Slot()
    out = wf.Event()

    @items.handler
    async def handle(self, item: object, ctx: wf.Context) -> None:
        await ctx.emit(self.out, item)
