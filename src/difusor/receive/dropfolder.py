"""The drop-folder watcher: packages another program (OpenSSH, rsync, …) writes into a folder.

We do not see the transfer, only the folder, so a file is taken only when something says it is
whole (``[dropfolder] complete_on``):

- ``rename``: it was renamed to its final name from a temporary one (a ``[receive]
  temp_suffixes`` suffix such as ``X.zip.part``, or rsync's hidden ``.X.zip.XXXXXX``), or moved
  in whole from elsewhere (rsync ``--delay-updates``, ``mv`` on the same filesystem);
- ``sidecar``: ``NAME.sha256`` is there and the sha256 of ``NAME`` matches it (both are taken);
- ``close``: the writer closed it (inotify ``IN_CLOSE_WRITE``; when polling, or for a file
  found at start, its size and times unchanged for :data:`SETTLE_SECONDS`). **Unsafe with
  OpenSSH**: a transfer cut halfway also closes the file, so half a package would be taken.

A file that only sits under its final name is therefore left where it is (logged once): with
the default rules an OpenSSH upload killed halfway is never published. Hidden and temporary
files are never taken. Two transfer habits defeat the rules and must not be used: rsync
``--partial`` (when the connection drops it *renames* the partial file to its final name; use
``--partial-dir``) and ``--inplace``.

Taking a file is :func:`difusor.receive.inbox.deliver`: a rename into the inbox, because OpenSSH
may re-open a name and truncate it, so the file must leave the drop folder, not be linked. When
the inbox is on another filesystem the file is first renamed to a hidden claim name beside
itself, copied, fsynced and renamed into the inbox; a claim left by a crash is finished on the
next scan. A sidecar goes right after its package. Whatever sits in the folder when the watcher
starts is judged by the same rules (a package with its matching sidecar is taken at once).

With polling (``inotify = false``) a rename is recognised by the file's inode having been seen
under a temporary name at the previous scan, so a temporary file must live at least one
``poll_interval``; faster uploads need a sidecar (or inotify).
"""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import queue
import shutil
import stat
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from difusor.config import Config
from difusor.errors import DifusorError
from difusor.paths import StateLayout, fsync_dir
from difusor.receive.inbox import deliver
from difusor.receive.intake import SIDECAR_SUFFIX

SETTLE_SECONDS = 1.0  # unchanged this long = settled (the "close" rule when polling)
_TICK = 0.2  # the longest ``run`` waits before looking at ``stop`` again
_CLAIM = ".difusor-entrega-"  # a file being copied to an inbox on another filesystem
_COPY_TMP = ".dropfolder.part"
_MAX_SIDECAR = 64 * 1024

_logger = logging.getLogger(__name__)

Key = tuple[int, int, int, int]


