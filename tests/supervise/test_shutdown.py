"""SIGTERM to a supervising process: every child is stopped within grace + 1 s, no orphan."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time

import psutil
import pytest

import weirflow as wf
from tests.processes import running


def _supervisor(*args: str) -> contextlib.AbstractContextManager[subprocess.Popen[str]]:
    """``tests.supervise.supervisor_script PIPELINES GRACE_S [FLOW]``, its stdout piped."""
    script = [sys.executable, "-m", "tests.supervise.supervisor_script", *args]
    return running(subprocess.Popen(script, stdout=subprocess.PIPE, text=True, cwd=os.getcwd()))


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


@pytest.mark.slow
def test_sigterm_stops_five_pipelines_within_grace_and_leaves_no_orphan() -> None:
    grace_s = 1.0
    with _supervisor("5", str(grace_s)) as proc:
        check(proc, grace_s)


def check(proc: subprocess.Popen[str], grace_s: float) -> None:
    assert proc.stdout is not None
    first = json.loads(proc.stdout.readline())
    pids: list[int] = first["pids"]
    assert len(pids) == 5
    tree = psutil.Process(proc.pid).children(recursive=True)
    assert set(pids) <= {c.pid for c in tree}
    t0 = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    line = proc.stdout.readline()
    # timed from the signal to the script's word that its supervisor has closed, every child
    # ended by then: what the script does after (asyncio.run's teardown, the interpreter's
    # exit: 0.3-0.6 s at load 12-15) is no part of the bound, nor is the wait for it
    took_s = time.monotonic() - t0
    assert all(gone(pid) for pid in pids)
    assert json.loads(line)["shutdown_s"] <= took_s <= grace_s + 1
    assert proc.wait(timeout=30) == 0
    # multiprocessing's resource tracker ends once it sees its parent gone
    _, alive = psutil.wait_procs(tree, timeout=5)
    assert alive == []


@pytest.mark.slow
def test_sigkill_of_the_supervisor_leaves_no_child_behind() -> None:
    with _supervisor("3", "1.0") as proc:
        assert proc.stdout is not None
        pids: list[int] = json.loads(proc.stdout.readline())["pids"]
        children = [psutil.Process(pid) for pid in pids]
        proc.kill()  # no cleanup at all: the children must notice by themselves
        proc.wait(timeout=30)
        _, alive = psutil.wait_procs(children, timeout=5)
        assert alive == []


@pytest.mark.slow
def test_sigkill_of_the_supervisor_leaves_no_grandchild_of_a_process_routine() -> None:
    with _supervisor("1", "1.0", "square") as proc:
        assert proc.stdout is not None
        pids: list[int] = json.loads(proc.stdout.readline())["pids"]
        square = psutil.Process(pids[-1])
        grandchildren = square.children(recursive=True)
        assert grandchildren  # the process executor's worker runs under the pipeline's child
        tree = psutil.Process(proc.pid).children(recursive=True)
        proc.kill()
        proc.wait(timeout=30)
        _, alive = psutil.wait_procs(tree, timeout=5)
        assert alive == []


@pytest.mark.slow
async def test_close_is_bounded_by_grace_plus_a_second_with_children_that_ignore_sigterm() -> None:
    grace_s = 1.0
    sup = wf.Supervisor(flows="tests.supervise.flows", warm=1, grace_s=grace_s, health_interval_s=0.5)
    await sup.open()
    try:
        ps = [await sup.start("stubborn", {"s.inp": [i]}) for i in range(3)]
        for i, p in enumerate(ps):  # each child ignores SIGTERM now, and its job never drains
            assert await sup.results(p.id, max_items=1, wait_s=30) == [i]
        assert sup.pool is not None
        await sup.pool.wait_spare()
        pids = [p.pid for p in ps] + [c.pid for c in sup.pool.spares]
        assert len(pids) == 4
        t0 = time.monotonic()
        await sup.close()
        took_s = time.monotonic() - t0
    finally:
        await sup.close()
    assert took_s <= grace_s + 1.0, took_s
    assert took_s >= grace_s  # the jobs had their grace to drain
    assert all(sup.get(p.id).state == "stopped" for p in ps)
    for p in ps:
        last_exit = sup.get(p.id).last_exit
        assert last_exit is not None and last_exit["signal"] == "SIGKILL", last_exit
    assert all(pid is not None and gone(pid) for pid in pids)
