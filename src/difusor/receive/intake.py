"""Taking a package in: a private copy, hashed while copied, so nothing can change it under us.

The copy (with its sidecar, if any) gets its final name in ``incoming/`` before the ledger hears
of it, so an interrupted run always leaves a named copy that recovery can match to its ledger
row. The copy is what gets verified and what is kept afterwards: in ``packages/`` when accepted,
in ``quarantine/`` with its reason beside it when refused. The original is never modified.
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
from difusor.ledger import Ledger

SIDECAR_SUFFIX = ".sha256"
REASON_SUFFIX = ".motivo.txt"
_MAX_SIDECAR = 64 * 1024
_UNSAFE = re.compile(r"[^\w.+-]", re.UNICODE)


@dataclass
class Intake:
    path: Path
    name: str  # the name the authority gave it
    sha256: str
    size: int
    sidecar_text: str | None

    @property
    def copy_name(self) -> str:
        return self.path.name

    @classmethod
    def resume(cls, path: Path, name: str, sha256: str, size: int) -> Intake:
        """An earlier run's copy, found again by recovery."""
        side = path.with_name(path.name + SIDECAR_SUFFIX)
        text = side.read_text("utf-8", "replace") if side.exists() else None
        return cls(path, name, sha256, size, text)

    def keep(self, folder: Path) -> Path:
        """Move the copy (and its sidecar) into ``folder``; returns where it went."""
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / self.path.name
        side = self.path.with_name(self.path.name + SIDECAR_SUFFIX)
        if side.exists():
            os.replace(side, folder / side.name)
        os.replace(self.path, target)
        self.path = target
        return target

    def quarantine(self, folder: Path, code: str, reason: str) -> Path:
        target = self.keep(folder)
        stamp = datetime.now(UTC).isoformat(timespec="seconds")
        (folder / (target.name + REASON_SUFFIX)).write_text(
            f"Paquete rechazado: {self.name}\n"
            f"Motivo: {reason}\n"
            f"Código: {code}\n"
            f"sha256: {self.sha256}\n"
            f"Tamaño: {self.size} bytes\n"
            f"Fecha: {stamp}\n",
            encoding="utf-8",
        )
        return target


def safe_name(name: str) -> str:
    return _UNSAFE.sub("_", name)[:180] or "paquete"


def copy_name(name: str) -> str:
    """``20241208T203512-1a2b3c_<name>``: unique, sortable by arrival, traceable to the name."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    return f"{stamp}-{uuid.uuid4().hex[:6]}_{safe_name(name)}"


def original_name(copy: str) -> str:
    return copy.split("_", 1)[1] if "_" in copy else copy


def hash_file(path: Path) -> tuple[str, int]:
    h = hashlib.sha256()
    size = 0
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
            size += len(chunk)
    return h.hexdigest(), size


def take_in(
    source: Path,
    incoming: Path,
    *,
    name: str | None = None,
    sidecar: Path | None = None,
    link: bool = False,
) -> Intake:
    """Copy ``source`` into ``incoming``, hashing it, with its sidecar (``sidecar``, or
    ``source.sha256`` beside it). ``name`` is the authority's name (default: the file's).

    ``link`` hard-links instead of copying, for files that are already ours (the inbox): no
    copy of a large package on the latency path, and the inbox entry stays until the publisher
    is done with it, so an interruption never loses it.
    """
    name = name or source.name
    if not source.exists():
        raise DifusorError(f"no existe el paquete {source}")
    if not source.is_file():
        raise DifusorError(f"{source} no es un archivo")
    incoming.mkdir(parents=True, exist_ok=True)
    final = incoming / copy_name(name)
    side_text = _sidecar(sidecar or source.with_name(source.name + SIDECAR_SUFFIX))
    if link:
        os.link(source, final)
        os.chmod(final, 0o444)
        if side_text is not None:
            final.with_name(final.name + SIDECAR_SUFFIX).write_text(side_text, encoding="utf-8")
        sha, size = hash_file(final)
        return Intake(final, name, sha, size, side_text)
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
    if side_text is not None:
        final.with_name(final.name + SIDECAR_SUFFIX).write_text(side_text, encoding="utf-8")
    os.replace(tmp, final)
    return Intake(final, name, h.hexdigest(), size, side_text)


def _sidecar(side: Path) -> str | None:
    try:
        with side.open("rb") as f:
            data = f.read(_MAX_SIDECAR)
    except FileNotFoundError:
        return None
    return data.decode("utf-8", "replace")


def recover_copy(path: Path, ledger: Ledger, *, packages: Path, quarantine: Path) -> None:
    """A copy an interrupted run left in ``incoming/``: put it where its ledger row says it
    belongs (kept, quarantined), or mark its publication interrupted and keep it."""
    if path.name.endswith(SIDECAR_SUFFIX):
        return  # moves with its package
    if path.name.startswith(".") and path.name.endswith(".part"):
        path.unlink(missing_ok=True)  # an unfinished copy; the source is still where it was
        return
    row = ledger.package_by_copy(path.name)
    if row is None:  # copied, but the run died before the ledger heard of it
        sha, size = hash_file(path)
        pid = ledger.package_received(original_name(path.name), sha, size, path.name)
        row = ledger.package(pid)
        assert row is not None
    intake = Intake.resume(path, row["name"], row["sha256"], row["size"])
    if row["state"] in ("refused", "failed"):
        kept = intake.quarantine(quarantine, row["reason_code"] or "", row["reason"] or "")
        ledger.package_update(row["id"], kept_at=str(kept))
        return
    kept = intake.keep(packages)
    if row["state"] in ("activated", "duplicate"):
        ledger.package_update(row["id"], kept_at=str(kept))
        return
    ledger.package_update(row["id"], state="interrupted", kept_at=str(kept))
    ledger.event(
        "interrupted", f"publicación interrumpida de {row['name']}; original conservado",
        package_id=row["id"], detail={"kept_at": str(kept)},
    )
