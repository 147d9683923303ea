"""Disk space: a full disk is a reason to wait, not a fault.

A package that cannot be stored because the disk (or the quota) is full is refused with its own
code, ``no_space``: nothing live changes, nothing is quarantined (moving it would not help, and
it is not the package's fault), and ``difusor run`` tries it again once there is room. The
monitor watches the free space so the operator hears of it before a package does.
"""

from __future__ import annotations

import errno
import shutil
import sqlite3
from pathlib import Path

from difusor.errors import PackageRefused

NO_SPACE = "no_space"
_ERRNOS = (errno.ENOSPC, errno.EDQUOT)


def out_of_space(exc: BaseException) -> bool:
    """Whether ``exc`` means the disk or the quota is full (SQLite says so in words)."""
    if isinstance(exc, OSError):
        return exc.errno in _ERRNOS
    return isinstance(exc, sqlite3.OperationalError) and "full" in str(exc)


def no_space_refusal(exc: BaseException, folder: Path) -> PackageRefused:
    detail = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
    return PackageRefused(
        NO_SPACE,
        f"no hay espacio en disco para guardar el paquete en {folder} ({detail}): nada cambió en "
        "línea y el paquete no va a cuarentena; «difusor run» lo reintenta solo en cuanto haya "
        "espacio (o vuelve a publicarlo a mano)",
    )


def free_bytes(folder: Path) -> int:
    return shutil.disk_usage(folder).free
