"""``python -m benchmarks.api_queues`` runs: a few requests against its own live server; every
latency present, positive and finite (no speed is asserted: a test cannot hold a timing)."""

from __future__ import annotations

import json
import math
from pathlib import Path

from benchmarks import api_queues


def test_api_queues_benchmark_runs(tmp_path: Path) -> None:
    out = tmp_path / "queues.json"
    assert api_queues.main(["--requests", "20", "--warmup", "5", "--json", str(out)]) == 0
    results = json.loads(out.read_text())
    assert (results["requests"], results["slots"]) == (20, 100)
    assert set(results["metrics"]) == {"p50_ms", "p90_ms", "p99_ms", "max_ms", "mean_ms"}
    assert all(math.isfinite(v) and v > 0 for v in results["metrics"].values())
