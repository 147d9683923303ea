"""The publish lock: one writer of the live corte at a time, across processes.

An advisory ``flock`` on ``state/publish.lock``: the kernel drops it when the holder dies, so a
killed run never leaves the site locked. Publishing, rollback, collection and the take-down
hold it; only publishing and rollback also tidy up after an interrupted run (``recovery``).
"""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from difusor.errors import BusyError

LOCK_TIMEOUT = 120.0  # a national corte's publication takes seconds; two minutes is a stuck one


@contextmanager
def publish_lock(path: Path, timeout: float = LOCK_TIMEOUT) -> Iterator[None]:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise BusyError(
                        f"otra publicación sigue en curso ({path}); reintenta en unos segundos"
                    ) from None
                time.sleep(0.05)
        yield
    finally:
        os.close(fd)
