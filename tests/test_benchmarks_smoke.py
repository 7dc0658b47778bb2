"""``python -m benchmarks.run --quick`` runs end to end and reports every metric.

Only the shape and sanity of the numbers are checked here; speed is measured by the
benchmarks themselves (see docs/benchmarks.md) and never asserted in tests.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

METRICS = [
    *(
        f"{name}_{side}_items_per_s"
        for name in ("chain", "fanout", "threads")
        for side in ("asyncio", "weirflow")
    ),
    "chain_ratio",
    "fanout_ratio",
    "threads_ratio",
    *(f"latency_{side}_{q}_ms" for side in ("asyncio", "weirflow") for q in ("p50", "p99")),
    "rss_small_peak_mib",
    "rss_large_peak_mib",
    "rss_ratio",
    *(f"debug_{mode}_items_per_s" for mode in ("off", "attached", "condition")),
    "debug_attached_ratio",
    "debug_condition_ratio",
]


def sane(value: object) -> bool:
    return (
        isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value) and value > 0
    )


def test_quick_run_reports_every_metric(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.run", "--quick", "--json", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "chain, 5 async routines" in proc.stdout  # the table went to stdout

    data = json.loads(out.read_text())
    metrics = data["metrics"]
    missing = [k for k in METRICS if k not in metrics]
    assert not missing, f"missing metrics: {missing}"
    bad = {k: metrics[k] for k in METRICS if not sane(metrics[k])}
    assert not bad, f"metrics not positive and finite: {bad}"

    assert data["meta"]["quick"] is True
    assert set(data["targets"]) == {
        "chain_ratio",
        "latency_weirflow_p50_ms",
        "rss_ratio",
        "debug_attached_ratio",
        "debug_condition_ratio",
    }
    for target in data["targets"].values():
        assert isinstance(target["met"], bool)
        assert sane(target["value"])
    repeats = data["sizes"]["repeats"]
    for name, runs in data["runs"].items():
        assert len(runs) == repeats, name
        assert all(sane(v) for v in runs), name
    for size in ("small", "large"):
        rss = data["rss"][size]
        assert rss["items"] == data["sizes"][f"rss_{size}"]
        assert sane(rss["peak_rss_mib"])


def run_benchmark(module: str, *args: str, out: Path) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [sys.executable, "-m", module, *args, "--json", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    return proc


def test_the_durable_chain_benchmark_runs_and_checks_the_journal(tmp_path: Path) -> None:
    out = tmp_path / "chain.json"
    proc = run_benchmark(
        "benchmarks.durable_chain", "--items", "3000", "--repeats", "1", "--backends", "sqlite", out=out
    )
    assert "ratio" in proc.stdout
    data = json.loads(out.read_text())
    assert set(data["runs"]) == {"memory", "sqlite"}
    assert all(sane(v) for runs in data["runs"].values() for v in runs)
    assert sane(data["ratio_to_memory"]["sqlite"])


def test_the_journal_cpu_benchmark_runs_every_side(tmp_path: Path) -> None:
    out = tmp_path / "cpu.json"
    proc = run_benchmark("benchmarks.journal_cpu", "--items", "2000", "--repeats", "1", out=out)
    assert "chain ratio" in proc.stdout
    data = json.loads(out.read_text())
    assert set(data["median_s_per_step"]) == {"memory chain", "durable chain", "journal calls"}
    assert all(sane(v) for v in data["median_s_per_step"].values()) and sane(data["ratio"])


def test_the_store_latency_benchmark_runs_both_sides(tmp_path: Path) -> None:
    out = tmp_path / "latency.json"
    run_benchmark("benchmarks.store_latency", "--items", "50000", "--calls", "20", "--repeats", "1", out=out)
    data = json.loads(out.read_text())
    for side in ("idle", "with hand-off", "without hand-off"):
        assert data[side]["n"] >= 1 and sane(data[side]["max"]), side


@pytest.mark.slow
def test_the_executors_benchmark_runs_every_pair(tmp_path: Path) -> None:
    """``python -m benchmarks.executors --quick``: every pair measured (chain_gen only where
    routilux is installed, and said so where it is not), numbers sane, no speed asserted."""
    out = tmp_path / "executors.json"
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.executors", "--quick", "--json", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    results = json.loads(out.read_text())["results"]
    expected = {"def_chain", "sleep16", "io16", "cpu"}
    assert expected <= set(results)
    if "chain_gen" not in results:
        assert "chain_gen: SKIPPED" in proc.stderr
    for pair in results.values():
        assert all(sane(v) for k, v in pair.items() if k not in ("met", "target"))


def test_the_cluster_registry_benchmark_runs_every_side(tmp_path: Path) -> None:
    out = tmp_path / "cluster.json"
    proc = run_benchmark("benchmarks.cluster_registry", "--quick", out=out)
    assert "ratio select/scan" in proc.stdout
    data = json.loads(out.read_text())
    for name in ("select", "scan", "select_label", "ping", "heartbeat", "register", "convergence"):
        assert sane(data[name]["p50"]) and sane(data[name]["p99"]), name
    assert all(sane(r["p50"]) for r in data["ratios"].values())
    assert sane(data["recovery_s"]) and data["cold_start_nodes"] == 102
