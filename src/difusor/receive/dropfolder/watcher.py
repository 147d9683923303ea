"""Watching the drop folders: inotify events as they come, and a scan every ``poll_interval``.

With polling (``inotify = false``) a rename is recognised by the file's inode having been seen
under a temporary name at the previous scan, so a temporary file must live at least one
``poll_interval``; faster uploads need a sidecar (or inotify).
"""

from __future__ import annotations

import logging
import os
import queue
import stat
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from difusor.config import Config
from difusor.errors import DifusorError
from difusor.paths import StateLayout
from difusor.receive.dropfolder.claims import CLAIM, clean_inbox
from difusor.receive.dropfolder.settling import Settler

_TICK = 0.2  # the longest ``run`` waits before looking at ``stop`` again

_logger = logging.getLogger("difusor.receive.dropfolder")


@dataclass(frozen=True)
class _Temp:
    name: str
    size: int
    mtime_ns: int


class DropFolderWatcher:
    """Watches ``[dropfolder] dirs`` and delivers complete files into the inbox."""

    def __init__(
        self,
        cfg: Config,
        *,
        on_delivered: Callable[[Path], None] | None = None,
        log: Callable[[str], None] | None = None,
    ) -> None:
        self.cfg = cfg
        self.dirs = [Path(os.path.abspath(cfg.path(d))) for d in cfg.dropfolder.dirs]
        self.inbox = StateLayout(cfg.state_dir).inbox
        self.rules = frozenset(cfg.dropfolder.complete_on)
        self._log = log or _logger.info
        self.settler = Settler(inbox=self.inbox, rules=self.rules,
                               temp_suffixes=tuple(cfg.receive.temp_suffixes),
                               abandoned_after=cfg.receive.abandoned_after,
                               on_delivered=on_delivered, log=self._log)
        self._polling = not cfg.dropfolder.inotify
        self._events: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._scans = 0
        self._temps: dict[Path, dict[tuple[int, int], _Temp]] = {}  # folder → last scan's
        # SFTP's standard rename request makes OpenSSH's sftp-server link the new name and
        # unlink the old one: no IN_MOVED_TO, but CLOSE_WRITE(temp), CREATE(final) with no write
        # through the final name, DELETE(temp). These remember the first two steps.
        self._closed_temps: dict[Path, float] = {}
        self._linked: dict[Path, float] = {}

    # -- the service -------------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        """Watch until ``stop`` is set (checked at least every 0.2 s)."""
        if not self.dirs:
            self._log("carpetas vigiladas: ninguna ([dropfolder] dirs está vacío)")
            return
        missing = [str(d) for d in self.dirs if not d.is_dir()]
        if missing:
            raise DifusorError(f"no existe la carpeta vigilada {', '.join(missing)} "
                               "(revisa [dropfolder] dirs)")
        clean_inbox(self.inbox)
        observer = None if self._polling else self._start_observer()
        how = (f"revisando cada {self.cfg.dropfolder.poll_interval:g} s" if observer is None
               else "con inotify")
        self._log(f"vigilando {', '.join(map(str, self.dirs))} ({how}; completo al: "
                  f"{', '.join(sorted(self.rules))})")
        try:
            self.scan_once()
            interval = self.cfg.dropfolder.poll_interval
            next_scan = time.monotonic() + interval
            while not stop.is_set():
                wait = min(_TICK, max(0.0, next_scan - time.monotonic()))
                try:
                    event = self._events.get(timeout=wait) if wait > 0 else None
                except queue.Empty:
                    event = None
                while event is not None and not stop.is_set():
                    self._guarded(self._on_event, event)
                    try:
                        event = self._events.get_nowait()
                    except queue.Empty:
                        event = None
                if time.monotonic() >= next_scan and not stop.is_set():
                    self.scan_once()
                    next_scan = time.monotonic() + interval
        finally:
            if observer is not None:
                observer.stop()
                observer.join(timeout=5)

    def scan_once(self) -> list[Path]:
        """Look at every watched folder once; returns what was delivered (inbox paths)."""
        first = self._scans == 0
        self._scans += 1
        delivered: list[Path] = []
        for folder in self.dirs:
            delivered += self._guarded(self._scan, folder, first) or []
        return delivered

    # -- looking -----------------------------------------------------------------------------

    def _scan(self, folder: Path, first: bool) -> list[Path]:
        settler = self.settler
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except FileNotFoundError:
            settler.note(folder, "missing", f"no existe la carpeta vigilada {folder}")
            return []
        present: set[Path] = set()
        temps: dict[tuple[int, int], _Temp] = {}
        finals: list[tuple[Path, os.stat_result]] = []
        delivered: list[Path] = []
        for entry in entries:
            try:
                st = entry.stat(follow_symlinks=False)
            except FileNotFoundError:
                continue
            if not stat.S_ISREG(st.st_mode):
                continue
            path = Path(entry.path)
            present.add(path)
            if entry.name.startswith(CLAIM):
                delivered += self._guarded(settler.resume_claim, path) or []
            elif settler.is_temp(entry.name):
                temps[(st.st_dev, st.st_ino)] = _Temp(entry.name, st.st_size, st.st_mtime_ns)
            else:
                finals.append((path, st))
        names = {p.name for p in present}
        # Packages before sidecars, so a package takes its sidecar along.
        finals.sort(key=lambda item: settler.is_sidecar(item[0].name))
        before = self._temps.get(folder, {})
        for path, st in finals:
            trigger = "startup" if first else "scan"
            was = before.get((st.st_dev, st.st_ino))
            if (self._polling and was is not None and was.name not in names
                    and st.st_size >= was.size and st.st_mtime_ns >= was.mtime_ns):
                trigger = "rename"
            delivered += self._guarded(settler.consider, path, trigger) or []
        self._temps[folder] = temps
        settler.prune(folder, present)
        return delivered

    def _on_event(self, event: Any) -> list[Path]:
        if event.is_directory:
            return []
        settler = self.settler
        if event.event_type == "moved":
            src, dest = str(event.src_path), str(event.dest_path)
            if not dest or not self._watched(Path(dest)):
                return []
            outside = not src or not self._watched(Path(src))
            renamed = outside or settler.is_temp(Path(src).name)
            return settler.consider(Path(dest), "rename" if renamed else "scan")
        path = Path(str(event.src_path))
        if not self._watched(path):
            return []
        kind, temp = event.event_type, settler.is_temp(path.name)
        if kind == "closed":
            if temp:
                self._remember(self._closed_temps, path)
                return []
            self._linked.pop(path, None)  # written through its final name: not a link
            return settler.consider(path, "close")
        if kind == "created" and not temp:
            self._remember(self._linked, path)
        elif kind == "deleted" and temp:
            closed = self._closed_temps.pop(path, None)
            if closed is not None:
                linked = [f for f, at in self._linked.items() if at >= closed and f.exists()]
                if linked:
                    final = max(linked, key=self._linked.__getitem__)
                    del self._linked[final]
                    return settler.consider(final, "rename")
        return []

    def _remember(self, table: dict[Path, float], path: Path) -> None:
        now = time.monotonic()
        limit = now - self.cfg.receive.abandoned_after
        for old in [k for k, at in table.items() if at < limit]:
            del table[old]
        table[path] = now

    def _watched(self, path: Path) -> bool:
        return path.parent in self.dirs

    # -- plumbing ----------------------------------------------------------------------------

    def _start_observer(self) -> Any:
        from difusor.receive.inotify import FolderEvents

        try:
            return FolderEvents(self.dirs, self._events.put).start()
        except OSError as exc:
            self._log(f"inotify no disponible ({exc.strerror or exc}); reviso cada "
                      f"{self.cfg.dropfolder.poll_interval:g} s")
            self._polling = True
            return None

    def _guarded(self, fn: Callable[..., list[Path]], *args: Any) -> list[Path]:
        try:
            return fn(*args)
        except OSError as exc:
            where = Path(str(exc.filename or (args[0] if isinstance(args[0], Path) else "?")))
            self.settler.note(where, f"oserror{exc.errno}",
                              f"error con {where}: {exc.strerror or exc}; lo intento de nuevo "
                              "después")
            return []
