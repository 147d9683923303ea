"""Packs: the new objects of one publication in a single file.

Creating a file costs this hardware from 40 µs to over a millisecond; a national corte brings
thousands of new files. So the publish path writes them all into one pack (``packs/<id>.pack``,
fsynced, then its index ``packs/<id>.idx``: sha256 → offset, size) and goes live from it; the
loose objects and the hard-link tree for nginx are made right after, and the pack is dropped.
A pack is complete exactly when its index exists.
"""

from __future__ import annotations

import hashlib
import json
import mmap
import os
from collections.abc import Callable, Iterable
from pathlib import Path

PACK = ".pack"
INDEX = ".idx"


class PackWriter:
    """Appends objects to a temporary pack; ``seal`` makes it durable and visible."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o444)
        self.size = 0
        self.index: dict[str, tuple[int, int]] = {}

    def append(self, sha256: str, data: bytes) -> None:
        self._write(data)
        self.index[sha256] = (self.size - len(data), len(data))

    def append_chunks(self, chunks: Iterable[bytes], known: Callable[[str], bool] | None = None
                      ) -> tuple[str, int]:
        """Stream an object in; if it turns out to be known already, take it back out."""
        start = self.size
        h = hashlib.sha256()
        for chunk in chunks:
            h.update(chunk)
            self._write(chunk)
        sha = h.hexdigest()
        size = self.size - start
        if sha in self.index or (known is not None and known(sha)):
            os.ftruncate(self._fd, start)
            self.size = start
        else:
            self.index[sha] = (start, size)
        return sha, size

    def _write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            n = os.pwrite(self._fd, view, self.size)
            self.size += n
            view = view[n:]

    def read(self, sha256: str) -> bytes:
        offset, size = self.index[sha256]
        return os.pread(self._fd, size, offset)

    def seal(self, folder: Path, name: str, *, fsync: bool) -> Path:
        """Move the pack to ``folder/name.pack`` and write its index; returns the pack path."""
        if fsync:
            os.fsync(self._fd)
        os.close(self._fd)
        self._fd = -1
        pack = folder / (name + PACK)
        os.replace(self.path, pack)
        index = folder / (name + INDEX)
        tmp = folder / f".{name}{INDEX}.{os.getpid()}"
        tmp.unlink(missing_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o444)
        try:
            os.write(fd, json.dumps({"objects": self.index}).encode())
            if fsync:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, index)
        return pack

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def load_index(index: Path) -> dict[str, tuple[int, int]]:
    doc = json.loads(index.read_bytes())
    return {sha: (int(v[0]), int(v[1])) for sha, v in doc["objects"].items()}


class PackSet:
    """Every sealed pack in a folder, looked up by object; re-scanned when the folder changes."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self._stamp = -1
        self._where: dict[str, tuple[str, int, int]] = {}
        self._maps: dict[str, mmap.mmap] = {}

    def refresh(self) -> None:
        """Re-read the indexes if packs came or went (one stat when nothing changed)."""
        stamp = os.stat(self.folder).st_mtime_ns
        if stamp == self._stamp:
            return
        self._stamp = stamp
        where: dict[str, tuple[str, int, int]] = {}
        for index in sorted(self.folder.glob("*" + INDEX)):
            pack = str(index.with_suffix(PACK))
            try:
                for sha, (offset, size) in load_index(index).items():
                    where[sha] = (pack, offset, size)
            except (OSError, ValueError, KeyError):
                continue  # removed while we looked, or not ours: loose objects answer instead
        self._where = where
        live = {pack for pack, _, _ in where.values()}
        for gone in set(self._maps) - live:
            del self._maps[gone]  # answers still holding views keep the mapping alive

    def find(self, sha256: str, *, refresh: bool = True) -> tuple[str, int, int] | None:
        """Where a packed object is; a miss looks at the folder again unless told not to."""
        found = self._where.get(sha256)
        if found is None and refresh:
            self.refresh()
            found = self._where.get(sha256)
        return found

    def view(self, sha256: str, *, refresh: bool = True) -> memoryview | None:
        """The object's bytes straight from the mapped pack (no copy)."""
        found = self.find(sha256, refresh=refresh)
        if found is None:
            return None
        pack, offset, size = found
        mapped = self._maps.get(pack)
        if mapped is None:
            try:
                with open(pack, "rb") as f:
                    mapped = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
            except (OSError, ValueError):
                return None
            self._maps[pack] = mapped
        return memoryview(mapped)[offset:offset + size]

    def names(self) -> list[str]:
        return sorted(p.stem for p in self.folder.glob("*" + INDEX))

    def objects(self, name: str) -> dict[str, tuple[int, int]]:
        return load_index(self.folder / (name + INDEX))

    def remove(self, name: str) -> None:
        (self.folder / (name + INDEX)).unlink(missing_ok=True)
        (self.folder / (name + PACK)).unlink(missing_ok=True)
        self._maps.pop(str(self.folder / (name + PACK)), None)
