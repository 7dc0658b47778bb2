"""``weirflow worker --processes N`` and ``WorkerSupervisor`` with real processes: a worker
child killed with ``kill -9`` is replaced and the job it held resumes at once, exactly
once; a ``SIGSTOP``ped child is replaced by its health checks while the others stay
healthy; ``SIGTERM`` stops every child within the grace period plus a second, releases
the leases of what was still running, and leaves no process behind."""

from __future__ import annotations

import contextlib
import os
import resource
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.processes import Exits
from weirflow.durable import JobSpec, Store, open_store
from weirflow.supervise.settings import SuperviseSettings
from weirflow.supervise.workers import WorkerChildInfo, WorkerSupervisor

from .helpers import poll_store
from .procs import FLOWS_MODULE, ROOT, WorkerProcess, cli

LONG_S = 60.0  # a first attempt that only a kill or the end of the grace cuts short


def starts(log: Path) -> Counter[tuple[str, int]]:
    """(job, attempt) of each handler call started, from the steps log."""
    if not log.exists():
        return Counter()
    found: Counter[tuple[str, int]] = Counter()
    for line in log.read_text().split():
        kind, job, _routine, attempt, *_ = line.split(":")
        if kind == "start":
            found[(job, int(attempt))] += 1
    return found


def ends(log: Path) -> Counter[tuple[str, int]]:
    found: Counter[tuple[str, int]] = Counter()
    for line in log.read_text().split():
        kind, job, _routine, attempt, *_ = line.split(":")
        if kind == "end":
            found[(job, int(attempt))] += 1
    return found


async def completed(store: Store, job_ids: list[str]) -> bool:
    for job_id in job_ids:
        job = await store.get(job_id)
        if job is None or job.status != "completed":
            return False
    return True


def _cmdline(proc: psutil.Process) -> str:
    try:
        return " ".join(proc.cmdline())
    except psutil.Error:
        return ""


def alive(proc: psutil.Process) -> bool:
    try:
        return proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


@pytest.mark.slow
async def test_a_worker_child_killed_with_sigkill_is_replaced_and_its_job_resumes(
    url: str, tmp_path: Path
) -> None:
    steps_log = tmp_path / "steps.log"
    store = open_store(url)
    await store.open()
    once = str(tmp_path / "long.once")
    item = {
        "first_sleep_s": LONG_S,
        "first_sleep_once": once,
        "sleep_s": 0.1,
        "log": str(steps_log),
        "times": True,
    }
    settings = SuperviseSettings(grace_s=1.0, health_interval_s=0.5)
    # a lease far longer than the test: only the replacement's recovery can resume the job
    options = {"lease_s": 120.0, "concurrency": 1}
    try:
        job_id = await store.submit(JobSpec(flow="one", inputs={"a.item": [item]}))
        sup = WorkerSupervisor(url, FLOWS_MODULE, processes=2, worker_options=options, settings=settings)
        async with sup:
            await poll_store(lambda: _started(steps_log, job_id, 1), timeout_s=60)
            held = await store.get(job_id)
            assert held is not None and held.worker_id is not None
            (victim,) = [c for c in sup.children() if c.worker_id == held.worker_id]
            assert victim.pid is not None
            os.kill(victim.pid, signal.SIGKILL)

            def replaced(children: list[WorkerChildInfo]) -> bool:
                c = children[victim.slot]
                return c.restarts == 1 and c.state == "running" and c.pid not in (None, victim.pid)

            await sup.wait_for(replaced, timeout_s=60)
            info = sup.children()[victim.slot]
            assert info.last_exit is not None and info.last_exit["signal"] == "SIGKILL"
            assert info.worker_id == victim.worker_id  # the same worker id: it recovers the job
            assert [c.restarts for c in sup.children() if c.slot != victim.slot] == [0]
            await poll_store(lambda: completed(store, [job_id]), timeout_s=60)
        job = await store.get(job_id)
        assert job is not None and job.outputs is not None and len(job.outputs["a.out"]) == 1
        # the step ran again (attempt 2, or 1 again if the kill came before its start was
        # committed), once, and only that run ended
        (first, again) = sorted(starts(steps_log).elements())
        assert first == (job_id, 1) and again[0] == job_id
        assert ends(steps_log) == Counter({again: 1})
        assert not [c for c in sup.children() if c.pid is not None]
    finally:
        await store.close()


