"""The console's heartbeat: read the logs, rebuild the snapshot, wake every open page.

One task for the whole process, however many pages are open: every ``TICK`` it reads the new log
lines and rebuilds the document in a worker thread (SQLite and file reads block), and when the
document changed it is encoded once and handed to every subscriber. The last hour's series goes
out every ``SERIES_EVERY`` seconds only: it is most of the bytes and a chart needs no more.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

import orjson
from anyio import to_thread

from difusor.console.snapshot import Snapshot
from difusor.console.traffic import Traffic

TICK = 0.25  # a new corte or a ban reaches the page well within a second
SERIES_EVERY = 5.0
log = logging.getLogger("difusor.console")


class Live:
    def __init__(self, snapshot: Snapshot, traffic: Traffic) -> None:
        self.snapshot, self.traffic = snapshot, traffic
        self.state: bytes = b""
        self.series: bytes = b""
        self.version = 0
        self._changed = asyncio.Condition()
        self._task: asyncio.Task[None] | None = None
        self._series_at = 0.0
        self.failures = 0

    async def start(self) -> None:
        await self.refresh()
        self._task = asyncio.create_task(self._loop())

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        async with self._changed:
            self.version = -1  # subscribers end their streams
            self._changed.notify_all()
        self.traffic.close()

    async def refresh(self, *, acted: bool = False) -> None:
        """Rebuild now; ``acted``: after an action, written through this process's own ledger
        connection (which SQLite's data_version does not count), so its result shows at once."""
        if acted:
            self.snapshot.invalidate()
        state, series = await to_thread.run_sync(self._build)
        if state == self.state and series is None:
            return
        async with self._changed:
            self.state = state
            if series is not None:
                self.series = series
            self.version += 1
            self._changed.notify_all()

    def _build(self) -> tuple[bytes, bytes | None]:
        self.traffic.step()
        due = time.monotonic() - self._series_at >= SERIES_EVERY
        if due:
            self._series_at = time.monotonic()
        summary = self.traffic.summary(series=due)
        series: dict[str, Any] | None = summary.pop("serie")
        doc = self.snapshot.build(summary)
        return orjson.dumps(doc), orjson.dumps(series) if series is not None else None

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(TICK)
            try:
                await self.refresh()
                self.failures = 0
            except Exception as exc:  # a bad moment (a ledger locked, a log gone) must not end the page
                self.failures += 1
                if self.failures in (1, 100):
                    log.error(f"consola: no pude actualizar el estado: {exc!r}")

    async def wait(self, seen: int, timeout: float) -> int:
        """The next version after ``seen`` (or ``seen`` again after ``timeout``)."""
        async with self._changed:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait_for(lambda: self.version != seen),
                                       timeout)
            return self.version
