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
        """Materialise ``manifest`` as ``releases/<id>``; returns its path."""
        target = self.path(manifest.release_id)
        if target.exists():  # left by an interrupted publication that never went live
            shutil.rmtree(target)
        work = self.layout.build / manifest.release_id
        if work.exists():
            shutil.rmtree(work)
        spare = self.layout.spare / base.release_id if base else None
        if base is not None and spare is not None and spare.is_dir():
            os.rename(spare, work)
            self._patch(work, base.files, manifest.files)
        else:
            work.mkdir(parents=True)
            self._fill(work, manifest.files)
        os.rename(work, target)
        return target

    def _fill(self, root: Path, files: dict[str, FileEntry]) -> None:
        made: set[str] = set()
        for path in sorted(files):
            parent = path.rpartition("/")[0]
            if parent and parent not in made:
                (root / parent).mkdir(parents=True, exist_ok=True)
                made.add(parent)
            self._link(root, path, files[path], files)

    def _patch(
        self, root: Path, old: dict[str, FileEntry], new: dict[str, FileEntry]
    ) -> None:
        for path in old.keys() - new.keys():
            self._unlink(root, path)
            self._prune(root, path)
        for path, entry in new.items():
            if old.get(path) == entry:
                continue
            if path in old:
                self._unlink(root, path)
            else:
                (root / path).parent.mkdir(parents=True, exist_ok=True)
            self._link(root, path, entry, new)

    def _link(self, root: Path, path: str, entry: FileEntry, files: dict[str, FileEntry]) -> None:
        os.link(self.objects.path(entry.sha256), root / path)
        if compressible(entry.media_type):
            for enc in ENCODINGS:
                if path + "." + enc in files:  # the authority's own file wins
                    continue
                # A variant not made yet is added later by add_variant_links.
                with contextlib.suppress(FileNotFoundError):
                    os.link(self.objects.path(entry.sha256, enc), root / f"{path}.{enc}")

    @staticmethod
    def _unlink(root: Path, path: str) -> None:
        for suffix in ("", *(f".{e}" for e in ENCODINGS)):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(root / f"{path}{suffix}")

    @staticmethod
    def _prune(root: Path, path: str) -> None:
        parent = (root / path).parent
        while parent != root:
            try:
                parent.rmdir()
            except OSError:
                return
            parent = parent.parent

    def add_variant_links(self, manifest: Manifest) -> int:
        """Link variants made after activation into the live folder; returns links added."""
        root = self.path(manifest.release_id)
        added = 0
        for path, entry in manifest.files.items():
            if not compressible(entry.media_type):
                continue
            for enc in ENCODINGS:
                link = root / f"{path}.{enc}"
                if path + "." + enc in manifest.files or os.path.lexists(link):
                    continue
                try:
                    os.link(self.objects.path(entry.sha256, enc), link)
                    added += 1
                except FileNotFoundError:
                    pass
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


def _clone_links(src: Path, dst: Path) -> None:
    os.mkdir(dst)
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
