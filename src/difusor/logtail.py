"""Follow a growing log file across rotations: each read returns only whole new lines.

The shield reads the live access log with it (the analytics keep offsets by content instead, in
``analytics/logfile.py``, because they must resume across restarts). A rotation (the file
renamed away and a new one created at the path, as logrotate does) is noticed by the inode: the
new file is followed at once, and the renamed one is still read for ``RETIRED_SECONDS`` — a web
worker keeps appending to it until its next look at the path (½ s), and those lines are part of
the traffic too. A truncation (copytruncate) starts over.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

CHUNK = 1 << 20
RETIRED_SECONDS = 5.0  # well past a worker's reopen tick (serve/accesslog.py)


class _Handle:
    """One open file and how far it has been read."""

    def __init__(self, fd: int, ino: int, offset: int) -> None:
        self.fd, self.ino, self.offset, self.partial = fd, ino, offset, b""
        self.full = False  # the last drain stopped at its limit, not at the end of the file

    def drain(self, limit: int) -> bytes:
        parts = [self.partial]
        total = 0
        self.full = False
        while total < limit:
            chunk = os.pread(self.fd, CHUNK, self.offset)
            if not chunk:
                break
            self.offset += len(chunk)
            parts.append(chunk)
            total += len(chunk)
        else:
            self.full = True
        data = b"".join(parts)
        cut = data.rfind(b"\n") + 1
        self.partial = data[cut:]
        return data[:cut]

    def finish(self, limit: int) -> bytes:
        """The rest, the last unterminated line included; then closed."""
        out = self.drain(limit) + self.partial
        self.partial = b""
        os.close(self.fd)
        return out


class Follower:
    def __init__(self, path: Path, *, from_end: bool = False) -> None:
        self.path = path
        self._live: _Handle | None = None
        self._retired: list[tuple[float, _Handle]] = []  # (read until, handle)
        self._open(seek_end=from_end)

    def _open(self, *, seek_end: bool = False) -> None:
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except FileNotFoundError:
            return
        st = os.fstat(fd)
        self._live = _Handle(fd, st.st_ino, st.st_size if seek_end else 0)

    @property
    def behind(self) -> bool:
        """The last ``read`` stopped at its limit: there is more to read now."""
        return self._live is not None and self._live.full

    def read(self, limit: int = 64 * CHUNK) -> bytes:
        """Whole lines appended since the last call (at most about ``limit`` bytes, read a
        ``CHUNK`` at a time)."""
        out = self._read_retired(limit)
        if self._live is None:
            self._open()
            if self._live is None:
                return out
        live = self._live
        out += live.drain(limit)
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return out
        if st.st_ino != live.ino:  # rotated: follow the new file, keep an eye on the old one
            out += live.drain(limit)
            self._retired.append((time.monotonic() + RETIRED_SECONDS, live))
            self._live = None
            self._open()
            if self._live is not None:
                out += self._live.drain(limit)
        elif st.st_size < live.offset:  # truncated in place
            live.offset, live.partial = 0, b""
            out += live.drain(limit)
        return out

    def _read_retired(self, limit: int) -> bytes:
        if not self._retired:
            return b""
        now = time.monotonic()
        out, kept = b"", []
        for until, handle in self._retired:
            if now >= until:
                out += handle.finish(limit)
            else:
                out += handle.drain(limit)
                kept.append((until, handle))
        self._retired = kept
        return out

    def close(self) -> None:
        for _until, handle in self._retired:
            os.close(handle.fd)
        self._retired = []
        if self._live is not None:
            os.close(self._live.fd)
            self._live = None
