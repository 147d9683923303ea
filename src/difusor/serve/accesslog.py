"""The access log: one JSON object per request, cheap on the request path.

A request only appends a tuple of what it saw; lines are formatted a batch at a time (every
256 requests, and on the server's half-second tick). Most requests repeat what others asked (the
same path, status, size and user agent), so the escaped middle of a line is cached by those
fields and only the time, address and duration are formatted per line. A batch of whole lines goes out
in one ``write`` on an ``O_APPEND`` descriptor, so several workers can share the file without
interleaving. A rotated file (renamed away by logrotate) is noticed and reopened.

The log only ever writes to or closes the descriptor it opened itself: a reopen opens the new
file first and closes the old one after. When the file cannot be (re)opened or written (folder
removed, EACCES, EMFILE, ENOSPC) logging pauses — the descriptor is closed and forgotten, never
reused, since the kernel hands its number to the next client socket — lines are counted as lost,
one Spanish line a minute says so, and every tick tries again (the folder is made anew).

Fields a client controls are capped (``CAPS``): a request cannot write 64 KB into the log.

Past ``max_bytes`` the file is rotated by whichever worker sees it first: under an exclusive
``flock`` of the file (the other workers skip), it is renamed ``access.log.AAAAMMDD-HHMMSS-PID``
(with ``-N`` after it when taken: no rotation ever replaces another) and every worker reopens at its next
tick. The analytics find the rotated file among ``access.log``'s siblings and finish it.

Fields: time (UTC, ms), ip, method, path, query, status, bytes, referer, user_agent,
duration_ms, corte.
"""

from __future__ import annotations

import fcntl
import logging
import os
import time
from json.encoder import encode_basestring_ascii as _q  # type: ignore[attr-defined]
from pathlib import Path

FLUSH_ROWS = 256
_CACHE = 8192
WARN_EVERY = 60.0  # seconds between two "logging paused" lines
# Longest path, query, referer and user agent kept (characters); longer ones end in "…".
CAPS = {"path": 2048, "query": 1024, "referer": 1024, "user_agent": 512}
log = logging.getLogger("difusor.serve")
_LINE = '{"time":"%s.%03dZ","ip":"%s",%s,"duration_ms":%.3f}\n'


class AccessLog:
    def __init__(self, path: Path, max_bytes: int = 0) -> None:
        self.path = path
        self.max_bytes = max_bytes  # 0: never rotated here (logrotate may do it)
        self._fd: int | None = None  # None while paused
        self.lost = 0  # lines that could not be written since the last warning
        self._warned = -WARN_EVERY
        self.rows: list[tuple] = []  # appended to by the server's request handler
        self._middles: dict[tuple, str] = {}
        self._second = -1
        self._stamp = ""
        self._reopen()

    def _reopen(self) -> None:
        """Open the file anew; the old descriptor is closed only once the new one exists."""
        old = self._fd
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)
        except OSError as exc:
            self._pause(exc)
            return
        self._fd = fd
        if old is not None:
            os.close(old)
        if self.lost:
            log.warning("registro de accesos %s: se reanuda (%d líneas perdidas)", self.path, self.lost)
            self.lost = 0

    def _pause(self, exc: OSError) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None  # forgotten before closing: nothing can write to it again
            os.close(fd)
        now = time.monotonic()
        if now - self._warned >= WARN_EVERY:
            self._warned = now
            log.error("registro de accesos %s en pausa: %s (%d líneas perdidas); se reintenta",
                      self.path, exc.strerror or exc, self.lost)

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
        fd = self._fd
        if fd is None:
            self.lost += len(rows)
            return
        view = memoryview(self.format(rows).encode())
        try:
            while view:
                view = view[os.write(fd, view):]
        except OSError as exc:  # ENOSPC, EIO...: the batch is lost, logging pauses
            self.lost += len(rows)
            self._pause(exc)

    def tick(self) -> None:
        """Flush; reopen if the file was rotated away, or retry if logging is paused."""
        self.flush()
        fd = self._fd
        if fd is None:
            self._reopen()
            return
        try:
            st = os.fstat(fd)
            rotated = os.stat(self.path).st_ino != st.st_ino
        except OSError:
            rotated = True
        if rotated:
            self._reopen()
        elif self.max_bytes and st.st_size >= self.max_bytes:
            self._rotate(fd)

    def _rotate(self, fd: int) -> None:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return  # another worker is rotating it
        try:
            if os.stat(self.path).st_ino != os.fstat(fd).st_ino:
                return  # rotated meanwhile: reopened at the next tick
            stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
            name = f"{self.path.name}.{stamp}-{os.getpid()}"
            for n in range(1, 1000):  # link, not rename: an existing rotation is never replaced
                try:
                    os.link(self.path, self.path.with_name(name if n == 1 else f"{name}-{n}"))
                    break
                except FileExistsError:
                    continue
            os.unlink(self.path)
        except OSError as exc:
            log.error("registro de accesos %s: no pude rotarlo: %s", self.path, exc.strerror or exc)
            return
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
        self._reopen()

    def close(self) -> None:
        self.flush()
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)


def _cap(value: str, limit: int) -> str:
    return value if len(value) <= limit else value[:limit] + "…"


def _middle(method: str, path: str, query: str, status: int, nbytes: int, referer: str | None,
            user_agent: str | None, corte: str) -> str:
    # Control characters come out as JSON escapes (\u001b...), never raw, by _q.
    path, query = _cap(path, CAPS["path"]), _cap(query, CAPS["query"])
    referer = _cap(referer, CAPS["referer"]) if referer is not None else None
    user_agent = _cap(user_agent, CAPS["user_agent"]) if user_agent is not None else None
    method = _cap(method, 16)
    return (
        f'"method":{_q(method)},"path":{_q(path)},"query":{_q(query)},"status":{status},'
        f'"bytes":{nbytes},"referer":{_q(referer) if referer is not None else "null"},'
        f'"user_agent":{_q(user_agent) if user_agent is not None else "null"},"corte":{_q(corte)}'
    )
