"""Taking a package in: a private copy, hashed while copied, so nothing can change it under us.

The copy is what gets verified and what is kept afterwards: in ``packages/`` when accepted, in
``quarantine/`` with its reason beside it when refused. The original is never modified.
"""

from __future__ import annotations

import hashlib
import os
import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from difusor.errors import DifusorError

SIDECAR_SUFFIX = ".sha256"
_MAX_SIDECAR = 64 * 1024
_UNSAFE = re.compile(r"[^\w.+-]", re.UNICODE)


@dataclass
class Intake:
    path: Path
    name: str
    sha256: str
    size: int
    sidecar_text: str | None

    def named(self, package_id: int) -> None:
        """Give the private copy its ledger id, so an interrupted run can be traced."""
        final = self.path.with_name(f"{package_id:06d}_{safe_name(self.name)}")
        os.replace(self.path, final)
        self.path = final

    def keep(self, folder: Path) -> Path:
        """Move the copy (and its sidecar) into ``folder``; returns where it went."""
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / self.path.name
        os.replace(self.path, target)
        self.path = target
        if self.sidecar_text is not None:
            (folder / (target.name + SIDECAR_SUFFIX)).write_text(self.sidecar_text)
        return target

    def quarantine(self, folder: Path, code: str, reason: str) -> Path:
        target = self.keep(folder)
        stamp = datetime.now(UTC).isoformat(timespec="seconds")
        (folder / (target.name + ".motivo.txt")).write_text(
            f"Paquete rechazado: {self.name}\n"
            f"Motivo: {reason}\n"
            f"Código: {code}\n"
            f"sha256: {self.sha256}\n"
            f"Tamaño: {self.size} bytes\n"
            f"Fecha: {stamp}\n",
            encoding="utf-8",
        )
        return target

    def discard(self) -> None:
        self.path.unlink(missing_ok=True)


def safe_name(name: str) -> str:
    return _UNSAFE.sub("_", name)[:180] or "paquete"


def take_in(source: Path, incoming: Path) -> Intake:
    """Copy ``source`` (and ``source.sha256`` if beside it) into ``incoming``, hashing it."""
    if not source.exists():
        raise DifusorError(f"no existe el paquete {source}")
    if not source.is_file():
        raise DifusorError(f"{source} no es un archivo")
    incoming.mkdir(parents=True, exist_ok=True)
    tmp = incoming / f".{uuid.uuid4().hex}.part"
    h = hashlib.sha256()
    size = 0
    try:
        src = os.open(source, os.O_RDONLY)
    except OSError as exc:
        raise DifusorError(f"no puedo leer {source}: {exc.strerror}") from None
    try:
        dst = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o444)
        try:
            while chunk := os.read(src, 1 << 20):
                h.update(chunk)
                size += len(chunk)
                view = memoryview(chunk)
                while view:
                    view = view[os.write(dst, view):]
        finally:
            os.close(dst)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    finally:
        os.close(src)
    return Intake(tmp, source.name, h.hexdigest(), size, _sidecar(source))


def _sidecar(source: Path) -> str | None:
    side = source.with_name(source.name + SIDECAR_SUFFIX)
    try:
        with side.open("rb") as f:
            data = f.read(_MAX_SIDECAR)
    except FileNotFoundError:
        return None
    return data.decode("utf-8", "replace")
