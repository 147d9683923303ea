"""What is live and what was live: the contract's ``status --json`` document."""

from __future__ import annotations

from typing import Any

from difusor.ledger import Ledger, ReleaseRow
from difusor.publish.activate import live_release
from difusor.store.layout import StoreLayout

CAUSES = {"publish": "publicación", "rollback": "vuelta atrás", "recovery": "recuperación"}


def corte_row(row: ReleaseRow) -> dict[str, Any]:
    return {
        "id": row.id,
        "fecha_hora": row.corte_time,
        "publicado": row.created_at,
        "paquete_sha256": row.package_sha256,
    }


def status(ledger: Ledger, layout: StoreLayout, limit: int = 20) -> dict[str, Any]:
    live = live_release(layout)
    row = ledger.release(live) if live else None
    history = []
    for act in ledger.activations(limit):
        rel = ledger.release(act.release_id)
        if rel is None:
            continue
        history.append({**corte_row(rel), "activado": act.at, "causa": CAUSES.get(act.cause,
                                                                                act.cause)})
    return {"corte": corte_row(row) if row else None, "historial": history}