@pytest.mark.slow
async def test_a_sigstopped_worker_child_is_replaced_while_the_others_stay_healthy(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'weirflow.db'}"
    interval_s, failures = 0.5, 2
    settings = SuperviseSettings(grace_s=1.0, health_interval_s=interval_s, health_failures=failures)
    sup = WorkerSupervisor(url, FLOWS_MODULE, processes=3, settings=settings)
    async with sup:
        await sup.wait_for(lambda cs: all(c.state == "running" for c in cs), timeout_s=60)
        # every child has answered a check: deadlines are measured
        await sup.wait_for(lambda cs: all(c.health["last_ok_at"] for c in cs), timeout_s=30)
        victim = sup.children()[1]
        assert victim.pid is not None
        stopped_at = time.time()
        os.kill(victim.pid, signal.SIGSTOP)
        await sup.wait_for(lambda cs: cs[1].restarts == 1 and cs[1].state == "running", timeout_s=60)
        info = sup.children()[1]
        assert info.last_exit is not None and info.last_exit["signal"] == "SIGKILL"
        assert info.reason is not None and info.reason.startswith("unhealthy")
        took = info.last_exit["at"] - stopped_at
        deadline = victim.health["deadline_s"]
        assert took <= interval_s * failures + deadline + 1.0, took
        # the other two kept being checked on schedule, and answered every time
        for other in (sup.children()[0], sup.children()[2]):
            assert other.restarts == 0 and other.health["failures"] == 0
            assert other.health["last_ok_at"] >= time.time() - interval_s - 1.0
        assert not psutil.pid_exists(victim.pid) or not alive(psutil.Process(victim.pid))


@pytest.mark.slow
async def test_sigterm_stops_worker_processes_within_the_grace_and_loses_nothing(
    url: str, tmp_path: Path
) -> None:
    grace_s = 2.0
    steps_log = tmp_path / "steps.log"
    store = open_store(url)
    await store.open()
    try:
        long_jobs, short_jobs = [], []
        for flow in ("one", "blocking", "in_process"):  # async, def and process handlers
            item = {"first_sleep_s": LONG_S, "sleep_s": 0.1, "log": str(steps_log), "times": True}
            long_jobs.append(await store.submit(JobSpec(flow=flow, inputs={"a.item": [item]})))
        for _ in range(3):
            item = {"sleep_s": 0.1, "log": str(steps_log), "times": True}
            short_jobs.append(await store.submit(JobSpec(flow="steps3", inputs={"a.item": [item]})))
        args = ("--processes", "3", "--concurrency", "2", "--grace-s", str(grace_s), "--lease", "120")
        with WorkerProcess(url, tmp_path / "sup.log", *args) as sup:
            await poll_store(lambda: completed(store, short_jobs), timeout_s=90)
            await poll_store(lambda: _all_started(steps_log, long_jobs), timeout_s=90)
            tree = psutil.Process(sup.proc.pid).children(recursive=True)
            # three worker children (and multiprocessing's resource tracker), and under them the
            # process of the job with executor = "process"
            workers = [p for p in tree if p.ppid() == sup.proc.pid and "spawn_main" in " ".join(p.cmdline())]
            assert len(workers) == 3 and len(tree) >= 5, tree
            # timed from the signal to the end of the last worker process: the supervisor's own
            # exit after that (asyncio.run's teardown, the interpreter's: 0.2-0.6 s at load
            # 10-15) runs no job, so it is waited for, not timed
            with Exits([p.pid for p in workers]) as exits:
                asked = time.monotonic()
                sup.proc.send_signal(signal.SIGTERM)
                ended = exits.wait(timeout_s=30)
            took = max(ended.values()) - asked
            assert grace_s <= took <= grace_s + 1.0, took
            assert sup.wait(timeout_s=30) == 0
            # nothing is left but multiprocessing's resource tracker, which ends by itself once
            # the supervisor's pipe to it is closed
            left = [p for p in tree if alive(p)]
            # (a process that ended between the two looks has no command line any more)
            others = [p for p in left if "resource_tracker" not in _cmdline(p) and alive(p)]
            # (a child killed just before may still be on its way out: its command line is
            # gone already; it must be gone within a few seconds, not run on)
            _, running_on = psutil.wait_procs(others, timeout=5)
            assert not running_on, [(p.pid, _cmdline(p)) for p in running_on]
            _, still = psutil.wait_procs(left, timeout=10)
            assert not still, still
            output = sup.output()
        assert "jobs_released" in output and "worker_supervisor_stopped" in output
        for job_id in long_jobs:
            job = await store.get(job_id)
            assert job is not None and job.status == "queued", job  # given back, not waiting for its lease
            assert [e.kind for e in await store.events(job_id=job_id)][-1] == "released"
        # another worker takes them at once (their leases would last 120 s)
        with WorkerProcess(url, tmp_path / "next.log", "--lease", "120") as nxt:
            await poll_store(lambda: completed(store, long_jobs), timeout_s=60)
            assert nxt.terminate() == 0
        for job_id in long_jobs + short_jobs:
            job = await store.get(job_id)
            assert job is not None and job.outputs is not None
            (outputs,) = job.outputs.values()
            assert len(outputs) == 1, job.outputs
        # every step of every job ran once, but a long one's first attempt, cut short, once more
        calls = starts(steps_log)
        for job_id in long_jobs:
            assert calls[(job_id, 1)] == 1 and calls[(job_id, 2)] == 1
            assert ends(steps_log)[(job_id, 1)] == 0
        for job_id in short_jobs:
            assert calls[(job_id, 1)] == 3 and calls[(job_id, 2)] == 0
    finally:
        await store.close()


