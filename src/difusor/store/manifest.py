"""A release's manifest: the corte it is, and every site path → object, size and media type.

Saved as ``manifests/<release>.json`` (temp file + fsync + rename), never changed afterwards.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import orjson

from difusor.package.names import folders
from difusor.store.objects import write_file

FORMAT = 1


class FileEntry(NamedTuple):
    """A tuple, so that comparing two 20,000-entry manifests runs in C."""

    sha256: str
    size: int
    media_type: str


@dataclass
class Manifest:
    release_id: str
    corte_time: str  # ISO-8601 with offset
    corte_source: str
    package_name: str
    package_sha256: str
    kind: str  # full | incremental
    base_id: str | None
    created: str  # ISO-8601 UTC: when this release was made (its publication time)
    files: dict[str, FileEntry] = field(default_factory=dict)
    _folders: set[str] | None = field(default=None, repr=False, compare=False)

    def folders(self) -> set[str]:
        """Every folder of the site (computed once: thousands of paths, a few hundred folders)."""
        if self._folders is None:
            self._folders = folders(self.files)
        return self._folders

    @property
    def total_bytes(self) -> int:
        return sum(f.size for f in self.files.values())

    def to_json(self) -> bytes:
        return orjson.dumps(self._doc(self.files), option=orjson.OPT_SORT_KEYS)

    def delta_json(self, base_id: str, changed: list[str], removed: list[str]) -> bytes:
        """Only what changed since ``base_id``: servers serving it switch from this."""
        doc = self._doc({p: self.files[p] for p in changed})
        doc["delta_of"] = base_id
        doc["removed"] = removed
        return orjson.dumps(doc, option=orjson.OPT_SORT_KEYS)

    def _doc(self, files: dict[str, FileEntry]) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "release": self.release_id,
            "corte": {"fecha_hora": self.corte_time, "fuente": self.corte_source},
            "package": {"name": self.package_name, "sha256": self.package_sha256,
                        "kind": self.kind},
            "base": self.base_id,
            "created": self.created,
            "files": {p: tuple(f) for p, f in files.items()},  # JSON arrays; keys sorted
        }

    @classmethod
    def from_json(cls, data: bytes) -> Manifest:
        doc = orjson.loads(data)
        if doc.get("format") != FORMAT:
            raise ValueError(f"unknown manifest format {doc.get('format')!r}")
        return cls(
            release_id=doc["release"],
            corte_time=doc["corte"]["fecha_hora"],
            corte_source=doc["corte"]["fuente"],
            package_name=doc["package"]["name"],
            package_sha256=doc["package"]["sha256"],
            kind=doc["package"]["kind"],
            base_id=doc["base"],
            created=doc["created"],
            files={p: FileEntry(*v) for p, v in doc["files"].items()},
        )


class ManifestStore:
    def __init__(self, root: Path, *, fsync: bool = True) -> None:
        self.root = root
        self.fsync = fsync
        root.mkdir(parents=True, exist_ok=True)

    def path(self, release_id: str) -> Path:
        return self.root / f"{release_id}.json"

    def delta_path(self, release_id: str) -> Path:
        return self.root / f"{release_id}.delta"

    def save(self, manifest: Manifest, base: Manifest | None = None,
             changes: tuple[list[str], list[str]] | None = None) -> Path:
        """Write the manifest, and beside it its changes since ``base`` (the live release);
        ``changes`` (changed, removed) when the caller knows them already."""
        if base is not None:
            changed, removed = changes if changes is not None else changed_paths(base, manifest)
            self._write(self.delta_path(manifest.release_id),
                        manifest.delta_json(base.release_id, changed, removed))
        return self._write(self.path(manifest.release_id), manifest.to_json())

    def _write(self, target: Path, data: bytes) -> Path:
        tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        tmp.unlink(missing_ok=True)
        write_file(tmp, data, sync=self.fsync)
        os.replace(tmp, target)
        return target

    def load(self, release_id: str) -> Manifest:
        return Manifest.from_json(self.path(release_id).read_bytes())

    def load_delta(self, release_id: str) -> tuple[Manifest, list[str], str] | None:
        """(changed files as a manifest, removed paths, the release they apply to), or None."""
        try:
            data = self.delta_path(release_id).read_bytes()
        except FileNotFoundError:
            return None
        doc = orjson.loads(data)
        return Manifest.from_json(data), list(doc["removed"]), str(doc["delta_of"])

    def exists(self, release_id: str) -> bool:
        return self.path(release_id).exists()

    def remove(self, release_id: str) -> None:
        self.path(release_id).unlink(missing_ok=True)
        self.delta_path(release_id).unlink(missing_ok=True)

    def ids(self) -> list[str]:
        return sorted(p.stem for p in self.root.glob("*.json") if not p.name.startswith("."))


def changed_paths(old: Manifest | None, new: Manifest) -> tuple[list[str], list[str]]:
    """(added or changed, removed) paths going from ``old`` to ``new``."""
    if old is None:
        return sorted(new.files), []
    changed = [p for p, f in new.files.items() if old.files.get(p) != f]
    removed = [p for p in old.files if p not in new.files]
    return sorted(changed), sorted(removed)
