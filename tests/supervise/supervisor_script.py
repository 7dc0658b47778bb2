"""A program that supervises N pipelines until SIGTERM (for the shutdown tests).

``python -m tests.supervise.supervisor_script N GRACE_S [square]`` prints
``{"pids": [...]}`` once every pipeline runs (with ``square``, one more pipeline whose
routine runs in a process of the child's own, once it has given its first result), then ``{"shutdown_s": s}``
after SIGTERM stopped them.
Half the pipelines are tickers that never drain (they must be killed after the
grace), half echo pipelines that drain at once.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import time

import weirflow as wf


async def main(n: int, grace_s: float, square: bool) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    async with wf.Supervisor(flows="tests.supervise.flows", grace_s=grace_s) as sup:
        starts = [
            sup.start("ticker", {"src.start": [-1]}) if i % 2 else sup.start("echo", {"echo.input": [i]})
            for i in range(n)
        ]
        infos = await asyncio.gather(*starts)
        if square:
            infos.append(await sup.start("square", {"sq.inp": [3]}))
            assert await sup.results(infos[-1].id, wait_s=30) == [9]
        print(json.dumps({"pids": [p.pid for p in infos]}), flush=True)
        await stop.wait()
        t0 = time.monotonic()
    print(json.dumps({"shutdown_s": time.monotonic() - t0}), flush=True)


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), float(sys.argv[2]), sys.argv[3:] == ["square"]))