def test_bad_supervisor_settings_exit_2_with_one_line(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'weirflow.db'}"
    done = cli(
        "worker", "--store", url, "--flows", FLOWS_MODULE, "--processes", "2", "--health-failures", "0"
    )
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines()[-1].startswith("error: --health-failures:"), done.stderr
    env = {**os.environ, "WEIRFLOW_GRACE_S": "-1"}
    done = subprocess.run(
        [sys.executable, "-m", "weirflow", "worker", "--store", url, "--flows", FLOWS_MODULE],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and "WEIRFLOW_GRACE_S" in done.stderr, done.stderr


async def _started(log: Path, job_id: str, attempt: int) -> bool:
    return starts(log)[(job_id, attempt)] >= 1


async def _all_started(log: Path, job_ids: list[str]) -> bool:
    found = starts(log)
    return all(found[(j, 1)] >= 1 for j in job_ids)


@pytest.mark.slow
async def test_a_worker_child_over_max_rss_is_replaced_and_its_job_still_completes(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'weirflow.db'}"
    store = open_store(url)
    await store.open()
    limit_mb = 300.0
    settings = SuperviseSettings(grace_s=0.5, health_interval_s=0.5, max_rss_mb=limit_mb)
    try:
        # the first run of the job holds 400 MiB more than a worker needs, for a long time;
        # only the replacement of its process ends that run
        item = {"mb": 400, "hold_s": LONG_S, "once": str(tmp_path / "hog.once")}
        job_id = await store.submit(JobSpec(flow="hog", inputs={"a.item": [item]}))
        sup = WorkerSupervisor(
            url, FLOWS_MODULE, processes=1, settings=settings, worker_options={"lease_s": 120}
        )
        async with sup:
            await sup.wait_for(lambda cs: cs[0].pid is not None, timeout_s=60)
            first = sup.children()[0]
            assert first.pid is not None

            def replaced(children: list[WorkerChildInfo]) -> bool:
                return children[0].restarts == 1 and children[0].state == "running"

            await sup.wait_for(replaced, timeout_s=60)
            info = sup.children()[0]
            assert info.pid not in (None, first.pid)
            assert info.reason is not None and f"over max_rss_mb {limit_mb:g}" in info.reason, info.reason
            assert info.last_exit is not None and info.reason in info.last_exit["reason"]
            assert not psutil.pid_exists(first.pid) or not alive(psutil.Process(first.pid))
            # the replaced worker gave its job back: the new one runs it (without the hog) at once
            await poll_store(lambda: completed(store, [job_id]), timeout_s=LONG_S / 2)
            assert sup.children()[0].restarts == 1
    finally:
        await store.close()


@pytest.mark.slow
async def test_a_child_over_max_rss_that_does_not_answer_is_replaced_for_its_rss(tmp_path: Path) -> None:
    # a child too busy (here: stopped) to answer its health checks while its RSS is over
    # the limit is replaced for the RSS, which the supervisor reads itself, not as
    # "unhealthy" after 3 missed checks (before, the RSS was read only after an answer:
    # a worker growing past the limit on a loaded machine was reported as unhealthy)
    url = f"sqlite:///{tmp_path / 'weirflow.db'}"
    settings = SuperviseSettings(grace_s=0.5, health_interval_s=0.5, max_rss_mb=1.0)  # every child is over
    sup = WorkerSupervisor(url, FLOWS_MODULE, processes=1, settings=settings)
    async with sup:
        await sup.wait_for(lambda cs: cs[0].state == "running", timeout_s=60)  # started: checks begin
        first = sup.children()[0]
        assert first.pid is not None
        os.kill(first.pid, signal.SIGSTOP)  # answers nothing from now on
        await sup.wait_for(lambda cs: cs[0].restarts >= 1, timeout_s=60)
        info = sup.children()[0]
        assert info.reason is not None and "over max_rss_mb 1" in info.reason, info.reason
        assert info.last_exit is not None and info.reason in info.last_exit["reason"]
        assert not psutil.pid_exists(first.pid) or not alive(psutil.Process(first.pid))


def _highest_fd() -> int:
    return max(int(fd) for fd in os.listdir("/proc/self/fd"))


async def test_a_worker_child_that_cannot_be_spawned_is_a_failed_start_retried_after_backoff(
    tmp_path: Path,
) -> None:
    """The spawn fails for real, not through a patch: this process's descriptor table is
    full (``RLIMIT_NOFILE`` lowered to the highest descriptor open now, every free number
    below it taken), so the pipe to a new child cannot be made (``EMFILE``). The slot must
    show the failed start and retry after its backoff, and run once descriptors are free."""
    url = f"sqlite:///{tmp_path / 'weirflow.db'}"
    settings = SuperviseSettings(grace_s=0.5, health_interval_s=0.5)
    sup = WorkerSupervisor(
        url, FLOWS_MODULE, processes=1, settings=settings, restart_options={"initial_s": 0.2, "max_s": 0.5}
    )
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    fillers: list[int] = []

    def free_descriptors() -> None:
        while fillers:
            os.close(fillers.pop())
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))

    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (_highest_fd() + 1, hard))
        with contextlib.suppress(OSError):
            while True:
                fillers.append(os.open(os.devnull, os.O_RDONLY))
        async with sup:

            def failed_start(children: list[WorkerChildInfo]) -> bool:
                c = children[0]
                return c.state == "restarting" and (c.reason or "").startswith("start failed")

            await sup.wait_for(failed_start, timeout_s=10)
            free_descriptors()
            info = sup.children()[0]
            assert info.reason is not None and "Too many open files" in info.reason, info.reason
            assert info.pid is None and info.restarts >= 1
            await sup.wait_for(lambda cs: cs[0].state == "running" and cs[0].pid is not None, timeout_s=60)
        assert sup.children()[0].state == "stopped"
    finally:
        free_descriptors()


