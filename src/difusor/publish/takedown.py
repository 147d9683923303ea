"""The final take-down: no corte served any more; the record stays.

Under the publish lock (without recovery: nothing is re-published on the way out) it removes
``current`` (and ``site``, nginx's tree), bumps the generation so every server worker notices,
and records a ``takedown`` event. A server without ``current`` serves no corte: every path is 404
and ``/_difusor/health`` answers 503. The stored releases, packages and ledger stay. Whether the
convocatoria allows it yet is the retention rule's to say (``monitor.retention``), before this.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from difusor.config import Config
from difusor.integrity.record import record_takedown
from difusor.ledger import Ledger, utcnow
from difusor.paths import StateLayout, fsync_dir
from difusor.publish.activate import bump_generation, live_release, wait_served
from difusor.publish.publock import publish_lock
from difusor.store.layout import StoreLayout


@dataclass(frozen=True)
class TakedownOutcome:
    release_id: str | None  # the corte that was live (None: nothing was)
    allowed_from: datetime
    at: datetime
    workers: int | None  # server workers that confirmed the switch (None: not within 2 s)
    elsewhere: list[str]  # remote origins and CDNs that still hold a copy


def remote_copies(cfg: Config) -> list[str]:
    """Where the live corte also sits and this machine cannot take it away: remote origins and
    CDN caches, each with its own procedure (docs/disponibilidad.md)."""
    return [o.name for o in cfg.origins if o.kind != "local"] + [c.name or c.kind
                                                                 for c in cfg.cdn]


def takedown(cfg: Config, ledger: Ledger, *, now: datetime, allowed_from: datetime
             ) -> TakedownOutcome:
    state = StateLayout(cfg.state_dir)
    layout = StoreLayout(state.store)
    with publish_lock(state.publish_lock):
        live = live_release(layout)
        layout.current.unlink(missing_ok=True)
        layout.site.unlink(missing_ok=True)
        if cfg.store.fsync:
            fsync_dir(layout.root)
        served = wait_served(layout, bump_generation(layout), timeout=2.0)
        elsewhere = remote_copies(cfg)
        record_takedown(cfg, ledger, utcnow())
        ledger.event(
            "takedown",
            f"sitio retirado (fin de la operación más {cfg.operation.keep_hours:g} h)"
            + (f"; estaba en línea el corte {live}" if live else ""),
            release_id=live,
            detail={"allowed_from": allowed_from.isoformat(), "now": now.isoformat(),
                    "elsewhere": elsewhere},
        )
    return TakedownOutcome(live, allowed_from, now, served[0] if served else None, elsewhere)
