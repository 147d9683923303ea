"""The limits a package must keep: member types, counts, sizes and compression ratio.

A zip's central directory is judged whole before any data is read; every archive is then
counted as it streams (a tar says nothing up front), so a decompression bomb is stopped by the
bytes it yields, not by what it declares.
"""

from __future__ import annotations

from collections.abc import Collection
from fnmatch import fnmatchcase

from difusor.config import PackageSettings
from difusor.errors import PackageRefused
from difusor.package import archive

RATIO_FLOOR = 16 * 1024 * 1024  # ratios are only judged past this many bytes
MEMBER_RATIO_FLOOR = 1024 * 1024

_REASONS = {
    "symlink": ("symlink", "es un enlace simbólico"),
    "hardlink": ("hardlink", "es un enlace duro"),
    "device": ("device", "es un dispositivo"),
    "fifo": ("device", "es una tubería (FIFO)"),
}


def precheck_zip(members: list[archive.Member], s: PackageSettings, packed: int) -> None:
    """The whole central directory against the limits (``packed``: the archive's size)."""
    nfiles = sum(1 for m in members if m.kind == "file")
    if nfiles > s.max_files:
        raise PackageRefused(
            "too_many_files",
            f"el paquete trae {nfiles} archivos; el límite es {s.max_files} "
            "(package.max_files)",
        )
    declared = sum(m.size for m in members)
    if declared > s.max_total_bytes:
        raise PackageRefused(
            "too_many_bytes",
            f"el paquete descomprimido mediría {declared} bytes; el límite es "
            f"{s.max_total_bytes} (package.max_total_bytes)",
        )
    if declared > RATIO_FLOOR and declared > s.max_ratio * max(packed, 1):
        raise PackageRefused(
            "ratio",
            f"razón de compresión {declared / max(packed, 1):.0f}:1 mayor que "
            f"{s.max_ratio:.0f}:1: parece una bomba de descompresión",
        )
    for m in members:
        if (
            m.packed is not None
            and m.size > MEMBER_RATIO_FLOOR
            and m.size > s.max_ratio * max(m.packed, 1)
        ):
            raise PackageRefused(
                "ratio",
                f"«{m.name}» se expande {m.size / max(m.packed, 1):.0f}:1, más que "
                f"{s.max_ratio:.0f}:1: parece una bomba de descompresión",
            )


def check_type(member: archive.Member, path: str) -> None:
    """Only regular files and folders: no links, devices or pipes."""
    if member.kind in ("file", "dir"):
        return
    code, what = _REASONS.get(member.kind, ("unsupported_member", "no es un archivo regular"))
    raise PackageRefused(code, f"«{path}» {what}; un paquete solo puede traer archivos")


def check_member(path: str, member: archive.Member, taken: int, s: PackageSettings) -> None:
    """One more file after ``taken`` others: within the file count and the size of one file."""
    if taken >= s.max_files:
        raise PackageRefused(
            "too_many_files",
            f"el paquete trae más de {s.max_files} archivos (límite package.max_files)",
        )
    if member.size > s.max_file_bytes:
        raise PackageRefused(
            "file_too_big",
            f"«{path}» mide {member.size} bytes; el límite es {s.max_file_bytes} "
            "(package.max_file_bytes)",
        )


class Budget:
    """The bytes the archive has yielded so far, against the total and the ratio limits."""

    def __init__(self, s: PackageSettings, arc: archive.Archive) -> None:
        self.s = s
        self.arc = arc
        self.total = 0

    def count(self, n: int) -> None:
        self.total += n
        if self.total > self.s.max_total_bytes:
            raise PackageRefused(
                "too_many_bytes",
                f"el paquete descomprimido pasa de {self.s.max_total_bytes} bytes "
                "(package.max_total_bytes)",
            )
        consumed = max(self.arc.consumed(), 1)
        if self.total > RATIO_FLOOR and self.total > self.s.max_ratio * consumed:
            raise PackageRefused(
                "ratio",
                f"razón de compresión {self.total / consumed:.0f}:1 mayor que "
                f"{self.s.max_ratio:.0f}:1: parece una bomba de descompresión",
            )


def check_database(files: Collection[str], required: list[str]) -> None:
    """A database package carries a file for each of ``package.database_required``."""
    for pattern in required:
        if not any(fnmatchcase(p, pattern) or fnmatchcase(p.rsplit("/", 1)[-1], pattern)
                   for p in files):
            raise PackageRefused(
                "database_missing",
                f"el paquete de base de datos no trae ningún archivo «{pattern}» "
                "(package.database_required)",
            )
