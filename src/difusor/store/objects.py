"""Content-addressed objects, named by their sha256, written once, read-only.

An object lives in a pack (right after its publication: see packs.py) and then loose, as
``objects/ab/cdef…``, which is what release trees hard-link to. Loose objects are written to a
temporary folder, made durable with one ``syncfs`` for the batch (cheaper than one ``fsync`` per
file), and only then renamed into place, so an object's name always means its whole, durable
content. Compressed variants (``.gz``, ``.br``) are derived once, the same way, and shared by
every corte.
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
from collections.abc import Collection, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import brotli

from difusor.store.packs import PackSet, PackWriter

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


def write_file(path: Path | str, data: bytes | memoryview, mode: int = 0o444, *,
               sync: bool = False) -> None:
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
    def __init__(self, root: Path, *, fsync: bool = True, packs: Path | None = None) -> None:
        self.root = root
        self._root = str(root)
        self.fsync = fsync
        root.mkdir(parents=True, exist_ok=True)
        self.packs = PackSet(packs or root.parent / "packs")

    def path(self, sha256: str, encoding: str | None = None) -> Path:
        return Path(self.where(sha256, encoding))

    def where(self, sha256: str, encoding: str | None = None) -> str:
        """The loose object's file as a string (pathlib costs too much over 20,000 files)."""
        if encoding:
            return f"{self._root}/{sha256[:2]}/{sha256[2:]}.{encoding}"
        return f"{self._root}/{sha256[:2]}/{sha256[2:]}"

    def loose(self, sha256: str) -> bool:
        return os.path.exists(self.where(sha256))

    def has(self, sha256: str, *, refresh: bool = True) -> bool:
        return self.loose(sha256) or self.packs.find(sha256, refresh=refresh) is not None

    def read(self, sha256: str, encoding: str | None = None) -> bytes:
        try:
            with open(self.where(sha256, encoding), "rb") as f:
                return f.read()
        except FileNotFoundError:
            view = None if encoding else self.packs.view(sha256)
            if view is None:
                raise
            return bytes(view)

    def variants(self, sha256: str) -> dict[str, int]:
        """Encoding → size of the variants present for an object."""
        found = {}
        for enc in ENCODINGS:
            with contextlib.suppress(FileNotFoundError):
                found[enc] = os.stat(self.where(sha256, enc)).st_size
        return found

    def staging(self, tmp_root: Path, known: Collection[str] | None = None) -> Staging:
        return Staging(self, tmp_root / f"staging-{os.getpid()}-{uuid.uuid4().hex[:8]}", known)

    def unpack(self, tmp_root: Path) -> int:
        """Make every packed object loose, then drop the packs; returns objects written."""
        written = 0
        for name in self.packs.names():
            todo = {sha: data for sha in self.packs.objects(name)
                    if not self.loose(sha) and (data := self.packs.view(sha)) is not None}
            written += self._write_loose(todo.items(), tmp_root)
            self.packs.remove(name)
        return written

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
                if not os.path.exists(self.where(s, e))]
        if not todo:
            return 0

        def work(item: tuple[str, str]) -> tuple[str, bytes]:
            sha, enc = item
            data = self.read(sha)
            if enc == "gz":
                return f"{sha}.{enc}", gzip.compress(data, compresslevel=gzip_level, mtime=0)
            return f"{sha}.{enc}", brotli.compress(data, quality=brotli_quality)

        with ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1)) as pool:
            made = list(pool.map(work, todo))
        return self._write_loose(made, tmp_root)

    def _write_loose(self, items: Iterable[tuple[str, bytes | memoryview]], tmp_root: Path) -> int:
        """Write ``name → data`` (name = sha, or sha.enc) durably, then rename into place."""
        tmp = tmp_root / f"loose-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        tmp.mkdir(parents=True)
        try:
            names = []
            for name, data in items:
                write_file(f"{tmp}/{name}", data)
                names.append(name)
            if names and self.fsync:
                sync_filesystem(tmp)
            for name in names:
                sha, _, enc = name.partition(".")
                target = self.where(sha, enc or None)
                try:
                    os.replace(f"{tmp}/{name}", target)
                except FileNotFoundError:
                    os.makedirs(target.rsplit("/", 1)[0], exist_ok=True)
                    os.replace(f"{tmp}/{name}", target)
            return len(names)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def remove(self, sha256: str) -> int:
        """Delete a loose object and its variants; returns the bytes freed."""
        freed = 0
        for enc in (None, *ENCODINGS):
            p = self.where(sha256, enc)
            with contextlib.suppress(FileNotFoundError):
                freed += os.stat(p).st_size
                os.unlink(p)
        return freed

    def all(self) -> Iterable[str]:
        """Every loose object's sha256 (variants excluded)."""
        for prefix in os.scandir(self.root):
            if not prefix.is_dir() or len(prefix.name) != 2:
                continue
            for entry in os.scandir(prefix.path):
                if "." not in entry.name:
                    yield prefix.name + entry.name


class Staging:
    """New objects of one publication, in one pack that is invisible until ``commit``.

    ``known``: objects the caller knows are stored (the live corte's). Anything else goes into
    the pack without asking the file system (a stat here costs up to tens of µs); an object
    that was in fact stored already is simply not written again when the pack is unpacked.
    """

    def __init__(self, store: ObjectStore, folder: Path,
                 known: Collection[str] | None = None) -> None:
        self.store = store
        self.folder = folder
        folder.mkdir(parents=True)
        self.pack = PackWriter(folder / "objects.pack")
        self.known = known
        store.packs.refresh()  # packs only change under the publish lock, which we hold

    def _known(self, sha: str) -> bool:
        if self.known is not None:
            return sha in self.known
        return self.store.has(sha, refresh=False)

    @property
    def new(self) -> dict[str, tuple[int, int]]:
        return self.pack.index

    def add(self, data: bytes) -> str:
        sha = hashlib.sha256(data).hexdigest()
        if sha not in self.pack.index and not self._known(sha):
            self.pack.append(sha, data)
        return sha

    def add_chunks(self, chunks: Iterable[bytes]) -> tuple[str, int]:
        return self.pack.append_chunks(chunks, known=self._known)

    def read(self, sha256: str) -> bytes:
        if sha256 in self.pack.index:
            return self.pack.read(sha256)
        return self.store.read(sha256)

    def commit(self, name: str) -> list[str]:
        """Seal the pack (durable, then visible) as ``packs/<name>``; returns its objects."""
        committed = list(self.pack.index)
        if committed:
            self.pack.seal(self.store.packs.folder, name, fsync=self.store.fsync)
        self.discard()
        return committed

    def discard(self) -> None:
        self.pack.close()
        shutil.rmtree(self.folder, ignore_errors=True)
