"""Which release a worker serves, kept in step with ``current`` and ``generation``.

Each worker maps the 8-byte generation counter. A request compares it with the value its table
was built from (a memory read, no system call) and rebuilds first when it moved; a background
thread does the same every 5 ms (a memory read), so the switch usually happens before any
request notices.
Because activation renames ``current`` *before* bumping the counter, once any worker has served
the new corte every worker sees the bump, and a client never gets an older file afterwards.
"""

from __future__ import annotations

import logging
import mmap
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

from difusor.publish.activate import ensure_generation, live_release, report_served
from difusor.serve.table import Table, TableBuilder
from difusor.store.layout import StoreLayout
from difusor.store.manifest import ManifestStore

log = logging.getLogger("difusor.serve")
POLL_SECONDS = 0.005
SETTLE_BATCH = 100
FALLBACK_SECONDS = 1.0
TICK_SECONDS = 0.5
WATCH_SECONDS = 0.15  # how often the shield's decisions file is looked at


class LiveRelease:
    def __init__(self, layout: StoreLayout, builder: TableBuilder) -> None:
        self.layout = layout
        self.builder = builder
        self.manifests = ManifestStore(layout.manifests)
        ensure_generation(layout)
        fd = os.open(layout.generation, os.O_RDONLY)
        try:
            self._map = mmap.mmap(fd, 8, access=mmap.ACCESS_READ)
        finally:
            os.close(fd)
        self.table = self.builder.empty()
        self._seen = b""
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._suspect: str | None = None
        self._report: Path | None = None  # set once serving for real (start)
        self._to_settle: list[str] = []
        self._failed: tuple[str, float] = ("", 0.0)  # the last load error and when it was said
        self.problem: str | None = None  # why this worker is unhealthy (state folder unusable)
        self._said = 0.0
        self.refresh()

    def stale(self) -> bool:
        return self._map[:8] != self._seen

    def refresh(self) -> None:
        with self._lock:
            gen = self._map[:8]  # read before current: a later bump makes us look again
            if gen == self._seen:
                return
            try:
                release = live_release(self.layout)
                if release is not None and release == self.table.release_id:
                    # Finishing made this corte's objects loose and its variants: picked up
                    # a few at a time by the watcher, never in a new corte's way.
                    self._to_settle = [p for p, r in self.table.by_path.items() if not r.settled]
                else:
                    self.table = self._load(release)
            except (OSError, ValueError, KeyError) as exc:
                # Retried every few ms: say it once per failure and again every minute, not
                # hundreds of times a second.
                now = time.monotonic()
                if str(exc) != self._failed[0] or now - self._failed[1] > 60:
                    log.error("no pude cargar el corte en línea: %s; sigo sirviendo el anterior",
                              exc)
                    self._failed = (str(exc), now)
                return
            self._failed = ("", 0.0)
            self._seen = gen
            if self._report is not None:  # tell the publisher this worker has switched
                report_served(self._report, int.from_bytes(gen, "little"))

    def _load(self, release_id: str | None) -> Table:
        current = self.table
        if release_id is None:
            return self.builder.empty()
        delta = self.manifests.load_delta(release_id) if current.release_id else None
        if delta is not None and delta[2] == current.release_id:
            return self.builder.apply(delta[0], delta[1], current)
        return self.builder.build(self.manifests.load(release_id), current)

    def start(self, tick: Callable[[], None] | None = None,
              watch: Callable[[], None] | None = None) -> None:
        """Watch in the background; ``tick`` is called about twice a second (log flushing),
        ``watch`` every ``WATCH_SECONDS`` (the shield's decisions)."""
        self._report = self.layout.served / str(os.getpid())
        report_served(self._report, int.from_bytes(self._seen, "little"))
        self._thread = threading.Thread(
            target=self._watch, args=(tick, watch), name="difusor-live", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=2)
        if self._report is not None:
            self._report.unlink(missing_ok=True)

    def _watch(self, tick: Callable[[], None] | None, watch: Callable[[], None] | None) -> None:
        polls_per_fallback = int(FALLBACK_SECONDS / POLL_SECONDS)
        polls_per_tick = int(TICK_SECONDS / POLL_SECONDS)
        polls_per_watch = int(WATCH_SECONDS / POLL_SECONDS)
        n = 0
        while not self._stop.wait(POLL_SECONDS):
            n += 1
            try:  # nothing may end this thread: it is how new cortes reach this worker
                if self.stale():
                    self.refresh()
                elif self._to_settle:
                    self._settle_some()
                if tick and n % polls_per_tick == 0:
                    tick()
                if watch and n % polls_per_watch == 0:
                    try:
                        watch()
                    except Exception as exc:  # the shield must never stop the corte's updates
                        log.error("escudo: no pude leer las decisiones: %s", exc)
                if n % polls_per_fallback == 0:
                    self._fallback()
            except Exception as exc:
                self._trouble(f"{type(exc).__name__}: {exc}")

    def _trouble(self, problem: str) -> None:
        """Something under the state folder is unusable: keep serving what is in memory, report
        unhealthy (``problem``), say it once a minute."""
        now = time.monotonic()
        if problem != self.problem or now - self._said > 60:
            log.error("servidor web: %s; sigo sirviendo desde memoria el corte %s", problem,
                      self.table.release_id or "(ninguno)")
            self._said = now
        self.problem = problem

    def _settle_some(self) -> None:
        with self._lock:
            batch, self._to_settle = self._to_settle[:SETTLE_BATCH], self._to_settle[SETTLE_BATCH:]
            try:
                self.table = self.builder.settle(self.table, batch)
            except (OSError, ValueError, KeyError) as exc:
                log.error("no pude completar las variantes del corte: %s", exc)
                self._to_settle = []

    def _fallback(self) -> None:
        """``current`` moved but the counter never did (a publisher died in between): after
        seeing it twice in a row, a second apart, load it anyway. Also the health check: the
        store must still be there (deleted, it must not take the site down with it)."""
        if not self.layout.generation.is_file():
            self._trouble(f"el almacén {self.layout.root} ya no existe o no se puede leer")
            return
        live = live_release(self.layout)
        self.problem = None
        if live is None and self.table.release_id is not None:
            return  # a take-down bumps the counter: a lone missing `current` is no reason to go dark
        if live == self.table.release_id:
            self._suspect = None
            return
        if self._suspect == live:
            with self._lock:
                self._seen = b""
            self.refresh()
            self._suspect = None
        else:
            self._suspect = live
