"""Release folders: one tree of hard links per corte, for nginx (and for anyone to inspect).

Building 20,000 links costs a noticeable fraction of a second on this hardware, so after each
activation a *spare* copy of the live release is prepared off the publish path; the next corte
takes the spare and patches only the paths that changed. Without a spare (first corte, after a
crash, after a rollback) the folder is built from scratch. Either way the folder is assembled
under ``build/`` and renamed into ``releases/`` whole.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path

from difusor.store.layout import StoreLayout
from difusor.store.manifest import FileEntry, Manifest
from difusor.store.mediatypes import compressible
from difusor.store.objects import ENCODINGS, ObjectStore


class ReleaseDirs:
    def __init__(self, layout: StoreLayout, objects: ObjectStore) -> None:
        self.layout = layout
        self.objects = objects

    def path(self, release_id: str) -> Path:
        return self.layout.release_dir(release_id)

    def exists(self, release_id: str) -> bool:
        return self.path(release_id).is_dir()

    def build(self, manifest: Manifest, base: Manifest | None) -> Path:
        """Materialise ``manifest`` (its objects loose) as ``releases/<id>``; returns its path.
        ``base``: the release whose spare, if ready, is patched instead of linking everything."""
        target = self.path(manifest.release_id)
        if target.exists():  # left by an interrupted publication that never went live
            shutil.rmtree(target)
        work = self.layout.build / manifest.release_id
        if work.exists():
            shutil.rmtree(work)
        spare = self.layout.spare / base.release_id if base else None
        linker = _Linker(self.objects, str(work), manifest.files)
        if base is not None and spare is not None and spare.is_dir():
            os.rename(spare, work)
            linker.patch(base.files)
        else:
            work.mkdir(parents=True)
            linker.fill()
        os.rename(work, target)
        return target

    def add_variant_links(self, manifest: Manifest) -> int:
        """Link variants made after activation into the live folder; returns links added."""
        root = str(self.path(manifest.release_id))
        added = 0
        for path, entry in manifest.files.items():
            if not compressible(entry.media_type):
                continue
            for enc in ENCODINGS:
                link = f"{root}/{path}.{enc}"
                if path + "." + enc in manifest.files or os.path.lexists(link):
                    continue
                with contextlib.suppress(FileNotFoundError):
                    os.link(self.objects.where(entry.sha256, enc), link)
                    added += 1
        return added

    def prepare_spare(self, release_id: str) -> None:
        """Copy the live release's links into ``spare/<id>`` (off the publish path)."""
        self.layout.spare.mkdir(exist_ok=True)
        for old in os.scandir(self.layout.spare):
            if old.name != release_id:
                shutil.rmtree(old.path, ignore_errors=True)
        final = self.layout.spare / release_id
        if final.exists():
            return
        tmp = self.layout.spare / f".tmp-{release_id}"
        shutil.rmtree(tmp, ignore_errors=True)
        _clone_links(self.path(release_id), tmp)
        os.rename(tmp, final)

    def drop_spares(self) -> None:
        shutil.rmtree(self.layout.spare, ignore_errors=True)
        self.layout.spare.mkdir(exist_ok=True)

    def remove(self, release_id: str) -> None:
        shutil.rmtree(self.path(release_id), ignore_errors=True)
        shutil.rmtree(self.layout.spare / release_id, ignore_errors=True)

    def ids(self) -> list[str]:
        return sorted(e.name for e in os.scandir(self.layout.releases) if e.is_dir())


def clone_links(src: Path, dst: Path) -> int:
    """Hard-link every file of ``src`` into a new ``dst`` (same tree); returns how many."""
    os.mkdir(dst)
    count = 0
    stack = [(str(src), str(dst))]
    while stack:
        s, d = stack.pop()
        with os.scandir(s) as it:
            for entry in it:
                target = os.path.join(d, entry.name)
                if entry.is_dir(follow_symlinks=False):
                    os.mkdir(target)
                    stack.append((entry.path, target))
                else:
                    os.link(entry.path, target)
                    count += 1
    return count


_clone_links = clone_links  # the name crash tests place their kill point on


class _Linker:
    """Hard links for one release folder, with plain string paths (20,000 of them, often)."""

    def __init__(self, objects: ObjectStore, root: str, files: dict[str, FileEntry]) -> None:
        self.objects = objects
        self.root = root
        self.files = files

    def fill(self) -> None:
        made: set[str] = set()
        for path in sorted(self.files):
            parent = path.rpartition("/")[0]
            if parent and parent not in made:
                os.makedirs(f"{self.root}/{parent}", exist_ok=True)
                made.add(parent)
            self.link(path, self.files[path])

    def patch(self, old: dict[str, FileEntry]) -> None:
        root = self.root
        for path in old.keys() - self.files.keys():
            self.unlink(path)
            _prune(root, path)
        for path, entry in self.files.items():
            before = old.get(path)
            if before == entry:
                continue
            if before is not None:
                self.unlink(path)
            elif "/" in path:
                os.makedirs(f"{root}/{path.rpartition('/')[0]}", exist_ok=True)
            self.link(path, entry)

    def link(self, path: str, entry: FileEntry) -> None:
        target = f"{self.root}/{path}"
        os.link(self.objects.where(entry.sha256), target)
        if not compressible(entry.media_type):
            return
        for enc in ENCODINGS:
            if f"{path}.{enc}" in self.files:  # the authority's own file wins
                continue
            with contextlib.suppress(FileNotFoundError):
                os.link(self.objects.where(entry.sha256, enc), f"{target}.{enc}")

    def unlink(self, path: str) -> None:
        target = f"{self.root}/{path}"
        os.unlink(target)
        for enc in ENCODINGS:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(f"{target}.{enc}")


def _prune(root: str, path: str) -> None:
    """Remove folders a removed file leaves empty."""
    parent = path.rpartition("/")[0]
    while parent:
        try:
            os.rmdir(f"{root}/{parent}")
        except OSError:
            return
        parent = parent.rpartition("/")[0]
