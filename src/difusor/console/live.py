"""The console's heartbeat: rebuild the snapshot, wake every open page.

One task for the whole process, however many pages are open: every ``TICK`` it rebuilds the
document in a worker thread (SQLite and file reads block), and when the document changed it is
encoded once and handed to every subscriber. A new corte, a ban or an incident therefore reaches
the pages within a tick. Traffic comes from the reader's thread (reader.py), a summary a second,
and the document's clock moves by whole seconds: a page is woken about once a second, not four
times. The last hour's series goes out when the reader makes one (every few seconds).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import orjson
from anyio import to_thread

from difusor.console.reader import TrafficReader
from difusor.console.snapshot import Snapshot

TICK = 0.25  # a new corte or a ban reaches the page well within a second
log = logging.getLogger("difusor.console")


class Live:
    def __init__(self, snapshot: Snapshot, reader: TrafficReader) -> None:
        self.snapshot, self.reader = snapshot, reader
        self.state: bytes = b""
        self.series: bytes = b""
        self.version = 0
        self._changed = asyncio.Condition()
        self._task: asyncio.Task[None] | None = None
        self.failures = 0

    async def start(self) -> None:
        await to_thread.run_sync(self.reader.start)
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
        await to_thread.run_sync(self.reader.stop)

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
        traffic, series = self.reader.latest()
        doc = self.snapshot.build(traffic)
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
