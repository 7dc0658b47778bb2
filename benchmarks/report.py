"""The readable table printed by ``benchmarks.run``."""

from __future__ import annotations

import statistics
from typing import Any

HEADER = ("measurement", "weirflow", "plain asyncio", "ratio", "spread", "target", "met")


def _rate(v: float) -> str:
    return f"{v:,.0f}/s"


def _ms(v: float) -> str:
    return f"{v:.4f} ms"


def _spread(runs: dict[str, list[float]], name: str) -> str:
    """Largest (max - min) / median over the two sides' runs: how noisy the pair was."""
    worst = 0.0
    for side in ("asyncio", "weirflow"):
        values = runs.get(f"{name}_{side}", [])
        if len(values) > 1:
            worst = max(worst, (max(values) - min(values)) / statistics.median(values))
    return f"{worst:.0%}" if worst else "-"


def _target(results: dict[str, Any], key: str) -> tuple[str, str]:
    t = results["targets"].get(key)
    if t is None:
        return "", ""
    return t["target"], "yes" if t["met"] else "NO"


def rows(results: dict[str, Any]) -> list[tuple[str, ...]]:
    m, s, runs = results["metrics"], results["sizes"], results["runs"]
    out: list[tuple[str, ...]] = []
    for name, label, size in (
        ("chain", "chain, 5 async routines", s["chain"]),
        ("fanout", "fan-out 1 -> 4 -> join4 -> sink", s["fanout"]),
        ("threads", "chain, 5 plain def routines", s["threads"]),
    ):
        out.append(
            (
                f"{label}, {size:,} items",
                _rate(m[f"{name}_weirflow_items_per_s"]),
                _rate(m[f"{name}_asyncio_items_per_s"]),
                f"{m[f'{name}_ratio']:.2f}",
                _spread(runs, name),
                *_target(results, f"{name}_ratio"),
            )
        )
    debug_rows = (("attached", "debugger attached, no breakpoint"), ("condition", "CEL condition per item"))
    for mode, label in debug_rows:
        out.append(
            (
                f"chain, {label}",
                _rate(m[f"debug_{mode}_items_per_s"]),
                _rate(m["debug_off_items_per_s"]) + "*",
                f"{m[f'debug_{mode}_ratio']:.2f}",
                "",
                *_target(results, f"debug_{mode}_ratio"),
            )
        )
    for q in ("p50", "p99"):
        out.append(
            (
                f"latency 5 hops {q}, {s['latency']:,} items",
                _ms(m[f"latency_weirflow_{q}_ms"]),
                _ms(m[f"latency_asyncio_{q}_ms"]),
                f"{m[f'latency_weirflow_{q}_ms'] / m[f'latency_asyncio_{q}_ms']:.2f}",
                "",
                *_target(results, f"latency_weirflow_{q}_ms"),
            )
        )
    out.append(
        (f"peak RSS, {s['rss_small']:,} items", f"{m['rss_small_peak_mib']:.1f} MiB", "", "", "", "", "")
    )
    out.append(
        (f"peak RSS, {s['rss_large']:,} items", f"{m['rss_large_peak_mib']:.1f} MiB", "", "", "", "", "")
    )
    out.append(
        (
            f"peak RSS {s['rss_large']:,} / {s['rss_small']:,}",
            "",
            "",
            f"{m['rss_ratio']:.3f}",
            "",
            *_target(results, "rss_ratio"),
        )
    )
    return out


def table(results: dict[str, Any]) -> str:
    body = rows(results)
    widths = [max(len(r[i]) for r in [HEADER, *body]) for i in range(len(HEADER))]
    right = {1, 2, 3, 4}

    def line(r: tuple[str, ...]) -> str:
        cells = [
            c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True))
        ]
        return "  ".join(cells).rstrip()

    meta = results["meta"]
    head = (
        f"weirflow benchmarks - Python {meta['python']}, {meta['cpus']} CPUs, "
        f"{results['sizes']['repeats']} interleaved runs per throughput pair (medians)"
        + (" [--quick]" if meta["quick"] else "")
    )
    rule = "-" * len(line(HEADER))
    notes = (
        "ratio: weirflow / plain asyncio (throughput: higher is better; latency: lower is better)\n"
        "spread: (max - min) / median over the runs of the noisier side\n"
        "*: for the debugger rows the baseline is the same chain without a debugger, same run"
    )
    return "\n".join([head, rule, line(HEADER), rule, *map(line, body), rule, notes])
