"""``difusor gc``: old cortes out of the store and off the remote origins.

Takes the publish lock but does not run recovery: collecting never re-processes what an
interrupted publication left (the next publication does).
"""

from __future__ import annotations

from collections.abc import Callable

from difusor.publish.activate import live_release, site_release
from difusor.publish.publisher import Publisher
from difusor.store.gc import GcOutcome, collect


def collect_cortes(publisher: Publisher, keep: int,
                   progress: Callable[[int, int], None] | None = None) -> GcOutcome:
    p = publisher
    with p.lock(recovering=False):
        result = collect(keep=keep, live=live_release(p.layout), tree=site_release(p.layout),
                         ledger=p.ledger, manifests=p.manifests, dirs=p.dirs, objects=p.objects,
                         progress=progress)
        pruned = p.origins.prune(result.kept) if p.two_phase else {}
        p.ledger.event(
            "gc", f"depuración: {len(result.releases)} cortes y {result.objects} objetos "
            f"({result.freed} bytes)",
            detail={"releases": result.releases, "objects": result.objects,
                    "freed": result.freed, "keep": keep, **({"origins": pruned} if pruned else {})},
        )
    return result
