"""Which release a worker serves, kept in step with ``current`` and ``generation``.

Each worker maps the 8-byte generation counter. A request compares it with the value its table
was built from (a memory read, no system call) and rebuilds first when it moved; a background
thread does the same every 20 ms, so the switch usually happens before any request notices.
Because activation renames ``current`` *before* bumping the counter, once any worker has served
the new corte every worker sees the bump, and a client never gets an older file afterwards.
"""

from __future__ import annotations

import logging
import mmap
import os
import threading
from collections.abc import Callable

from difusor.publish.activate import ensure_generation, live_release
from difusor.serve.table import Table, TableBuilder
from difusor.store.layout import StoreLayout
from difusor.store.manifest import ManifestStore

log = logging.getLogger("difusor.serve")
POLL_SECONDS = 0.02
FALLBACK_SECONDS = 1.0


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
        self.table = Table.empty()
        self._seen = b""
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._suspect: str | None = None
        self.refresh()

    def stale(self) -> bool:
        return self._map[:8] != self._seen

    def refresh(self) -> None:
        with self._lock:
            gen = self._map[:8]  # read before current: a later bump makes us look again
            if gen == self._seen:
                return
            try:
                self.table = self._load(live_release(self.layout))
            except (OSError, ValueError, KeyError) as exc:
                log.error("no pude cargar el corte en línea: %s; sigo sirviendo el anterior", exc)
                return
            self._seen = gen

    def _load(self, release_id: str | None) -> Table:
        current = self.table
        if release_id is None:
            return Table.empty()
        if release_id == current.release_id:  # the same corte, its variants now made
            return self.builder.settle(current)
        delta = self.manifests.load_delta(release_id) if current.release_id else None
        if delta is not None and delta[2] == current.release_id:
            return self.builder.apply(delta[0], delta[1], current)
        return self.builder.build(self.manifests.load(release_id), current)

    def start(self, tick: Callable[[], None] | None = None) -> None:
        """Watch in the background; ``tick`` is called about twice a second (log flushing)."""
        self._thread = threading.Thread(
            target=self._watch, args=(tick,), name="difusor-live", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=2)

    def _watch(self, tick: Callable[[], None] | None) -> None:
        polls_per_fallback = int(FALLBACK_SECONDS / POLL_SECONDS)
        n = 0
        while not self._stop.wait(POLL_SECONDS):
            n += 1
            if self.stale():
                self.refresh()
            if tick and n % 25 == 0:
                tick()
            if n % polls_per_fallback == 0:
                self._fallback()

    def _fallback(self) -> None:
        """``current`` moved but the counter never did (a publisher died in between): after
        seeing it twice in a row, a second apart, load it anyway."""
        live = live_release(self.layout)
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
