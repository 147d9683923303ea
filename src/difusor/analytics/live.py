"""``difusor run``'s analytics part: the live logs into the database every few seconds.

Every ``[analytics] interval`` seconds (≤ 10, the lag the issue allows) one round opens the
database, ingests what is new in the embedded server's access log (``[analytics] access_log``)
and in every ``[[analytics.sources]]``, forgets raw IPs and salts past their time, and closes
the database again so ``difusor analytics summary`` / ``ingest`` from another process can get in.

Rotation: a followed path whose first line changed was rotated. Its previous file is looked for
among the path's siblings (``NAME.1``, ``NAME.1.gz``, ``NAME-20241208``…) by fingerprint and read
to its end before — and for a while after — the new file, since a writer may still append to
the renamed file until it reopens its log. On start, siblings that an earlier run had begun
(known fingerprints, bytes left) are finished the same way, so no line is lost across restarts.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from difusor.analytics.ingestor import Ingestor
from difusor.analytics.logfile import HEAD, fingerprint, read_head
from difusor.analytics.lookups import Lookups
from difusor.config import Config
from difusor.errors import BusyError, DifusorError
from difusor.paths import StateLayout

RETIRED_SECONDS = 120.0  # how long a rotated file is still read (its writer may lag)
TIDY_SECONDS = 60.0  # an idle round still forgets expired IPs and salts this often


@dataclass
class Followed:
    path: Path
    fmt: str
    name: str
    fingerprint: str | None = None
    retired: dict[str, float] = field(default_factory=dict)  # fingerprint → read until (monotonic)
    started: bool = False


class LiveIngest:
    def __init__(self, cfg: Config, log: Callable[[str], None] = print) -> None:
        self.cfg = cfg
        self.log = log
        a = cfg.analytics
        self.followed: list[Followed] = []
        if a.access_log:
            self.followed.append(Followed(StateLayout(cfg.state_dir).access_log, "difusor",
                                          "difusor"))
        for src in a.sources:
            path = cfg.path(src.path)
            self.followed.append(Followed(path, src.format, src.name or path.name))
        self._lookups: Lookups | None = None  # one for all rounds (the agents' warm-up)
        self._complained: set[str] = set()
        self._last: tuple = ()
        self._tidied = -TIDY_SECONDS

    def run(self, stop: threading.Event) -> None:
        interval = self.cfg.analytics.interval
        try:
            while not stop.is_set():
                started = time.monotonic()
                self.round(stop)
                stop.wait(max(0.0, interval - (time.monotonic() - started)))
        finally:
            self.close()

    def close(self) -> None:
        """Lets the lookups go (``run`` does it when it stops)."""
        if self._lookups is not None:
            self._lookups.close()
            self._lookups = None

    def __enter__(self) -> LiveIngest:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def round(self, stop: threading.Event | None = None) -> int:
        """One pass over every followed log; returns the rows stored. Skipped (the database
        left alone for other readers) while no log changed, except a tidy-up every minute."""
        signature = self._signature()
        if signature == self._last and time.monotonic() - self._tidied < TIDY_SECONDS:
            return 0
        if self._lookups is None:
            self._lookups = Lookups.for_config(self.cfg)
        try:
            ingestor = Ingestor(self.cfg, wait=min(self.cfg.analytics.interval, 5.0),
                                lookups=self._lookups)
        except BusyError:
            self._once("ocupada", "analítica: la base está ocupada por otro proceso; se reintenta "
                       "en la siguiente vuelta")
            return 0
        self._complained.discard("ocupada")
        rows = 0
        should_stop = stop.is_set if stop else None
        try:
            for f in self.followed:
                if stop is not None and stop.is_set():
                    break
                try:
                    rows += self._follow(ingestor, f, should_stop)
                    self._complained.discard(str(f.path))
                except DifusorError as exc:
                    self._once(str(f.path), f"analítica: {exc.message}")
        finally:
            ingestor.close()
        self._last, self._tidied = signature, time.monotonic()
        return rows

    def _signature(self) -> tuple:
        """What the followed logs look like now (inode, size, mtime), rotations included."""
        parts: list[object] = []
        for f in self.followed:
            for path in (f.path, *(_siblings(f.path) if f.retired else ())):
                try:
                    st = path.stat()
                    parts.append((str(path), st.st_ino, st.st_size, st.st_mtime_ns))
                except OSError:
                    parts.append((str(path), None))
            parts.append(tuple(sorted(f.retired)))
        return tuple(parts)

    def _follow(self, ing: Ingestor, f: Followed, should_stop: Callable[[], bool] | None) -> int:
        rows = 0
        current = _fingerprint(f.path)
        if not f.started:
            f.started = True
            for fp in self._unfinished(ing, f, current):
                f.retired[fp] = time.monotonic() + RETIRED_SECONDS
        elif f.fingerprint and current != f.fingerprint:
            # Renamed away (and maybe already replaced by an empty file): finish it.
            f.retired[f.fingerprint] = time.monotonic() + RETIRED_SECONDS
            self.log(f"analítica: {f.path.name} rotó; se termina de leer el anterior")
        f.fingerprint = current
        # The rotated file first: its lines are older than the new file's.
        for fp, until in list(f.retired.items()):
            old = _find(f.path, fp)
            if old is not None:
                done = time.monotonic() > until
                r = ing.ingest_file(old, f.fmt, f.name, final=done or old.suffix == ".gz",
                                    should_stop=should_stop)
                rows += r.rows
                if done:
                    del f.retired[fp]
            elif time.monotonic() > until:
                del f.retired[fp]
        if current and f.path.exists():
            rows += ing.ingest_file(f.path, f.fmt, f.name, should_stop=should_stop).rows
        return rows

    def _unfinished(self, ing: Ingestor, f: Followed, current: str | None) -> list[str]:
        """Fingerprints of rotated siblings an earlier run began and did not finish."""
        found = []
        for sibling in _siblings(f.path):
            fp = _fingerprint(sibling)
            if not fp or fp == current:
                continue
            row = ing.con.execute('SELECT "offset" FROM files WHERE fingerprint = ?',
                                  [fp]).fetchone()
            if row is not None:
                found.append(fp)
        return found

    def _once(self, key: str, message: str) -> None:
        if key not in self._complained:
            self._complained.add(key)
            self.log(message)


def _fingerprint(path: Path) -> str | None:
    try:
        return fingerprint(read_head(path, HEAD))
    except OSError:
        return None


def _siblings(path: Path) -> list[Path]:
    """Rotations of ``path`` in its folder: NAME.1, NAME.2.gz, NAME-20241208(.gz)…"""
    try:
        names = [p for p in path.parent.iterdir()
                 if p.name != path.name and p.name.startswith(path.name) and p.is_file()]
    except OSError:
        return []
    return sorted(names, key=lambda p: p.name)


def _find(path: Path, fp: str) -> Path | None:
    for sibling in _siblings(path):
        if _fingerprint(sibling) == fp:
            return sibling
    return None
