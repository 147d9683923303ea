"""Follow a growing log file across rotations: each read returns only whole new lines.

The shield reads the live access log with it (the analytics keep offsets by content instead, in
``analytics/logfile.py``, because they must resume across restarts). A rotation (the file
renamed away and a new one created at the path, as logrotate does) is noticed by the inode: the
old file is read to its end first, so no line is lost; a truncation (copytruncate) starts over.
"""

from __future__ import annotations

import os
from pathlib import Path

CHUNK = 1 << 20


class Follower:
    def __init__(self, path: Path, *, from_end: bool = False) -> None:
        self.path = path
        self._fd: int | None = None
        self._ino = 0
        self._offset = 0
        self._partial = b""
        self._open(seek_end=from_end)

    def _open(self, *, seek_end: bool = False) -> None:
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except FileNotFoundError:
            return
        st = os.fstat(fd)
        self._fd, self._ino = fd, st.st_ino
        self._offset = st.st_size if seek_end else 0
        self._partial = b""

    def read(self, limit: int = 64 * CHUNK) -> bytes:
        """Whole lines appended since the last call (at most about ``limit`` bytes)."""
        if self._fd is None:
            self._open()
            if self._fd is None:
                return b""
        out = self._drain(limit)
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return out
        if st.st_ino != self._ino:  # rotated: the old file is finished, follow the new one
            out += self._drain(limit) + self._partial
            self._partial = b""
            os.close(self._fd)  # type: ignore[arg-type]
            self._fd = None
            self._open()
            if self._fd is not None:
                out += self._drain(limit)
        elif st.st_size < self._offset:  # truncated in place
            self._offset, self._partial = 0, b""
            out += self._drain(limit)
        return out

    def _drain(self, limit: int) -> bytes:
        assert self._fd is not None
        parts = [self._partial]
        total = 0
        while total < limit:
            chunk = os.pread(self._fd, CHUNK, self._offset)
            if not chunk:
                break
            self._offset += len(chunk)
            parts.append(chunk)
            total += len(chunk)
        data = b"".join(parts)
        cut = data.rfind(b"\n") + 1
        self._partial = data[cut:]
        return data[:cut]

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
