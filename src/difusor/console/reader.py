"""The traffic's reader: the console's one heavy job (reading every log line) in a thread of its
own, at the lowest CPU priority there is.

Reading the access logs costs ≈ 2 µs a line, the web server ≈ 60 µs a request: little CPU, but
in bursts, and on a busy machine every burst that keeps a core from the web server's threads
for a few milliseconds costs it requests (measured: ≈ 7 % fewer requests/s at 20,000 req/s with
this work at normal priority, ≈ 1 % with it here). Under ``SCHED_IDLE`` any other thread that
wakes takes the core at once. When the machine has no core to spare the reader falls behind;
nothing queues in memory meanwhile (the log is the queue), each step reads at most
``traffic.STEP_BYTES`` of each log, and the summary says how old its figures are (``al``),
which the page shows: the numbers wait, serving does not.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from typing import Any

from difusor.console.traffic import STEP_BYTES, Traffic

EVERY = 1.0  # seconds between two reads of the logs
SERIES_EVERY = 5.0  # the last hour's series: most of the bytes, and a chart needs no more
log = logging.getLogger("difusor.console")


def lowest_priority() -> None:
    """This thread (and those it starts) runs only on a core nothing else wants."""
    with contextlib.suppress(OSError, AttributeError):
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))


class TrafficReader:
    """Reads the logs every ``EVERY`` seconds into ``Traffic``; ``latest()`` hands out the last
    summary (and a new hour's series when there is one). Only this thread touches ``traffic``."""

    def __init__(self, traffic: Traffic, step_bytes: int = STEP_BYTES) -> None:
        self.traffic, self.step_bytes = traffic, step_bytes
        self._lock = threading.Lock()
        self._summary: dict[str, Any] = {}
        self._series: dict[str, Any] | None = None
        self._series_at = float("-inf")
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="difusor-consola-trafico",
                                        daemon=True)
        self.failures = 0

    def start(self) -> None:
        self.step()  # the page's first document has figures
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5)
        if not self._thread.is_alive():  # (still reading, starved: its files close at exit)
            self.traffic.close()

    def latest(self) -> tuple[dict[str, Any], dict[str, Any] | None]:
        """(the last summary, the hour's series if a new one was made since the last call)."""
        with self._lock:
            series, self._series = self._series, None
            return self._summary, series

    def step(self) -> bool:
        """One read and summary; True when the logs had more than one step's worth."""
        more = self.traffic.step(limit=self.step_bytes)
        now = time.time()
        due = time.monotonic() - self._series_at >= SERIES_EVERY
        summary = self.traffic.summary(now, series=due)
        series = summary.pop("serie")
        summary["al"] = now
        with self._lock:
            self._summary = summary
            if series is not None:
                self._series, self._series_at = series, time.monotonic()
        return more

    def _run(self) -> None:
        lowest_priority()
        wait = EVERY
        while not self._stop.wait(wait):
            started = time.monotonic()
            try:
                behind = self.step()
                self.failures = 0
            except Exception as exc:  # a log gone or unreadable for a moment: keep reading
                behind = False
                self.failures += 1
                if self.failures in (1, 100):
                    log.error(f"consola: no pude leer los registros de acceso: {exc!r}")
            wait = 0.0 if behind else max(0.0, EVERY - (time.monotonic() - started))
