"""Instructions ``redis-server`` spends per no-op job on the Redis store's hot path, counted by
callgrind (deterministic: the machine's load does not move them), batches fixed.

``python -m benchmarks.redis_server_instr [--jobs N] [--batch B]``

One throw-away ``redis-server`` (loopback, ``appendonly yes``, ``appendfsync everysec``: what
docs/workers.md asks of a job store) run under ``valgrind --tool=callgrind``. N jobs are
submitted (``submit_many``, 1,000 at a time: not counted), then callgrind's counters are zeroed
and the store is driven as a worker drives it: claim B, complete the B with one step row each
(``Store.complete(..., steps=...)``), until none is left; the counters are dumped then. Reported:
the server's instructions per job over that phase. Compare trees by running it with
``PYTHONPATH=<tree>/src:.``; the same tree varies by well under 1 % from run to run.
"""

from __future__ import annotations

import argparse
import asyncio
import glob
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

from tests.redisserver import free_port

from weirflow.durable import JobSpec, StepRecord
from weirflow.durable.redis_store import RedisStore


def _control(flag: str, pid: int) -> None:
    """``callgrind_control FLAG PID``: ``-z`` zeroes the server's counters, ``-d`` dumps them."""
    subprocess.run(["callgrind_control", flag, str(pid)], check=True, capture_output=True)


async def drive(url: str, n: int, batch: int, pid: int) -> None:
    async with RedisStore(url) as store:
        for start in range(0, n, 1000):
            specs = [
                JobSpec(flow="noop", inputs={"noop.input": [i]}) for i in range(start, min(n, start + 1000))
            ]
            await store.submit_many(specs)
        await asyncio.to_thread(_control, "-z", pid)
        done = 0
        while done < n:
            jobs = (await store.claim("default", "w1", limit=batch, lease_s=30)).jobs
            assert jobs, "the queue ran dry before every job was claimed"
            steps = [
                StepRecord(
                    j.id, "noop", 0, "completed", run=j.token, started_at=1.0, completed_at=2.0, worker="w1"
                )
                for j in jobs
            ]
            refused = await store.complete("w1", [(j.id, j.token, {"noop.output": [1]}) for j in jobs], steps)
            assert not refused, refused
            done += len(jobs)
        await asyncio.to_thread(_control, "-d", pid)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--batch", type=int, default=50)
    args = parser.parse_args()
    binary, valgrind = shutil.which("redis-server"), shutil.which("valgrind")
    if binary is None or valgrind is None:
        sys.exit("needs redis-server and valgrind")
    root = Path(tempfile.mkdtemp(prefix="weirflow-rinstr-"))
    port = free_port()
    out = root / "callgrind.%p.out"
    proc = subprocess.Popen(
        [
            valgrind, "--tool=callgrind", f"--callgrind-out-file={out}", binary,
            "--port", str(port), "--bind", "127.0.0.1", "--dir", str(root), "--save", "",
            "--appendonly", "yes", "--appendfsync", "everysec", "--daemonize", "no",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        for line in proc.stdout:  # (the server's own readiness line: an event, not a poll)
            if "Ready to accept" in line:
                break
        else:
            sys.exit("redis-server did not start under valgrind")
        stdout = proc.stdout
        threading.Thread(target=lambda: [None for _ in stdout], daemon=True).start()
        asyncio.run(drive(f"redis://127.0.0.1:{port}/0", args.jobs, args.batch, proc.pid))
        [dump] = glob.glob(str(root / "callgrind.*.out.1"))
        total = next(
            int(line.split()[1])
            for line in Path(dump).read_text().splitlines()
            if line.startswith("summary:")
        )
        print(
            f"redis-server: {total / args.jobs:,.0f} instructions per job"
            f" ({args.jobs} jobs, batches of {args.batch})"
        )
    finally:
        proc.terminate()
        proc.wait()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
