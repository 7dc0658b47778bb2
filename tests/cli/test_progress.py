"""The progress display: what it draws from a real job, and that it goes to a terminal only."""

from __future__ import annotations

import io
import json
import os
import pty
import subprocess
import sys
import threading

from examples.wordcount import build_flow
from rich.console import Console

import weirflow as wf
from weirflow.cli.execute import run_job
from weirflow.cli.progress import render

from .conftest import ROOT


def text_of(renderable: object) -> str:
    console = Console(file=io.StringIO(), width=120, color_system=None)
    console.print(renderable)
    out = console.file
    assert isinstance(out, io.StringIO)
    return out.getvalue()


async def test_render_shows_calls_per_routine_and_fill_per_slot() -> None:
    async with wf.Engine() as engine:
        job = await engine.start(build_flow(), keep_open=True)
        await job.pause(reason="look")
        for line in ("a b", "c", "d e f"):
            await job.send("split.text", line)
        text = text_of(render(job))
        assert "wordcount · paused" in text
        assert "3/1000" in text  # split.text holds the three lines
        assert "0/64" in text
        await job.resume()
        await job.close_input()
        result = await job.wait(timeout_s=10)
        assert result.outputs == {"count.total": [6]}
        lines = text_of(render(job)).splitlines()

    def cells(first: str) -> list[str]:
        row = next(line for line in lines if line.startswith(f"│ {first} "))
        return [cell.strip() for cell in row.split("│")[1:-1]]

    calls = {name: str(r.calls) for name, r in result.stats.routines.items()}
    assert cells("split")[:2] == ["split", calls["split"]]
    assert cells("count")[:2] == ["count", calls["count"]]
    assert calls["split"] == "3"
    # routine, fill bar, queued, processed, state
    assert [cells("count.words")[i] for i in (0, 2, 3, 4)] == ["count.words", "0/64", "6", "ok"]


async def test_run_job_draws_on_the_console_it_is_given() -> None:
    out = io.StringIO()
    console = Console(file=out, width=120, force_terminal=True, color_system=None)
    doc = await run_job(build_flow(), {"split.text": ["a b c"]}, timeout_s=10, console=console)
    assert doc["outputs"] == {"count.total": [3]}
    assert "split.text" in out.getvalue()
    assert "completed" in out.getvalue()


def run_with_terminal_stderr(*args: str) -> tuple[int, str, str]:
    """Run the CLI with stderr on a pseudo-terminal and stdout on a pipe."""
    leader, follower = pty.openpty()
    chunks: list[bytes] = []

    def read() -> None:
        while True:
            try:
                data = os.read(leader, 4096)
            except OSError:  # EIO once the child has closed its end
                return
            if not data:
                return
            chunks.append(data)

    reader = threading.Thread(target=read)
    reader.start()
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "weirflow", *args],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=follower,
            env={**os.environ, "COLUMNS": "120", "TERM": "xterm"},
            timeout=60,
            check=False,
        )
    finally:
        os.close(follower)
        reader.join(timeout=10)
        os.close(leader)
    return proc.returncode, proc.stdout.decode(), b"".join(chunks).decode(errors="replace")


def test_progress_is_drawn_on_a_terminal_and_stdout_stays_json() -> None:
    code, stdout, stderr = run_with_terminal_stderr("demo")
    assert code == 0
    assert json.loads(stdout)["status"] == "completed"
    for name in ("lines", "filter", "tally", "tally.words", "demo-top-words"):
        assert name in stderr


def test_no_progress_keeps_the_terminal_quiet() -> None:
    code, stdout, stderr = run_with_terminal_stderr("demo", "--no-progress")
    assert code == 0
    assert json.loads(stdout)["status"] == "completed"
    assert stderr == ""
