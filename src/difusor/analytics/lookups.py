"""The per-distinct lookups of an ingest — addresses → place, agents → browser/OS/device —
answered by a helper process.

Both are pure Python (maxminddb 1.5.4 with geo.py's lean decoder; ua-parser, which also holds
the interpreter lock ≈ 0.2 s while it builds its matcher), a few tens of thousands per million
lines. In a thread of the ingest they share the lock with the thread copying the log; in their
own process (``python -m difusor.analytics.lookups``, started by ``start`` when a log has
enough new bytes to be worth it — or by ``prestart``, before the command's imports) they warm up
while the ingest gets ready, and run beside DuckDB (measured on 2 cores: ≈ 0.2 s less per
million lines; prestarted, ≈ 0.1 s less again). Small reads — the live ingest's every few
seconds — are answered in this process, with caches that last. If the helper cannot start, or
dies, the same function answers here: slower, the same answers.

Frames on the helper's stdin/stdout: an 8-byte length, then ``marshal`` data. First the mmdb's
path (the helper warms up before it is known). Then asked: (addresses, agents) as lists of
(value, DuckDB's hash of it). Answered: ("ok", geo TSV, agents TSV) or ("error", a Spanish
message, e.g. an mmdb that cannot be opened).
"""

from __future__ import annotations

import contextlib
import marshal
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from difusor.analytics import agents
from difusor.analytics.geo import Geo, default_db
from difusor.errors import DifusorError, LogFormatError

if TYPE_CHECKING:
    from difusor.config import Config

Asked = list[tuple[str, int]]


def answer(geo: Geo, ips: Asked, uas: Asked) -> tuple[str, str]:
    """(geo TSV: hash, country, state; agents TSV: hash, browser, os, device, bot), keyed by
    DuckDB's hash of the string: the strings never round-trip, so no escaping can make a row
    miss its join."""
    lookup = geo.lookup
    places = "".join(f"{h}\t{_tsv(c)}\t{_tsv(s)}\n" for ip, h in ips for c, s in (lookup(ip),))
    kinds = "".join("\t".join(_tsv(v) for v in (h, *agents.classify(ua))) + "\n"
                    for ua, h in uas)
    return places, kinds


def _tsv(value: object) -> str:
    if value is None:
        return "\\N"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value).replace("\t", " ").replace("\n", " ").replace("\r", " ")


def geo_db(cfg: Config) -> Path:
    return cfg.path(cfg.analytics.geoip_db) if cfg.analytics.geoip_db else default_db()


# From this many new bytes on, the helper is worth starting: below, its start and warm-up
# (≈ 0.3 s of CPU) would cost more than it saves.
HELPER_BYTES = 32 << 20


class Lookups:
    """Answers ``ask`` in this process, or through the helper process once ``start`` has
    started it. One caller at a time: ``ask`` blocks (the ingest calls it from its worker
    thread)."""

    def __init__(self, db: Path) -> None:
        self.db = db
        self._here: Geo | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._tried = False

    def start(self) -> None:
        """Starts the helper process (once; if it cannot start, answers stay here), or takes
        the one ``prestart`` started, and tells it which mmdb to open."""
        if self._tried:
            return
        self._tried = True
        proc = _take_prestarted() or _spawn()
        if proc is None:
            return
        self._proc = proc
        try:
            _send(proc.stdin, str(self.db))  # type: ignore[arg-type]
        except OSError:  # it died already: answers stay here
            self._end_helper()

    def start_for(self, new_bytes: int) -> None:
        """Starts the helper if reading ``new_bytes`` makes it worth it (if not, a prestarted
        one is ended: it would only warm up for nothing)."""
        if new_bytes >= HELPER_BYTES:
            self.start()
        else:
            _end(_take_prestarted())

    @classmethod
    def for_config(cls, cfg: Config) -> Lookups:
        return cls(geo_db(cfg))

    @property
    def pid(self) -> int | None:
        """The helper process's id; None while answers are given here."""
        return self._proc.pid if self._proc is not None else None

    def ask(self, ips: Asked, uas: Asked) -> tuple[str, str]:
        if self._proc is not None:
            try:
                reply = self._round_trip((ips, uas))
            except (OSError, EOFError, ValueError, TypeError):  # it died: answer here
                self._end_helper()
            else:
                if reply[0] == "error":
                    raise LogFormatError(reply[1])
                return reply[1], reply[2]
        if self._here is None:
            self._here = Geo(self.db)
        return answer(self._here, ips, uas)

    def _round_trip(self, request: object) -> Any:
        proc = self._proc
        assert proc is not None and proc.stdin is not None and proc.stdout is not None
        _send(proc.stdin, request)
        reply = _receive(proc.stdout)
        if reply is None:
            raise EOFError("el proceso de búsquedas terminó")
        return reply

    def _end_helper(self) -> None:
        proc, self._proc = self._proc, None
        _end(proc)

    def close(self) -> None:
        self._end_helper()
        if self._here is not None:
            self._here.close()
            self._here = None


