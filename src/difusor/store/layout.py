"""The store's folders. ``current``, ``site`` and ``generation`` are written by publish/."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class StoreLayout:
    root: Path

    @property
    def objects(self) -> Path:
        return self.root / "objects"

    @property
    def packs(self) -> Path:
        """New objects of recent publications, one file each, until they are made loose."""
        return self.root / "packs"

    @property
    def manifests(self) -> Path:
        return self.root / "manifests"

    @property
    def releases(self) -> Path:
        """One folder of hard links per corte (nginx's root points at the live one)."""
        return self.root / "releases"

    @property
    def spare(self) -> Path:
        """A ready copy of the live release's links, so the next corte only patches changes."""
        return self.root / "spare"

    @property
    def build(self) -> Path:
        return self.root / "build"

    @property
    def tmp(self) -> Path:
        return self.root / "tmp"

    @property
    def current(self) -> Path:
        """Symlink ``current`` → ``manifests/<id>.json``: the live corte (the activation)."""
        return self.root / "current"

    @property
    def site(self) -> Path:
        """Symlink ``site`` → ``releases/<id>``: the live corte's tree of files, for nginx;
        moved as soon as that tree is complete, right after each activation."""
        return self.root / "site"

    @property
    def generation(self) -> Path:
        """An 8-byte counter bumped after every activation; servers map it and watch it."""
        return self.root / "generation"

    @property
    def served(self) -> Path:
        """One 8-byte file per server worker (named by pid): the generation it serves."""
        return self.root / "served"

    def release_dir(self, release_id: str) -> Path:
        return self.releases / release_id

    def create(self) -> None:
        for d in (self.objects, self.packs, self.manifests, self.releases, self.spare, self.build,
                  self.tmp, self.served):
            d.mkdir(parents=True, exist_ok=True)
