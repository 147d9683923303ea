"""Emptying a site (``difusor simulacro reset``): no corte served, none stored, the record kept.

After a simulacro the test site must not keep the drill's numbers public, and the next simulacro
must be able to send the same corte ids again. Under the publish lock this takes the live corte
down (``current`` and nginx's tree removed, the generation bumped so every worker notices) and
collects every stored corte, so the judge sees no earlier publication of an id. The ledger keeps
each corte's rows (received, live, lags), the packages folder keeps the originals, and a
``simulacro_reset`` event says who emptied it and what it held: evidence for the memoria.
"""

from __future__ import annotations

from dataclasses import dataclass

from difusor.integrity.record import record_takedown
from difusor.ledger import utcnow
from difusor.paths import fsync_dir
from difusor.publish.activate import bump_generation, live_release, wait_served
from difusor.publish.publisher import Publisher
from difusor.publish.takedown import remote_copies
from difusor.store.gc import collect


@dataclass(frozen=True)
class ClearOutcome:
    live: str | None  # the corte that was live
    releases: list[str]  # every corte removed from the store
    workers: int | None  # server workers that confirmed (None: none within 2 s)
    elsewhere: list[str]  # remote origins and CDNs that may still serve it


def clear_site(publisher: Publisher, *, by: str) -> ClearOutcome:
    p = publisher
    with p.lock(recovering=False):
        live = live_release(p.layout)
        p.layout.current.unlink(missing_ok=True)
        p.layout.site.unlink(missing_ok=True)
        if p.cfg.store.fsync:
            fsync_dir(p.layout.root)
        served = wait_served(p.layout, bump_generation(p.layout), timeout=2.0)
        result = collect(keep=0, live=None, tree=None, ledger=p.ledger, manifests=p.manifests,
                         dirs=p.dirs, objects=p.objects)
        if p.two_phase:
            p.origins.prune(set())
        record_takedown(p.cfg, p.ledger, utcnow(), kind="reset")
        p.ledger.event(
            "simulacro_reset",
            f"sitio vaciado por {by}: {len(result.releases)} cortes retirados"
            + (f" (en línea estaba {live})" if live else ""),
            release_id=live,
            detail={"by": by, "live": live, "releases": result.releases,
                    "objects": result.objects, "freed": result.freed})
    return ClearOutcome(live, result.releases, served[0] if served else None,
                        remote_copies(p.cfg) if live else [])
