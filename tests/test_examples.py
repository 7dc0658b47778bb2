"""Every example under ``examples/`` runs, in a subprocess, and prints the right values.

A new example script or flow file without a check here fails ``test_every_example_is_checked``.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from examples import orders_join, retries

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
WORDCOUNT_WORDS = len((EXAMPLES / "wordcount.txt").read_text(encoding="utf-8").split())


def run(*args: str) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    return proc


def lines_starting(stdout: str, prefix: str) -> list[str]:
    return [line.removeprefix(prefix) for line in stdout.splitlines() if line.startswith(prefix)]


def check_wordcount(out: str) -> None:
    assert lines_starting(out, "status: ") == ["completed"]
    assert lines_starting(out, "lines: ") == ["4"]
    assert lines_starting(out, "words: ") == [str(WORDCOUNT_WORDS)]


def check_orders_join(out: str) -> None:
    assert lines_starting(out, "status: ") == ["completed"]
    invoices = [json.loads(line) for line in lines_starting(out, "invoice: ")]
    expected = [
        {
            "id": o["id"],
            "amount": orders_join.PRICES[o["sku"]] * o["qty"],
            "backorder": orders_join.STOCK[o["sku"]] < o["qty"],
        }
        for o in orders_join.ORDERS
    ]
    assert invoices == expected
    (summary,) = (json.loads(line) for line in lines_starting(out, "summary: "))
    assert summary == {
        "invoices": len(expected),
        "revenue": sum(i["amount"] for i in expected),
        "backorders": [i["id"] for i in expected if i["backorder"]],
    }
    assert summary["backorders"] == [2, 5]


def check_retries(out: str) -> None:
    assert lines_starting(out, "status: ") == ["completed"]
    assert lines_starting(out, "page: ") == [
        "https://example.org/a (attempt 1)",
        "https://example.org/flaky (attempt 2)",
        "https://example.org/busy (attempt 2)",
        "https://example.org/c (attempt 1)",
    ]
    assert lines_starting(out, "dead letter: ") == [
        "fetch.urls https://example.org/down [handler_failed] ConnectionError: connection refused",
        "fetch.urls ftp://example.org/b [handler_failed] ValueError: unsupported scheme in ftp://example.org/b",
    ]
    # calls: a 1, flaky 2, busy 2, down 3 (retries=2), ftp 1 (give_up_on: no retry), c 1
    # failures: flaky 1, busy 1, down 3, ftp 1; retries: flaky 1, busy 1, down 2
    assert retries.Fetch.on_error.retries == 2
    assert lines_starting(out, "calls: ") == ["10, failures: 6, retries: 4"]


def check_streaming(out: str) -> None:
    (paused,) = lines_starting(out, "paused (recalibrating): ")
    queued = int(paused.split()[0])
    assert 0 <= queued <= 4
    assert lines_starting(out, "warning: ") == ["slot clean.readings is full (8/8)"]
    # before the pause: 21.5, 22.0, 21.0 valid (999.0 is not); while paused the slot is
    # filled with 20.0, 21.0, ...; after resume -100.0 (not valid)
    fill = [20.0 + i for i in range(8 - queued)]
    valid = [21.5, 22.0, 21.0, *fill]
    assert lines_starting(out, "status: ") == ["completed"]
    assert lines_starting(out, "valid readings: ") == [str(len(valid))]
    assert lines_starting(out, "mean: ") == [str(round(sum(valid) / len(valid), 3))]
    assert re.search(r"^resumed after \d+\.\d{3}s$", out, re.MULTILINE)


SCRIPTS: dict[str, Callable[[str], None]] = {
    "wordcount": check_wordcount,
    "orders_join": check_orders_join,
    "retries": check_retries,
    "streaming": check_streaming,
}
FLOW_FILES = {"wordcount.yaml"}


def test_every_example_is_checked() -> None:
    scripts = {p.stem for p in EXAMPLES.glob("*.py") if p.stem != "__init__"}
    assert scripts == set(SCRIPTS)
    assert {p.name for p in EXAMPLES.glob("*.yaml")} == FLOW_FILES


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_example_script(name: str) -> None:
    SCRIPTS[name](run("-m", f"examples.{name}").stdout)


def test_wordcount_flow_file_with_the_cli() -> None:
    proc = run(
        "-m", "weirflow", "run", "examples/wordcount.yaml", "--input", "split.text=@examples/wordcount.txt"
    )
    assert json.loads(proc.stdout) == {
        "status": "completed",
        "outputs": {"count.total": [WORDCOUNT_WORDS]},
        "dead_letters": 0,
        "error": None,
    }


def test_wordcount_flow_file_is_valid() -> None:
    proc = run("-m", "weirflow", "validate", "examples/wordcount.yaml")
    assert "2 routine(s), 1 connection(s), 1 output(s)" in proc.stdout
