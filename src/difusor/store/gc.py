"""Collecting old cortes: their trees, manifests and the objects no kept corte references.

The newest ``keep`` cortes stay, and always the live one and the one nginx's tree points to.
The ledger keeps their rows (marked collected): the record outlives the files.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from difusor.ledger import Ledger
from difusor.store.manifest import ManifestStore
from difusor.store.objects import ObjectStore
from difusor.store.releases import ReleaseDirs


@dataclass
class GcOutcome:
    releases: list[str]
    objects: int
    freed: int
    kept: set[str] = field(default_factory=set)


def collect(*, keep: int, live: str | None, tree: str | None, ledger: Ledger,
            manifests: ManifestStore, dirs: ReleaseDirs, objects: ObjectStore,
            progress: Callable[[int, int], None] | None = None) -> GcOutcome:
    """Remove what is not kept; the caller holds the publish lock."""
    if keep < 1 and (live or tree):
        # The CLI refuses it first, in Spanish; only an emptied site (publish/clear.py) keeps 0.
        raise ValueError("keep must be at least 1 while a corte is live")

    def created(release_id: str) -> str:
        row = ledger.release(release_id)
        if row:
            return row.created_at
        try:
            return manifests.load(release_id).created
        except (OSError, ValueError):
            return ""

    ids = sorted(set(manifests.ids()) | set(dirs.ids()), key=created)
    kept = (set(ids[-keep:]) if keep else set()) | {r for r in (live, tree) if r}
    drop = [r for r in ids if r not in kept]
    for rid in drop:
        dirs.remove(rid)
        manifests.remove(rid)
        if ledger.release(rid):
            ledger.release_collected(rid)
    referenced: set[str] = set()
    for rid in kept:
        if manifests.exists(rid):
            referenced.update(e.sha256 for e in manifests.load(rid).files.values())
    candidates = [s for s in objects.all() if s not in referenced]
    freed = 0
    for n, sha in enumerate(candidates, start=1):
        freed += objects.remove(sha)
        if progress:
            progress(n, len(candidates))
    return GcOutcome(drop, len(candidates), freed, kept)
