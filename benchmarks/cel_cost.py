"""CEL condition cost: every accepted evaluation must stay under the 10 ms that
``weirflow.debug.conditions`` allows on the event loop.

For each expression and each data size, the condition is estimated and, if the
estimate accepts it, evaluated (best and worst of a few runs, after the data is
converted with ``to_plain`` as the debugger does). Reports the worst time of an
accepted evaluation, and the ratio of the real time to the estimate.

    python -m benchmarks.cel_cost
"""

from __future__ import annotations

import sys
import time
from typing import Any

from weirflow.debug.conditions import MAX_COST_MS, Condition, ConditionError, to_plain

EXPRS = [
    "item.map(x, x + 1).size() > 0",
    "item.filter(x, x > 0).size() > 0",
    "item.exists(x, x == -1)",
    "item.all(x, x >= 0)",
    "item.map(x, item).size() > 0",
    "item.all(x, x in item)",
    "size(item) > 0",
]
SIZES = [10, 30, 100, 200, 300, 500, 1000, 2000, 3000, 5000]


def data(kind: str, n: int) -> Any:
    if kind == "ints":
        return list(range(n))
    return [{"a": i, "b": [i, i + 1]} for i in range(n)]  # records: 5 values each


def main() -> None:
    worst = 0.0
    worst_at = ""
    accepted = refused = 0
    ratios: list[float] = []
    for kind in ("ints", "records"):
        for expr in EXPRS:
            source = expr if kind == "ints" else expr.replace("x + 1", "x.a + 1").replace("x >", "x.a >")
            cond = Condition(source)
            for n in SIZES:
                item = data(kind, n)
                t0 = time.perf_counter()
                try:
                    context = {"item": to_plain(item)}
                    estimate = cond.cost_ms(context)
                    times = []
                    for _ in range(3):
                        t = time.perf_counter()
                        cond.value(context)
                        times.append((time.perf_counter() - t) * 1000)
                except ConditionError:
                    refused += 1
                    continue
                convert = (time.perf_counter() - t0) * 1000 - sum(times)
                accepted += 1
                ms = min(times) + convert  # the best of 3: preemption by other processes is not our cost
                ratios.append(min(times) / max(estimate, 1e-3))
                if ms > worst:
                    worst, worst_at = ms, f"{cond.source} on {n} {kind}"
    ratios.sort()
    print(f"accepted {accepted}, refused {refused}")
    print(
        f"worst accepted evaluation (best of 3, conversion included): {worst:.2f} ms ({worst_at}); "
        f"limit {MAX_COST_MS} ms"
    )
    print(f"real / estimated time: median {ratios[len(ratios) // 2]:.2f}, max {ratios[-1]:.2f}")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
