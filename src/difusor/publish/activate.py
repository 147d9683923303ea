"""Activation: the one step that makes a release live.

``current`` is a symlink to ``manifests/<id>.json``; a new one is made beside it and renamed over
it (atomic on POSIX), the folder is fsynced, then the 8-byte ``generation`` counter is bumped.
Servers map that counter and re-read ``current`` when it moves, so every worker switches
together and a reader sees the old corte or the new one, never a mix. ``site`` (the tree of hard
links nginx serves) is moved the same way once the release's tree is complete.
"""

from __future__ import annotations

import os
import struct
import time
from pathlib import Path

from difusor.paths import fsync_dir
from difusor.store.layout import StoreLayout

_COUNTER = struct.Struct("<Q")


def live_release(layout: StoreLayout) -> str | None:
    """The live corte's release id (what ``current`` points at)."""
    return _pointed(layout.current)


def site_release(layout: StoreLayout) -> str | None:
    """The release whose tree ``site`` points at (the live one, once its tree is built)."""
    return _pointed(layout.site)


def _pointed(link: Path) -> str | None:
    try:
        target = os.readlink(link)
    except FileNotFoundError:
        return None
    name = target.rstrip("/").rsplit("/", 1)[-1]
    return name.removesuffix(".json")


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


def wait_served(layout: StoreLayout, generation: int, timeout: float = 1.0
                ) -> tuple[int, float] | None:
    """Wait until every running server worker serves ``generation`` (each reports it in
    ``served/<pid>``); returns (workers, seconds), or None when some did not in time. Reports of
    workers that are gone are removed."""
    start = time.monotonic()
    while True:
        pending, workers = 0, 0
        for report in layout.served.iterdir():
            try:
                pid = int(report.name)
                os.kill(pid, 0)
            except (ValueError, ProcessLookupError):
                report.unlink(missing_ok=True)
                continue
            except PermissionError:
                pass  # alive, another user's
            workers += 1
            try:
                seen = _COUNTER.unpack(report.read_bytes()[:8])[0]
            except (OSError, struct.error):
                seen = 0
            pending += seen < generation
        waited = time.monotonic() - start
        if not pending:
            return workers, waited
        if waited > timeout:
            return None
        time.sleep(0.002)


def report_served(path: Path, generation: int) -> None:
    """A worker's report: the generation its answers now come from."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        os.pwrite(fd, _COUNTER.pack(generation), 0)
    finally:
        os.close(fd)


def activate(layout: StoreLayout, release_id: str, *, fsync: bool = True) -> int:
    """Make ``release_id`` live; returns the generation servers will report once they serve it."""
    manifest = layout.manifests / f"{release_id}.json"
    if not manifest.is_file():
        raise FileNotFoundError(manifest)
    _point(layout, layout.current, f"manifests/{release_id}.json", fsync)
    return bump_generation(layout)


def point_site(layout: StoreLayout, release_id: str, *, fsync: bool = True) -> None:
    if not layout.release_dir(release_id).is_dir():
        raise FileNotFoundError(layout.release_dir(release_id))
    _point(layout, layout.site, f"releases/{release_id}", fsync)


def _point(layout: StoreLayout, link: Path, target: str, fsync: bool) -> None:
    tmp = layout.root / f".{link.name}.{os.getpid()}"
    tmp.unlink(missing_ok=True)
    os.symlink(target, tmp)
    os.replace(tmp, link)
    if fsync:
        fsync_dir(layout.root)
