"""nginx on this host: ``root/releases/<id>`` beside the store, ``root/current`` swapped atomically.

The release folder is hard links to the store's objects when ``root`` is on the same filesystem
(no byte is copied); otherwise ``rsync --link-dest`` against the live folder copies only what
changed. It is assembled under a hidden name and renamed into place whole. nginx's ``root``
points at ``root/current`` (with ``$realpath_root`` and ``open_file_cache off``, each request
resolves the symlink once, so it gets the old corte or the new one).
"""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

from difusor.config import NginxOriginSettings
from difusor.paths import fsync_dir
from difusor.publish.origins.base import RSYNC_FLAGS, Origin, OriginError, Release
from difusor.store.objects import sync_filesystem
from difusor.store.releases import clone_links


class NginxOrigin(Origin):
    kind = "nginx"
    settings: NginxOriginSettings

    @property
    def root(self) -> Path:
        return self.ctx.cfg.path(self.settings.root)

    def _stage(self, release: Release) -> dict[str, Any]:
        releases = self.root / "releases"
        try:
            releases.mkdir(parents=True, exist_ok=True)
            target = releases / release.id
            if self.live() == release.id and target.is_dir():
                return {"method": "en línea"}  # already served: never rebuilt under readers
            work = releases / f".{release.id}.tmp"
            shutil.rmtree(work, ignore_errors=True)
            for leftover in releases.glob(".*.tmp"):
                shutil.rmtree(leftover, ignore_errors=True)
            try:
                files = _link_tree(release.tree, work)
                method = "enlaces"
            except OSError as exc:
                if exc.errno != errno.EXDEV:
                    raise
                shutil.rmtree(work, ignore_errors=True)
                files, method = self._rsync(release.tree, work), "copia"
            if self.ctx.cfg.store.fsync:
                sync_filesystem(work)
            if target.exists():  # left by a publication that never went live
                shutil.rmtree(target)
            os.rename(work, target)
        except OSError as exc:
            raise OriginError(f"origen {self.name}: no pude preparar {self.root}/releases/"
                              f"{release.id}: {exc}") from exc
        return {"method": method, "files": files}

    def _rsync(self, source: Path, work: Path) -> int:
        cmd = ["rsync", *RSYNC_FLAGS, f"--link-dest={self.root / 'current'}/", f"{source}/",
               f"{work}/"]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=self.timeout)
        if done.returncode != 0:
            raise OriginError(f"origen {self.name}: rsync falló ({done.returncode}): "
                              f"{done.stderr.strip()[-300:]}")
        return sum(len(names) for _, _, names in os.walk(work))

    def _switch(self, release_id: str) -> dict[str, Any]:
        root = self.root
        if not (root / "releases" / release_id).is_dir():
            raise OriginError(f"origen {self.name}: {root}/releases/{release_id} no existe")
        tmp = root / f".current.{os.getpid()}"
        try:
            tmp.unlink(missing_ok=True)
            os.symlink(f"releases/{release_id}", tmp)
            os.replace(tmp, root / "current")
            if self.ctx.cfg.store.fsync:
                fsync_dir(root)
        except OSError as exc:
            raise OriginError(f"origen {self.name}: no pude mover {root}/current: {exc}") from exc
        return {}

    def add_variants(self, release: Release) -> dict[str, Any]:
        target = self.root / "releases" / release.id
        if not target.is_dir():
            return {"added": 0}
        added = 0
        for dirpath, _dirs, names in os.walk(release.tree):
            rel = os.path.relpath(dirpath, release.tree)
            for name in names:
                if not name.endswith((".gz", ".br")):
                    continue
                dst = target / rel / name
                if os.path.lexists(dst):
                    continue
                try:
                    os.link(os.path.join(dirpath, name), dst)
                except OSError as exc:
                    if exc.errno != errno.EXDEV:
                        raise
                    tmp = dst.with_name(f".{name}.tmp")
                    shutil.copy2(os.path.join(dirpath, name), tmp)
                    os.replace(tmp, dst)
                added += 1
        return {"added": added}

    def prune(self, keep: set[str]) -> int:
        live, removed = self.live(), 0
        releases = self.root / "releases"
        for folder in list(releases.iterdir()) if releases.is_dir() else []:
            if folder.name not in keep and folder.name != live and not folder.name.startswith("."):
                shutil.rmtree(folder)
                removed += 1
        return removed

    def live(self) -> str | None:
        try:
            return os.readlink(self.root / "current").rstrip("/").rsplit("/", 1)[-1]
        except OSError:
            return None


def _link_tree(src: Path, dst: Path) -> int:
    """Hard-link every file of ``src`` into a new ``dst``; EXDEV when another filesystem."""
    count = clone_links(src, dst)
    os.chmod(dst, 0o755)
    return count
