"""What total request rate is normal right now, knowing the shape of election night.

Visits jump when the PREP opens (20:00 local) and within a couple of minutes of every corte
(people reload, outlets push notifications). Those surges are expected, not attacks: while one
is under way the expected rate is the typical rate times ``SURGE_FACTOR``. The typical rate is the
median of the per-second totals over the last ``HISTORY`` seconds (so a flood must last half of
it before it moves the baseline), leaving out seconds spent in attack mode; with less than
``MIN_HISTORY`` seconds seen it is 0, and only ``attack_rate`` applies.
"""

from __future__ import annotations

from collections import deque
from datetime import datetime
from zoneinfo import ZoneInfo

HISTORY = 900  # seconds of per-second totals kept
SURGE_FACTOR = 3.0
AFTER_ACTIVATION = 120.0  # seconds a corte's surge lasts
EVENING = (19 * 60 + 58, 20 * 60 + 20)  # local minutes of the day: the PREP opens at 20:00
PERCENTILE = 0.5
MIN_HISTORY = 60


class Baseline:
    def __init__(self, zone: ZoneInfo) -> None:
        self.zone = zone
        self._seconds: deque[int] = deque(maxlen=HISTORY)
        self._activation = 0.0
        self._typical = 0.0
        self._dirty = False

    def record(self, total: int, *, attack: bool) -> None:
        """One finished second's total request count."""
        if attack:
            return
        self._seconds.append(total)
        self._dirty = True

    def activation(self, epoch: float) -> None:
        """A corte went live at ``epoch`` (from the ledger)."""
        self._activation = max(self._activation, epoch)

    def typical(self) -> float:
        if self._dirty:
            values = sorted(self._seconds)
            self._typical = (float(values[int(PERCENTILE * (len(values) - 1))])
                             if len(values) >= MIN_HISTORY else 0.0)
            self._dirty = False
        return self._typical

    def surging(self, now: float) -> str | None:
        """Why a surge is expected now ("20:00", "corte"), or None."""
        if 0 <= now - self._activation <= AFTER_ACTIVATION:
            return "corte"
        local = datetime.fromtimestamp(now, self.zone)
        minute = local.hour * 60 + local.minute
        if EVENING[0] <= minute < EVENING[1]:
            return "20:00"
        return None

    def expected(self, now: float) -> float:
        typical = self.typical()
        return typical * SURGE_FACTOR if self.surging(now) else typical
