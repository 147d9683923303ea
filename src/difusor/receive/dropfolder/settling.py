"""Whether a file in a drop folder is whole (``[dropfolder] complete_on``), and taking it.

``rename`` and ``close`` are told by the watcher (the trigger); ``sidecar`` compares the file's
sha256 with ``NAME.sha256``; a file unchanged for :data:`SETTLE_SECONDS` has *settled* (the
``close`` rule when polling, or for a file found at start). A file that only sits under its final
name is left where it is, logged once.
"""

from __future__ import annotations

import errno
import logging
import os
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from difusor.receive.dropfolder.claims import claim_and_copy, claimed_name, finish_claim
from difusor.receive.inbox import deliver
from difusor.receive.intake import SIDECAR_SUFFIX, hash_file
from difusor.receive.sidecar import read_stated

SETTLE_SECONDS = 1.0  # unchanged this long = settled (the "close" rule when polling)

_logger = logging.getLogger("difusor.receive.dropfolder")

Key = tuple[int, int, int, int]


def file_key(st: os.stat_result) -> Key:
    return (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


@dataclass
class _Seen:
    key: Key
    since: float


class Settler:
    """Judges the files of the watched folders and takes the whole ones into the inbox."""

    def __init__(self, *, inbox: Path, rules: frozenset[str], temp_suffixes: tuple[str, ...],
                 abandoned_after: float, on_delivered: Callable[[Path], None] | None,
                 log: Callable[[str], None]) -> None:
        self.inbox = inbox
        self.rules = rules
        self.temp_suffixes = temp_suffixes
        self.abandoned_after = abandoned_after
        self.on_delivered = on_delivered
        self._log = log
        self._seen: dict[Path, _Seen] = {}
        self._hashed: dict[Path, tuple[Key, str]] = {}
        self._noted: dict[Path, set[str]] = {}
        self._stated: dict[str, tuple[str, float]] = {}  # name → digest of a sidecar taken alone

    # -- names ----------------------------------------------------------------------------

    def is_temp(self, name: str) -> bool:
        """Hidden names (rsync's ``.X.zip.XXXXXX``, our claims), temporary suffixes, and the
        sidecar of a temporary name (``X.zip.part.sha256``)."""
        stem = name[: -len(SIDECAR_SUFFIX)] if name.endswith(SIDECAR_SUFFIX) else name
        return name.startswith(".") or stem.endswith(self.temp_suffixes)

    def is_sidecar(self, name: str) -> bool:
        return name.endswith(SIDECAR_SUFFIX) and not self.is_temp(name)

    # -- deciding ---------------------------------------------------------------------------

    def consider(self, path: Path, trigger: str) -> list[Path]:
        """Deliver ``path`` if a completion rule says it is whole. ``trigger`` is what brought
        us here: rename, close, sidecar (its sidecar just became readable), startup, scan."""
        name = path.name
        if self.is_temp(name):
            return []
        if self.is_sidecar(name):
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
                        self.note(path, f"mismatch{file_key(st)}",
                                  f"{name}: su sha256 ({actual[:12]}…) no coincide con "
                                  f"{name}{SIDECAR_SUFFIX} ({stated[:12]}…); no se entrega "
                                  "(¿subida incompleta o alterada?). Se revisará si cambia.")
                return []
        if "close" in self.rules and settled:
            return self._deliver_pair(path, f"sin cambios por {SETTLE_SECONDS:g} s (regla «close»)")
        if trigger == "close" or settled:
            self.note(path, f"waiting{file_key(st)}",
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
        stated = read_stated(side)
        if stated is None:
            if trigger in ("close", "rename") or settled:
                self.note(side, f"format{file_key(st)}",
                          f"{side.name} no tiene el formato de sha256sum («<hex>  nombre»); "
                          "no se entrega")
            return []
        package = side.with_name(side.name[: -len(SIDECAR_SUFFIX)])
        if package.is_file():
            if trigger in ("close", "rename", "startup") or settled:
                return self.consider(package, "sidecar")
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
        key, now = file_key(st), time.monotonic()
        seen = self._seen.get(path)
        if seen is None or seen.key != key:
            self._seen[path] = _Seen(key, now)
            return False
        return now - seen.since >= SETTLE_SECONDS

    def _stated_digest(self, package: Path) -> str | None:
        side = package.with_name(package.name + SIDECAR_SUFFIX)
        if side.is_file():
            return read_stated(side)
        remembered = self._stated.get(package.name)
        return remembered[0] if remembered else None

    def _hash(self, path: Path, st: os.stat_result) -> str:
        cached = self._hashed.get(path)
        if cached and cached[0] == file_key(st):
            return cached[1]
        digest = hash_file(path)[0]
        self._hashed[path] = (file_key(st), digest)
        return digest

    def _in_progress(self, package: Path) -> bool:
        """A temporary version of ``package`` (``X.zip.part``, rsync's ``.X.zip.AbC123``)."""
        try:
            names = os.listdir(package.parent)
        except FileNotFoundError:
            return False
        rsync = f".{package.name}."
        return any(n.startswith(rsync) or n in {package.name + s for s in self.temp_suffixes}
                   for n in names)

    # -- delivering --------------------------------------------------------------------------

    def _deliver_pair(self, package: Path, why: str) -> list[Path]:
        target = self._deliver(package, why)
        if target is None:
            return []
        self._stated.pop(package.name, None)
        done = [target]
        side = package.with_name(package.name + SIDECAR_SUFFIX)
        if side.is_file() and read_stated(side) is not None:
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
                self.note(path, "error", f"no puedo mover {path} al buzón {self.inbox}: "
                                         f"{exc.strerror} (¿permisos de la carpeta?)")
                return None
            target = claim_and_copy(path, self.inbox)
        self._forget(path)
        self._announce(target, f"recibido {path.name} ({why}) → buzón {target.name}")
        return target

    def resume_claim(self, claim: Path) -> list[Path]:
        """Finish a delivery a crash interrupted (see ``claims``)."""
        name = claimed_name(claim)
        target = finish_claim(claim, name, self.inbox)
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

    # -- memory ------------------------------------------------------------------------------

    def note(self, path: Path, reason: str, message: str) -> None:
        """Log ``message`` once per path and reason."""
        seen = self._noted.setdefault(path, set())
        if reason not in seen:
            seen.add(reason)
            self._log(message)

    def prune(self, folder: Path, present: set[Path]) -> None:
        """Forget files gone from ``folder``, and sidecars taken alone long ago."""
        for table in (self._seen, self._hashed, self._noted):
            for gone in [p for p in table if p.parent == folder and p not in present]:
                del table[gone]
        limit = time.monotonic() - self.abandoned_after
        for name in [n for n, (_, at) in self._stated.items() if at < limit]:
            del self._stated[name]

    def _forget(self, path: Path) -> None:
        for table in (self._seen, self._hashed, self._noted):
            table.pop(path, None)
