"""Latency per target over a range: median, p95 and maximum of the successful probes' response
times (what visitors waited for ``main.json``), from every vantage."""

from __future__ import annotations

import math
from typing import Any

from difusor.ledger import Ledger


def latency(ledger: Ledger, *, since: str, until: str) -> list[dict[str, Any]]:
    """``[{objetivo, sondeos, p50_ms, p95_ms, max_ms}]`` by target name; nearest-rank
    percentiles (a value that was measured, not an interpolation)."""
    out = []
    for target, values in sorted(ledger.probe_latencies(since, until).items()):
        values.sort()
        n = len(values)

        def rank(p: float, values: list[float] = values, n: int = n) -> float:
            return round(values[max(0, math.ceil(n * p) - 1)], 1)

        out.append({"objetivo": target, "sondeos": n, "p50_ms": rank(0.5),
                    "p95_ms": rank(0.95), "max_ms": round(values[-1], 1)})
    return out
