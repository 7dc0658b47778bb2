"""A process-executor child never outlives the process that owns it, even mid-call."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import psutil
import pytest

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = textwrap.dedent(
    """
    import asyncio, sys
    import weirflow as wf
    from tests.runtime.process_flows import Tell

    async def main() -> None:
        flow = wf.Flow("orphan")
        flow.add("t", Tell(fifo=sys.argv[1]))
        async with wf.Engine(max_processes=1) as engine:
            job = await engine.start(flow, {"t.inp": [1]})
            await job.wait()

    if __name__ == "__main__":
        asyncio.run(main())
    """
)


@pytest.mark.timeout(120)
def test_a_child_in_the_middle_of_a_call_dies_with_its_killed_parent(tmp_path: Path) -> None:
    # a durable worker kill -9-ed while a process handler runs: the handler must not run
    # on beside the retry of its step in the worker that takes the job over
    fifo = tmp_path / "pid"
    os.mkfifo(fifo)
    script = tmp_path / "owner.py"
    script.write_text(SCRIPT)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "src")])}
    owner = subprocess.Popen([sys.executable, str(script), str(fifo)], cwd=ROOT, env=env)
    child: psutil.Process | None = None
    try:
        with open(fifo) as f:  # blocks until the handler, inside its call, writes its pid
            child = psutil.Process(int(f.readline()))
        assert child.ppid() == owner.pid
        owner.send_signal(signal.SIGKILL)
        owner.wait(timeout=30)
        _, alive = psutil.wait_procs([child], timeout=10)
        assert not alive, f"the process child {child.pid} outlived its killed parent"
    finally:
        owner.kill()
        owner.wait(timeout=30)
        if child is not None and child.is_running():
            child.kill()
