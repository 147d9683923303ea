"""The access log: one JSON object per request, cheap to write.

Lines are formatted with the C string escaper and buffered; a batch of whole lines goes out in
one ``write`` on an ``O_APPEND`` descriptor, so several workers can share the file without
interleaving. A rotated file (renamed away by logrotate) is noticed and reopened.

Fields: time (UTC, ms), ip, method, path, query, status, bytes, referer, user_agent,
duration_ms, corte.
"""

from __future__ import annotations

import os
import time
from json.encoder import encode_basestring_ascii as _q  # type: ignore[attr-defined]
from pathlib import Path

FLUSH_LINES = 256


class AccessLog:
    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = self._open()
        self._buf: list[str] = []
        self._second = -1
        self._stamp = ""

    def _open(self) -> int:
        return os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)

    def write(
        self,
        ip: str,
        method: str,
        path: str,
        query: str,
        status: int,
        nbytes: int,
        referer: str | None,
        user_agent: str | None,
        duration: float,
        corte: str,
    ) -> None:
        now = time.time()
        second = int(now)
        if second != self._second:
            self._second = second
            self._stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        self._buf.append(
            f'{{"time":"{self._stamp}.{int((now - second) * 1000):03d}Z","ip":{_q(ip)},'
            f'"method":{_q(method)},"path":{_q(path)},"query":{_q(query)},"status":{status},'
            f'"bytes":{nbytes},"referer":{_q(referer) if referer is not None else "null"},'
            f'"user_agent":{_q(user_agent) if user_agent is not None else "null"},'
            f'"duration_ms":{duration * 1000:.3f},"corte":{_q(corte)}}}\n'
        )
        if len(self._buf) >= FLUSH_LINES:
            self.flush()

    def flush(self) -> None:
        if self._buf:
            data = "".join(self._buf).encode()
            self._buf.clear()
            view = memoryview(data)
            while view:
                view = view[os.write(self._fd, view):]

    def tick(self) -> None:
        """Flush, and reopen if the file was rotated away."""
        self.flush()
        try:
            rotated = os.stat(self.path).st_ino != os.fstat(self._fd).st_ino
        except FileNotFoundError:
            rotated = True
        if rotated:
            os.close(self._fd)
            self._fd = self._open()

    def close(self) -> None:
        self.flush()
        os.close(self._fd)