_prestarted: subprocess.Popen[bytes] | None = None


def prestart(argv: list[str]) -> None:
    """Called by the launcher (``difusor/__main__.py``, through ``cli/prelude.py``) before the
    CLI's imports (≈ 0.3 s of typer, rich and pydantic on one core): for ``analytics ingest``
    with enough bytes in the files named, the helper starts now and warms up on the other core
    meanwhile; ``start`` takes it. Only a guess from the arguments: files are whatever names
    exist; a wrong guess costs a helper that ends when it is not taken (``start_for`` with too
    little to read, or this process ending: its stdin closes)."""
    global _prestarted
    if argv[:2] != ["analytics", "ingest"] or _prestarted is not None:
        return
    size = 0
    for name in argv[2:]:
        with contextlib.suppress(OSError, ValueError):
            if not name.startswith("-") and os.path.isfile(name):
                size += os.stat(name).st_size
    if size >= HELPER_BYTES:
        _prestarted = _spawn()


def _take_prestarted() -> subprocess.Popen[bytes] | None:
    global _prestarted
    proc, _prestarted = _prestarted, None
    if proc is not None and proc.poll() is not None:  # it died: start another
        _end(proc)
        return None
    return proc


def _spawn() -> subprocess.Popen[bytes] | None:
    """``python -m difusor.analytics.lookups``, warming up at once; None if it cannot start."""
    if not sys.executable:
        return None
    package_root = str(Path(__file__).resolve().parents[2])
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH", "")) if p)
    # Its own session: a Ctrl-C reaches the ingest, which ends the helper; if the ingest
    # dies, the helper's stdin closes and it ends by itself.
    try:
        return subprocess.Popen([sys.executable, "-m", "difusor.analytics.lookups"],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.DEVNULL, env=env, start_new_session=True)
    except OSError:
        return None


def _end(proc: subprocess.Popen[bytes] | None) -> None:
    if proc is None:
        return
    for stream in (proc.stdin, proc.stdout):
        if stream is not None:
            with contextlib.suppress(OSError):  # a dead helper's pipe
                stream.close()
    proc.kill()  # it holds nothing worth a goodbye (and may still be warming up)
    proc.wait()


def _send(stream: BinaryIO, value: object) -> None:
    data = marshal.dumps(value)
    stream.write(len(data).to_bytes(8, "little"))
    stream.write(data)
    stream.flush()


def _read_exactly(stream: BinaryIO, size: int) -> bytes | None:
    parts, left = [], size
    while left:
        got = stream.read(left)
        if not got:
            return None
        parts.append(got)
        left -= len(got)
    return b"".join(parts)


def _receive(stream: BinaryIO) -> Any:
    head = _read_exactly(stream, 8)
    if head is None:
        return None
    data = _read_exactly(stream, int.from_bytes(head, "little"))
    return None if data is None else marshal.loads(data)


def main() -> int:
    """The helper: warms up at once, then reads the mmdb's path, then answers until its stdin
    closes."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # The frames go to a copy of stdout; anything a library prints goes to stderr instead.
    out = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    agents.classify("Mozilla/5.0")  # (ua-parser builds its matcher: the longest part)
    db = _receive(sys.stdin.buffer)
    if db is None:
        return 0
    geo: Geo | None = None
    error = ""
    try:
        geo = Geo(Path(db))
    except DifusorError as exc:
        error = exc.message
    while (request := _receive(sys.stdin.buffer)) is not None:
        ips, uas = request
        _send(out, ("ok", *answer(geo, ips, uas)) if geo is not None else ("error", error))
    return 0


if __name__ == "__main__":
    sys.exit(main())