def _key(st: os.stat_result) -> Key:
    return (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


@dataclass
class _Seen:
    key: Key
    since: float


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
        self.temp_suffixes = tuple(cfg.receive.temp_suffixes)
        self.on_delivered = on_delivered
        self._log = log or _logger.info
        self._polling = not cfg.dropfolder.inotify
        self._events: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._scans = 0
        self._seen: dict[Path, _Seen] = {}
        self._hashed: dict[Path, tuple[Key, str]] = {}
        self._noted: dict[Path, set[str]] = {}
        self._temps: dict[Path, dict[tuple[int, int], _Temp]] = {}  # folder → last scan's
        self._stated: dict[str, tuple[str, float]] = {}  # name → digest of a sidecar taken alone
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
        self._clean_inbox()
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

    # -- deciding ----------------------------------------------------------------------------

    def is_temp(self, name: str) -> bool:
        """Hidden names (rsync's ``.X.zip.XXXXXX``, our claims), temporary suffixes, and the
        sidecar of a temporary name (``X.zip.part.sha256``)."""
        stem = name[: -len(SIDECAR_SUFFIX)] if name.endswith(SIDECAR_SUFFIX) else name
        return name.startswith(".") or stem.endswith(self.temp_suffixes)

    def _is_sidecar(self, name: str) -> bool:
        return name.endswith(SIDECAR_SUFFIX) and not self.is_temp(name)

    def _scan(self, folder: Path, first: bool) -> list[Path]:
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except FileNotFoundError:
            self._note(folder, "missing", f"no existe la carpeta vigilada {folder}")
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
            if entry.name.startswith(_CLAIM):
                delivered += self._guarded(self._resume_claim, path) or []
            elif self.is_temp(entry.name):
                temps[(st.st_dev, st.st_ino)] = _Temp(entry.name, st.st_size, st.st_mtime_ns)
            else:
                finals.append((path, st))
        names = {p.name for p in present}
        # Packages before sidecars, so a package takes its sidecar along.
        finals.sort(key=lambda item: self._is_sidecar(item[0].name))
        before = self._temps.get(folder, {})
        for path, st in finals:
            trigger = "startup" if first else "scan"
            was = before.get((st.st_dev, st.st_ino))
            if (self._polling and was is not None and was.name not in names
                    and st.st_size >= was.size and st.st_mtime_ns >= was.mtime_ns):
                trigger = "rename"
            delivered += self._guarded(self._consider, path, trigger) or []
        self._temps[folder] = temps
        for table in (self._seen, self._hashed, self._noted):
            for gone in [p for p in table if p.parent == folder and p not in present]:
                del table[gone]
        limit = time.monotonic() - self.cfg.receive.abandoned_after
        for name in [n for n, (_, at) in self._stated.items() if at < limit]:
            del self._stated[name]
        return delivered

    def _on_event(self, event: Any) -> list[Path]:
        if event.is_directory:
            return []
        if event.event_type == "moved":
            src, dest = str(event.src_path), str(event.dest_path)
            if not dest or not self._watched(Path(dest)):
                return []
            outside = not src or not self._watched(Path(src))
            renamed = outside or self.is_temp(Path(src).name)
            return self._consider(Path(dest), "rename" if renamed else "scan")
        path = Path(str(event.src_path))
        if not self._watched(path):
            return []
        kind, temp = event.event_type, self.is_temp(path.name)
        if kind == "closed":
            if temp:
                self._remember(self._closed_temps, path)
                return []
            self._linked.pop(path, None)  # written through its final name: not a link
            return self._consider(path, "close")
        if kind == "created" and not temp:
            self._remember(self._linked, path)
        elif kind == "deleted" and temp:
            closed = self._closed_temps.pop(path, None)
            if closed is not None:
                linked = [f for f, at in self._linked.items() if at >= closed and f.exists()]
                if linked:
                    final = max(linked, key=self._linked.__getitem__)
                    del self._linked[final]
                    return self._consider(final, "rename")
        return []

    def _remember(self, table: dict[Path, float], path: Path) -> None:
        now = time.monotonic()
        limit = now - self.cfg.receive.abandoned_after
        for old in [k for k, at in table.items() if at < limit]:
            del table[old]
        table[path] = now

    def _consider(self, path: Path, trigger: str) -> list[Path]:
        """Deliver ``path`` if a completion rule says it is whole. ``trigger`` is what brought
        us here: rename, close, sidecar (its sidecar just became readable), startup, scan."""
        name = path.name
        if self.is_temp(name):
            return []
        if self._is_sidecar(name):
            return self._consider_sidecar(path, trigger)
        try:
            st = path.lstat()
        except FileNotFoundError:
            return []
        if not stat.S_ISREG(st.st_mode):
            return []
        if trigger == "rename" and "rename" in self.rules:
            return self._deliver_pair(path, "renombrado desde un nombre temporal")
        if trigger == "close" and "close" in self.rules:
            return self._deliver_pair(path, "cerrado por quien lo escribía (regla «close»)")
        settled = self._settled(path, st)
        if "sidecar" in self.rules:
            stated = self._stated_digest(path)
            if stated is not None:
                if trigger in ("close", "sidecar", "startup") or settled:
                    actual = self._hash(path, st)
                    if actual == stated:
                        return self._deliver_pair(path, f"coincide con {name}{SIDECAR_SUFFIX}")
                    if trigger == "close" or settled:
                        self._note(path, f"mismatch{_key(st)}",
                                   f"{name}: su sha256 ({actual[:12]}…) no coincide con "
                                   f"{name}{SIDECAR_SUFFIX} ({stated[:12]}…); no se entrega "
                                   "(¿subida incompleta o alterada?). Se revisará si cambia.")
                return []
        if "close" in self.rules and settled:
            return self._deliver_pair(path, f"sin cambios por {SETTLE_SECONDS:g} s (regla «close»)")
        if trigger == "close" or settled:
            self._note(path, f"waiting{_key(st)}",
                       f"{name} tiene su nombre final pero no fue renombrado desde un nombre "
                       f"temporal ni llegó {name}{SIDECAR_SUFFIX}: no se entrega (una "
                       "transferencia cortada también deja el archivo así); espera un renombrado "
                       f"o su {name}{SIDECAR_SUFFIX}")
        return []

    def _consider_sidecar(self, side: Path, trigger: str) -> list[Path]:
        try:
            st = side.lstat()
        except FileNotFoundError:
            return []
        settled = self._settled(side, st)
        stated = self._read_digest(side)
        if stated is None:
            if trigger in ("close", "rename") or settled:
                self._note(side, f"format{_key(st)}",
                           f"{side.name} no tiene el formato de sha256sum («<hex>  nombre»); "
                           "no se entrega")
            return []
        package = side.with_name(side.name[: -len(SIDECAR_SUFFIX)])
        if package.is_file():
            if trigger in ("close", "rename", "startup") or settled:
                return self._consider(package, "sidecar")
            return []
        if self._in_progress(package):
            return []
        if trigger in ("close", "rename") or settled:
            target = self._deliver(side, f"sin {package.name} al lado; el buzón los empareja "
                                         "por nombre")
            if target is not None:
                self._stated[package.name] = (stated, time.monotonic())
                return [target]
        return []

    def _settled(self, path: Path, st: os.stat_result) -> bool:
        key, now = _key(st), time.monotonic()
        seen = self._seen.get(path)
        if seen is None or seen.key != key:
            self._seen[path] = _Seen(key, now)
            return False
        return now - seen.since >= SETTLE_SECONDS

    def _stated_digest(self, package: Path) -> str | None:
        side = package.with_name(package.name + SIDECAR_SUFFIX)
        if side.is_file():
            return self._read_digest(side)
        remembered = self._stated.get(package.name)
        return remembered[0] if remembered else None

    @staticmethod
    def _read_digest(side: Path) -> str | None:
        from difusor.package.checksums import parse_sidecar

        try:
            with side.open("rb") as f:
                data = f.read(_MAX_SIDECAR + 1)
        except FileNotFoundError:
            return None
        if len(data) > _MAX_SIDECAR:
            return None
        try:
            return parse_sidecar(data.decode("utf-8", "replace"))
        except DifusorError:
            return None

    def _hash(self, path: Path, st: os.stat_result) -> str:
        cached = self._hashed.get(path)
        if cached and cached[0] == _key(st):
            return cached[1]
        h = hashlib.sha256()
        with path.open("rb") as f:
            while chunk := f.read(1 << 20):
                h.update(chunk)
        self._hashed[path] = (_key(st), h.hexdigest())
        return h.hexdigest()

    def _in_progress(self, package: Path) -> bool:
        """A temporary version of ``package`` (``X.zip.part``, rsync's ``.X.zip.AbC123``)."""
        try:
            names = os.listdir(package.parent)
        except FileNotFoundError:
            return False
        rsync = f".{package.name}."
        return any(n.startswith(rsync) or n in {package.name + s for s in self.temp_suffixes}
                   for n in names)

    def _watched(self, path: Path) -> bool:
        return path.parent in self.dirs

    # -- delivering --------------------------------------------------------------------------

    def _deliver_pair(self, package: Path, why: str) -> list[Path]:
        target = self._deliver(package, why)
        if target is None:
            return []
        self._stated.pop(package.name, None)
        done = [target]
        side = package.with_name(package.name + SIDECAR_SUFFIX)
        if side.is_file() and self._read_digest(side) is not None:
            second = self._deliver(side, f"suma de {package.name}")
            if second is not None:
                done.append(second)
        return done

    def _deliver(self, path: Path, why: str) -> Path | None:
        try:
            target = deliver(path, self.inbox, name=path.name)
        except FileNotFoundError:
            return None
        except OSError as exc:
            if exc.errno != errno.EXDEV:
                self._note(path, "error", f"no puedo mover {path} al buzón {self.inbox}: "
                                          f"{exc.strerror} (¿permisos de la carpeta?)")
                return None
            claim = path.with_name(f"{_CLAIM}{uuid.uuid4().hex[:8]}-{path.name}")
            os.rename(path, claim)  # off the name a writer could re-open, before copying
            target = self._finish_claim(claim, path.name)
        self._forget(path)
        self._announce(target, f"recibido {path.name} ({why}) → buzón {target.name}")
        return target

    def _resume_claim(self, claim: Path) -> list[Path]:
        name = claim.name[len(_CLAIM):].partition("-")[2] or "paquete"
        target = self._finish_claim(claim, name)
        self._announce(target, f"recibido {name} (entrega interrumpida, retomada) → buzón "
                               f"{target.name}")
        return [target]

    def _announce(self, target: Path, message: str) -> None:
        self._log(message)
        if self.on_delivered is not None:
            try:
                self.on_delivered(target)
            except Exception:  # the file is in the inbox already; keep watching
                _logger.exception("on_delivered falló con %s", target)

    def _finish_claim(self, claim: Path, name: str) -> Path:
        """Copy a claimed file into the inbox on another filesystem: temp, fsync, rename."""
        self.inbox.mkdir(parents=True, exist_ok=True)
        tmp = self.inbox / f".{uuid.uuid4().hex}{_COPY_TMP}"
        try:
            with claim.open("rb") as src, tmp.open("xb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
                dst.flush()
                os.fsync(dst.fileno())
            target = deliver(tmp, self.inbox, name=name)
            fsync_dir(self.inbox)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        claim.unlink()
        fsync_dir(claim.parent)
        return target

    def _clean_inbox(self) -> None:
        """Copies a crash left half-made in the inbox (the claim is still in the drop folder)."""
        try:
            for entry in os.scandir(self.inbox):
                if entry.name.startswith(".") and entry.name.endswith(_COPY_TMP):
                    os.unlink(entry.path)
        except FileNotFoundError:
            pass

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
            self._note(where, f"oserror{exc.errno}",
                       f"error con {where}: {exc.strerror or exc}; lo intento de nuevo después")
            return []

    def _note(self, path: Path, reason: str, message: str) -> None:
        """Log ``message`` once per path and reason."""
        seen = self._noted.setdefault(path, set())
        if reason not in seen:
            seen.add(reason)
            self._log(message)

    def _forget(self, path: Path) -> None:
        for table in (self._seen, self._hashed, self._noted):
            table.pop(path, None)
