"""The access log: one JSON object per request, cheap on the request path.

A request only appends a tuple of what it saw; lines are formatted a batch at a time (every
256 requests, and on the server's half-second tick). Most requests repeat what others asked (the
same path, status, size and user agent), so the escaped middle of a line is cached by those
fields and only the time, address and duration are formatted per line. A batch of whole lines goes out
in one ``write`` on an ``O_APPEND`` descriptor, so several workers can share the file without
interleaving. A rotated file (renamed away by logrotate) is noticed and reopened.

Fields: time (UTC, ms), ip, method, path, query, status, bytes, referer, user_agent,
duration_ms, corte.
"""

from __future__ import annotations

import os
import time
from json.encoder import encode_basestring_ascii as _q  # type: ignore[attr-defined]
from pathlib import Path

FLUSH_ROWS = 256
_CACHE = 8192
_LINE = '{"time":"%s.%03dZ","ip":"%s",%s,"duration_ms":%.3f}\n'


class AccessLog:
    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = self._open()
        self.rows: list[tuple] = []  # appended to by the server's request handler
        self._middles: dict[tuple, str] = {}
        self._second = -1
        self._stamp = ""

    def _open(self) -> int:
        return os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)

    def record(
        self,
        client: str,
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
        """One request; ``client`` is ``ip:port`` as the server reports it."""
        self.rows.append((time.time(), client, duration, method, path, query, status, nbytes,
                          referer, user_agent, corte))
        if len(self.rows) >= FLUSH_ROWS:
            self.flush()

    def format(self, rows: list[tuple]) -> str:
        middles = self._middles
        out = []
        add = out.append
        second, stamp = self._second, self._stamp
        for row in rows:
            now = row[0]
            if int(now) != second:
                second = int(now)
                stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
            key = row[3:]
            middle = middles.get(key)
            if middle is None:
                if len(middles) >= _CACHE:
                    middles.clear()
                middle = middles[key] = _middle(*key)
            client = row[1]
            cut = client.rfind(":")
            # The address comes from the server (digits, dots, colons): nothing to escape.
            add(_LINE % (stamp, (now - second) * 1000, client[:cut].strip("[]") if cut > 0 else client,
                         middle, row[2] * 1000))
        self._second, self._stamp = second, stamp
        return "".join(out)

    def flush(self) -> None:
        if not self.rows:
            return
        rows, self.rows = self.rows, []
        view = memoryview(self.format(rows).encode())
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


def _middle(method: str, path: str, query: str, status: int, nbytes: int, referer: str | None,
            user_agent: str | None, corte: str) -> str:
    return (
        f'"method":{_q(method)},"path":{_q(path)},"query":{_q(query)},"status":{status},'
        f'"bytes":{nbytes},"referer":{_q(referer) if referer is not None else "null"},'
        f'"user_agent":{_q(user_agent) if user_agent is not None else "null"},"corte":{_q(corte)}'
    )