def _scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of ``url`` by (name, sorted labels)."""
    text = httpx.get(url, timeout=10).text
    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def _total(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str) -> float:
    return sum(
        v for (n, ls), v in samples.items() if n == name and all((k, val) in ls for k, val in labels.items())
    )


@pytest.mark.slow
async def test_worker_processes_serve_the_groups_metrics_on_metrics_port(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'weirflow.db'}"
    store = open_store(url)
    await store.open()
    try:
        quick = [
            await store.submit(JobSpec(flow="steps3", inputs={"a.item": [{"sleep_s": 0.05}]}))
            for _ in range(4)
        ]
        long = await store.submit(JobSpec(flow="one", inputs={"a.item": [{"sleep_s": LONG_S}]}))
        args = ("--processes", "2", "--metrics-port", "0", "--health-interval-s", "0.5", "--grace-s", "1")
        with WorkerProcess(url, tmp_path / "sup.log", *args) as sup:

            async def listening() -> bool:
                return "metrics at http" in sup.output()

            await poll_store(listening, timeout_s=60)  # (its output is another process's)
            (line,) = [x for x in sup.output().splitlines() if "metrics at http" in x]
            metrics_url = line.split("metrics at ")[1].strip()
            await poll_store(lambda: completed(store, quick), timeout_s=60)

            def scraped(check: Callable[[dict[Any, float]], bool]) -> Callable[[], Awaitable[bool]]:
                async def ok() -> bool:  # counters come with each child's next health check
                    return check(_scrape(metrics_url))

                return ok

            def group(s: dict[Any, float]) -> set[str]:
                return {dict(ls)["worker"] for (n, ls) in s if n == "weirflow_worker_concurrency"}

            def counted(s: dict[Any, float]) -> bool:
                # (one child may have run every job, and the other's gauges come with its own
                # first health check, later under load: both are waited for)
                done = _total(s, "weirflow_queue_attempts_total", flow="steps3", outcome="completed")
                return done == 4 and _total(s, "weirflow_worker_running_jobs") == 1 and len(group(s)) == 2

            await poll_store(scraped(counted), timeout_s=30)
            s = _scrape(metrics_url)
            # the children's counts, added up: every worker of the group, each with its gauges
            workers = group(s)
            assert len(workers) == 2 and all(w.endswith(("-0", "-1")) for w in workers), workers
            assert _total(s, "weirflow_queue_job_duration_seconds_count", outcome="completed") == 4
            # read from the store by the supervisor
            assert _total(s, "weirflow_queue_jobs", status="completed") == 4
            assert _total(s, "weirflow_queue_jobs", status="running") == 1
            # the supervisor's own
            for slot in ("0", "1"):
                assert s[("weirflow_worker_child_state", (("slot", slot), ("state", "running")))] == 1
                assert _total(s, "weirflow_worker_child_health_check_seconds_count", slot=slot) >= 1
                assert _total(s, "weirflow_worker_child_rss_bytes", slot=slot) > 10 * 1024 * 1024
            assert _total(s, "weirflow_worker_children", state="running") == 2
            assert _total(s, "weirflow_worker_child_restarts_total") == 0
            # a child killed with kill -9: replaced, the restart counted, and what it counted
            # is still counted (counters never go back)
            tree = psutil.Process(sup.proc.pid).children()
            children = [p for p in tree if "spawn_main" in " ".join(p.cmdline())]
            assert len(children) == 2, children
            os.kill(children[0].pid, signal.SIGKILL)

            def replaced(s: dict[Any, float]) -> bool:
                restarted = _total(s, "weirflow_worker_child_restarts_total", reason="crash") == 1
                return restarted and _total(s, "weirflow_worker_children", state="running") == 2

            await poll_store(scraped(replaced), timeout_s=60)
            s = _scrape(metrics_url)
            assert _total(s, "weirflow_queue_attempts_total", flow="steps3", outcome="completed") == 4
            assert sup.terminate() == 0
        assert long  # (held by a worker all along: the running gauge above)
    finally:
        await store.close()


def test_metrics_port_of_worker_processes_refuses_a_port_in_use(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'weirflow.db'}"
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = str(taken.getsockname()[1])
        done = cli(
            "worker", "--store", url, "--flows", FLOWS_MODULE, "--processes", "2", "--metrics-port", port
        )
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert done.stderr.strip().splitlines()[-1].startswith(f"error: --metrics-port {port}"), done.stderr


async def test_a_stopping_worker_child_reports_what_it_counted_since_its_last_health_check(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'weirflow.db'}"
    store = open_store(url)
    await store.open()
    try:
        job_id = await store.submit(JobSpec(flow="steps3", inputs={"a.item": [{"sleep_s": 0.01}]}))
        # no health check before the stop: the first comes a quarter interval (15 s) in
        settings = SuperviseSettings(grace_s=0.5, health_interval_s=60.0)
        sup = WorkerSupervisor(url, FLOWS_MODULE, processes=1, settings=settings)
        async with sup:
            await poll_store(lambda: completed(store, [job_id]), timeout_s=60)
            assert sup.children()[0].health["last_ok_at"] is None
        text = (await sup.metrics.render()).decode()
        assert 'weirflow_queue_attempts_total{flow="steps3",outcome="completed",queue="default"} 1.0' in text
    finally:
        await store.close()
