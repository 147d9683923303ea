"""What each probe says about each kind, and the streaks of failures that open an incident.

A gap longer than ``GAP_INTERVALS`` probe intervals (the monitor was not running) breaks a
streak: it is unknown time, not failures. A probe that got no answer says nothing about stale
bytes or headers, so it neither breaks nor extends those streaks.
"""

from __future__ import annotations

from dataclasses import dataclass

from difusor.monitor.incidents.clock import seconds
from difusor.monitor.probe import ProbeResult

PROBE_KINDS = ("outage", "integrity", "stale", "header", "tls", "degraded")
GAP_INTERVALS = 2.5


@dataclass
class Streak:
    fails: int = 0
    first_at: str | None = None
    last_at: str | None = None

    def step(self, failed: bool, at: str, interval: float) -> None:
        if self.last_at and seconds(self.last_at, at) > GAP_INTERVALS * interval:
            self.fails, self.first_at = 0, None  # unknown time in between: a new streak
        self.last_at = at
        if failed:
            self.fails += 1
            self.first_at = self.first_at or at
        else:
            self.fails, self.first_at = 0, None


def verdicts(result: ProbeResult) -> dict[str, bool]:
    """kind → failed (True) / passed (False); kinds the probe could not judge are absent."""
    found = {f["failure"] for f in result.detail.get("findings", ())}
    if result.failure in PROBE_KINDS:
        found.add(result.failure)
    found &= set(PROBE_KINDS)
    answered = result.status is not None and "outage" not in found
    out: dict[str, bool] = {}
    for kind in PROBE_KINDS:
        if kind in found:
            out[kind] = True
        elif answered or kind == "outage":
            out[kind] = False
    return out


def finding(result: ProbeResult, kind: str) -> str:
    """The probe's message about ``kind``."""
    for item in result.detail.get("findings", ()):
        if item["failure"] == kind:
            return str(item["message"])
    return result.message
