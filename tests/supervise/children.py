"""Child mains for the tests of ``weirflow.supervise.child`` (imported in spawned children)."""

from __future__ import annotations

import asyncio
import signal
import sys
from typing import Any

from weirflow.errors import InvalidCommand
from weirflow.supervise.channel import Channel


async def echo_main(channel: Channel, arg: Any) -> int:
    """Answers ``echo`` (its body), ``sleep`` (after ``body`` seconds, the body), ``fail``
    (an ``InvalidCommand``), ``alloc`` (holds ``body`` MiB), ``exit`` (ends with code ``body``)."""
    done: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    held: list[bytearray] = []

    async def echo(body: Any) -> Any:
        return body

    async def sleep(body: Any) -> Any:
        await asyncio.sleep(float(body))
        return body

    async def fail(body: Any) -> Any:
        raise InvalidCommand(f"bad: {body}")

    async def alloc(body: Any) -> int:
        block = bytearray(int(body) * 1024 * 1024)
        block[::4096] = b"x" * len(block[::4096])  # touch every page: resident
        held.append(block)
        return len(held)

    async def leave(body: Any) -> None:
        asyncio.get_running_loop().call_soon(done.set_result, int(body))

    async def ignore_term(body: Any) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)

    async def modules(body: Any) -> list[str]:
        return sorted({name.split(".")[0] for name in sys.modules})

    channel.handle("ignore_term", ignore_term)
    channel.handle("modules", modules)
    for name, fn in (("echo", echo), ("sleep", sleep), ("fail", fail), ("alloc", alloc), ("exit", leave)):
        channel.handle(name, fn)
    channel.on_notification("ping", lambda body: asyncio.ensure_future(channel.notify("pong", body)))
    await channel.ready({"arg": arg})
    return await done
