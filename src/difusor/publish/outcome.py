"""What one publication reports: its outcome, the operator's line, and the stage timings."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from difusor.publish.origins import SwitchReport


@dataclass
class PublishOutcome:
    status: str  # published | unchanged
    release_id: str
    corte_time: str
    package_id: int
    kind: str
    files: int
    changed: int
    message: str
    timings: dict[str, float] = field(default_factory=dict)
    generation: int = 0  # what servers report once they serve this corte
    origins: dict[str, str] = field(default_factory=dict)  # name → en línea | fuera de rotación
    switch_window: tuple[float, float] | None = None  # wall clock, first switch start → last end


def origins_note(report: SwitchReport) -> str:
    out = f"; fuera de rotación: {', '.join(report.out)}" if report.out else ""
    window = f" en {report.window_ms:.0f} ms" if report.window_ms is not None else ""
    switched = sum(r.ok for r in report.results)
    return f"; {switched} orígenes cambiados{window}{out}"


class Timer:
    """Seconds per stage, in order (the ledger's ``timings`` event and the latency bench)."""

    def __init__(self) -> None:
        self.start = self.last = time.perf_counter()
        self.laps: dict[str, float] = {}

    def mark(self, name: str) -> None:
        now = time.perf_counter()
        self.laps[name] = round(now - self.last, 6)
        self.last = now
