"""A release's manifest: the corte it is, and every site path → object, size and media type.

Saved as ``manifests/<release>.json`` (temp file + fsync + rename), never changed afterwards.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from difusor.store.objects import write_file

FORMAT = 1


@dataclass(frozen=True, slots=True)
class FileEntry:
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

    @property
    def total_bytes(self) -> int:
        return sum(f.size for f in self.files.values())

    def to_json(self) -> bytes:
        doc: dict[str, Any] = {
            "format": FORMAT,
            "release": self.release_id,
            "corte": {"fecha_hora": self.corte_time, "fuente": self.corte_source},
            "package": {"name": self.package_name, "sha256": self.package_sha256,
                        "kind": self.kind},
            "base": self.base_id,
            "created": self.created,
            "files": {p: [f.sha256, f.size, f.media_type] for p, f in sorted(self.files.items())},
        }
        return json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, data: bytes) -> Manifest:
        doc = json.loads(data)
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
            files={p: FileEntry(v[0], v[1], v[2]) for p, v in doc["files"].items()},
        )


class ManifestStore:
    def __init__(self, root: Path, *, fsync: bool = True) -> None:
        self.root = root
        self.fsync = fsync
        root.mkdir(parents=True, exist_ok=True)

    def path(self, release_id: str) -> Path:
        return self.root / f"{release_id}.json"

    def save(self, manifest: Manifest) -> Path:
        target = self.path(manifest.release_id)
        tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        tmp.unlink(missing_ok=True)
        write_file(tmp, manifest.to_json(), sync=self.fsync)
        os.replace(tmp, target)
        return target

    def load(self, release_id: str) -> Manifest:
        return Manifest.from_json(self.path(release_id).read_bytes())

    def exists(self, release_id: str) -> bool:
        return self.path(release_id).exists()

    def remove(self, release_id: str) -> None:
        self.path(release_id).unlink(missing_ok=True)

    def ids(self) -> list[str]:
        return sorted(p.stem for p in self.root.glob("*.json") if not p.name.startswith("."))


def changed_paths(old: Manifest | None, new: Manifest) -> tuple[list[str], list[str]]:
    """(added or changed, removed) paths going from ``old`` to ``new``."""
    if old is None:
        return sorted(new.files), []
    changed = [p for p, f in new.files.items() if old.files.get(p) != f]
    removed = [p for p in old.files if p not in new.files]
    return sorted(changed), sorted(removed)
