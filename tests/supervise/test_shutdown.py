"""SIGTERM to a supervising process: every child is stopped within grace + 1 s, no orphan."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import psutil
import pytest


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


@pytest.mark.slow
def test_sigterm_stops_five_pipelines_within_grace_and_leaves_no_orphan() -> None:
    grace_s = 1.0
    with subprocess.Popen(
        [sys.executable, "-m", "tests.supervise.supervisor_script", "5", str(grace_s)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=os.getcwd(),
    ) as proc:
        try:
            check(proc, grace_s)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


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
    assert proc.wait(timeout=30) == 0
    took_s = time.monotonic() - t0
    assert json.loads(line)["shutdown_s"] <= grace_s + 1
    assert took_s <= grace_s + 1 + 1.0  # and the interpreter's own exit
    assert all(gone(pid) for pid in pids)
    # multiprocessing's resource tracker ends once it sees its parent gone
    _, alive = psutil.wait_procs(tree, timeout=5)
    assert alive == []


@pytest.mark.slow
def test_sigkill_of_the_supervisor_leaves_no_child_behind() -> None:
    with subprocess.Popen(
        [sys.executable, "-m", "tests.supervise.supervisor_script", "3", "1.0"],
        stdout=subprocess.PIPE,
        text=True,
        cwd=os.getcwd(),
    ) as proc:
        try:
            assert proc.stdout is not None
            pids: list[int] = json.loads(proc.stdout.readline())["pids"]
            children = [psutil.Process(pid) for pid in pids]
            proc.kill()  # no cleanup at all: the children must notice by themselves
            proc.wait(timeout=30)
            _, alive = psutil.wait_procs(children, timeout=5)
            assert alive == []
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


@pytest.mark.slow
def test_sigkill_of_the_supervisor_leaves_no_grandchild_of_a_process_routine() -> None:
    with subprocess.Popen(
        [sys.executable, "-m", "tests.supervise.supervisor_script", "1", "1.0", "square"],
        stdout=subprocess.PIPE,
        text=True,
        cwd=os.getcwd(),
    ) as proc:
        try:
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
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
