"""Activation: the one step that makes a release live.

``current`` is a symlink to ``releases/<id>``; a new one is made beside it and renamed over it
(atomic on POSIX), the folder is fsynced, then the 8-byte ``generation`` counter is bumped.
Servers map that counter and re-read ``current`` when it moves, so every worker switches
together and a reader sees the old corte or the new one, never a mix.
"""

from __future__ import annotations

import contextlib
import os
import struct

from difusor.store.layout import StoreLayout
from difusor.store.objects import fsync_dir

_COUNTER = struct.Struct("<Q")


def live_release(layout: StoreLayout) -> str | None:
    try:
        target = os.readlink(layout.current)
    except FileNotFoundError:
        return None
    return target.rstrip("/").rsplit("/", 1)[-1]


def ensure_generation(layout: StoreLayout) -> None:
    """Create the counter whole (temp file + link), so no reader can find it short."""
    if layout.generation.exists() and layout.generation.stat().st_size >= 8:
        return
    tmp = layout.root / f".generation.{os.getpid()}"
    tmp.unlink(missing_ok=True)
    tmp.write_bytes(_COUNTER.pack(0))
    try:
        os.link(tmp, layout.generation)
    except FileExistsError:
        if layout.generation.stat().st_size < 8:  # left short by an older version
            os.replace(tmp, layout.generation)
    finally:
        tmp.unlink(missing_ok=True)


def read_generation(layout: StoreLayout) -> int:
    try:
        return int(_COUNTER.unpack(layout.generation.read_bytes()[:8])[0])
    except (FileNotFoundError, struct.error):
        return 0


def bump_generation(layout: StoreLayout) -> int:
    """Tell every server to look again (after an activation, or when variants were added)."""
    ensure_generation(layout)
    fd = os.open(layout.generation, os.O_RDWR)
    try:
        value = _COUNTER.unpack(os.pread(fd, 8, 0).ljust(8, b"\0"))[0] + 1
        os.pwrite(fd, _COUNTER.pack(value), 0)
    finally:
        os.close(fd)
    return int(value)


def activate(layout: StoreLayout, release_id: str, *, fsync: bool = True) -> None:
    if not layout.release_dir(release_id).is_dir():
        raise FileNotFoundError(layout.release_dir(release_id))
    tmp = layout.root / f".current.{os.getpid()}"
    with contextlib.suppress(FileNotFoundError):
        os.unlink(tmp)
    os.symlink(f"releases/{release_id}", tmp)
    os.replace(tmp, layout.current)
    if fsync:
        fsync_dir(layout.root)
    bump_generation(layout)
