"""Content-addressed objects: ``objects/ab/cdef…`` named by their sha256, written once, read-only.

New content is first written to a private staging folder; ``commit`` makes it durable (one
``syncfs`` for the batch, cheaper than one ``fsync`` per file) and only then renames each object
into place, so an object's name always means its whole, durable content. Compressed variants
(``.gz``, ``.br``) of an object are derived once, the same way, and shared by every corte.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import gzip
import hashlib
import os
import shutil
import uuid
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import brotli

ENCODINGS = ("br", "gz")  # preference order when the client accepts both
_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


def sync_filesystem(path: Path) -> None:
    """Flush every dirty page of the filesystem holding ``path`` (Linux ``syncfs``)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        if _libc.syncfs(fd) != 0:
            os.sync()
    finally:
        os.close(fd)


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_file(path: Path, data: bytes, mode: int = 0o444, *, sync: bool = False) -> None:
    """Create ``path`` (it must not exist) with ``data``; optionally fsync it."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        if sync:
            os.fsync(fd)
    finally:
        os.close(fd)


class ObjectStore:
    def __init__(self, root: Path, *, fsync: bool = True) -> None:
        self.root = root
        self.fsync = fsync
        root.mkdir(parents=True, exist_ok=True)

    def path(self, sha256: str, encoding: str | None = None) -> Path:
        p = self.root / sha256[:2] / sha256[2:]
        return p.with_name(p.name + "." + encoding) if encoding else p

    def has(self, sha256: str) -> bool:
        return os.path.exists(self.path(sha256))

    def read(self, sha256: str, encoding: str | None = None) -> bytes:
        return self.path(sha256, encoding).read_bytes()

    def variants(self, sha256: str) -> dict[str, int]:
        """Encoding → size of the variants present for an object."""
        found = {}
        for enc in ENCODINGS:
            with contextlib.suppress(FileNotFoundError):
                found[enc] = os.stat(self.path(sha256, enc)).st_size
        return found

    def staging(self, tmp_root: Path) -> Staging:
        return Staging(self, tmp_root / f"staging-{os.getpid()}-{uuid.uuid4().hex[:8]}")

    def make_variants(
        self,
        shas: Iterable[str],
        *,
        gzip_level: int,
        brotli_quality: int,
        tmp_root: Path,
    ) -> int:
        """Write the missing .gz and .br variants of the given objects; returns how many."""
        todo = [(s, e) for s in dict.fromkeys(shas) for e in ENCODINGS
                if not os.path.exists(self.path(s, e))]
        if not todo:
            return 0
        tmp = tmp_root / f"variants-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        tmp.mkdir(parents=True)
        try:
            def work(item: tuple[str, str]) -> tuple[str, str]:
                sha, enc = item
                data = self.read(sha)
                if enc == "gz":
                    out = gzip.compress(data, compresslevel=gzip_level, mtime=0)
                else:
                    out = brotli.compress(data, quality=brotli_quality)
                write_file(tmp / f"{sha}.{enc}", out)
                return item

            with ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1)) as pool:
                done = list(pool.map(work, todo))
            if self.fsync:
                sync_filesystem(tmp)
            for sha, enc in done:
                target = self.path(sha, enc)
                target.parent.mkdir(exist_ok=True)
                os.replace(tmp / f"{sha}.{enc}", target)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return len(todo)

    def remove(self, sha256: str) -> int:
        """Delete an object and its variants; returns the bytes freed."""
        freed = 0
        for enc in (None, *ENCODINGS):
            p = self.path(sha256, enc)
            try:
                freed += p.stat().st_size
                p.unlink()
            except FileNotFoundError:
                pass
        return freed

    def all(self) -> Iterable[str]:
        """Every object's sha256 (variants excluded)."""
        for prefix in os.scandir(self.root):
            if not prefix.is_dir() or len(prefix.name) != 2:
                continue
            for entry in os.scandir(prefix.path):
                if "." not in entry.name:
                    yield prefix.name + entry.name


class Staging:
    """New objects of one publication, invisible until ``commit``."""

    def __init__(self, store: ObjectStore, folder: Path) -> None:
        self.store = store
        self.folder = folder
        folder.mkdir(parents=True)
        self.new: dict[str, Path] = {}

    def add(self, data: bytes) -> str:
        sha = hashlib.sha256(data).hexdigest()
        if sha not in self.new and not self.store.has(sha):
            path = self.folder / sha
            write_file(path, data)
            self.new[sha] = path
        return sha

    def add_chunks(self, chunks: Iterable[bytes]) -> tuple[str, int]:
        h = hashlib.sha256()
        size = 0
        tmp = self.folder / f"part-{uuid.uuid4().hex}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o444)
        try:
            for chunk in chunks:
                h.update(chunk)
                size += len(chunk)
                view = memoryview(chunk)
                while view:
                    view = view[os.write(fd, view):]
        except BaseException:
            os.close(fd)
            tmp.unlink(missing_ok=True)
            raise
        os.close(fd)
        sha = h.hexdigest()
        if sha in self.new or self.store.has(sha):
            tmp.unlink()
        else:
            final = self.folder / sha
            os.replace(tmp, final)
            self.new[sha] = final
        return sha, size

    def read(self, sha256: str) -> bytes:
        path = self.new.get(sha256)
        return path.read_bytes() if path else self.store.read(sha256)

    def commit(self) -> list[str]:
        """Make staged objects durable, then visible under their names."""
        if self.new and self.store.fsync:
            sync_filesystem(self.folder)
        for sha, path in self.new.items():
            target = self.store.path(sha)
            try:
                os.replace(path, target)
            except FileNotFoundError:
                target.parent.mkdir(exist_ok=True)
                os.replace(path, target)
        committed = list(self.new)
        self.new.clear()
        self.discard()
        return committed

    def discard(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)
