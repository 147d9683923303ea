"""What is live and what was live: the contract's ``status --json`` document, and its corte
object, which ``/_difusor/status.json`` serves too (serve/table.py) — one shape, built here.

Every time is stated in the site's zone, named by ``zona``: the ledger and the manifests keep
publication times in UTC and corte times as the authority stated them.
"""

from __future__ import annotations

from datetime import datetime, tzinfo
from typing import Any

from difusor.ledger import Ledger, ReleaseRow
from difusor.moments import in_zone
from difusor.publish.activate import live_release
from difusor.store.layout import StoreLayout

CAUSES = {"publish": "publicación", "rollback": "vuelta atrás", "recovery": "recuperación"}


def corte_doc(release_id: str, corte_time: datetime | str, published: datetime | str,
              package_sha256: str, zone: tzinfo) -> dict[str, Any]:
    """The contract's corte object."""
    return {
        "id": release_id,
        "fecha_hora": in_zone(corte_time, zone),
        "publicado": in_zone(published, zone),
        "paquete_sha256": package_sha256,
    }


def corte_row(row: ReleaseRow, zone: tzinfo) -> dict[str, Any]:
    return corte_doc(row.id, row.corte_time, row.created_at, row.package_sha256, zone)


def status(ledger: Ledger, layout: StoreLayout, zone: tzinfo, limit: int = 20) -> dict[str, Any]:
    live = live_release(layout)
    row = ledger.release(live) if live else None
    history = []
    for act in ledger.activations(limit):
        rel = ledger.release(act.release_id)
        if rel is None:
            continue
        history.append({**corte_row(rel, zone), "activado": in_zone(act.at, zone),
                        "causa": CAUSES.get(act.cause, act.cause)})
    return {"corte": corte_row(row, zone) if row else None, "historial": history,
            "zona": str(zone)}
