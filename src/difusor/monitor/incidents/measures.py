"""The measures the system itself took during an incident, from the ledger (``by: auto``)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from difusor.ledger import Ledger
from difusor.moments import storable, stored

_MEASURE_EVENTS = ("service_restarted", "origin_out", "origin_back", "origin_restored", "purge",
                   "activated", "alert_sent")


def automatic_measures(ledger: Ledger, incident: dict[str, Any], start: str, end: str, *,
                       margin: float) -> list[dict[str, Any]]:
    """What the system itself did in the window, from the ledger (``by: auto``)."""
    since = storable(stored(start) - timedelta(seconds=margin))
    until = storable(stored(end) + timedelta(seconds=margin))
    out: list[dict[str, Any]] = []
    for event in ledger.events_since(kinds=_MEASURE_EVENTS, since=since, until=until):
        detail = event["detail"] or {}
        kind = event["kind"]
        if kind == "alert_sent":
            if detail.get("incident") != incident["id"]:
                continue
            text = event["message"]
        elif kind == "activated":
            cause = detail.get("cause")
            if cause == "rollback":
                text = f"vuelta atrás: {event['message']}"
            elif cause == "recovery":
                text = f"recuperación automática: {event['message']}"
            elif incident["kind"] in ("stale", "authority_delay", "integrity"):
                text = f"publicación: {event['message']}"
            else:
                continue
        elif kind == "service_restarted":
            text = f"reinicio automático: {event['message']}"
        else:
            text = event["message"]
        out.append({"at": event["at"], "by": "auto", "text": text, "event": event["id"]})
    if incident["kind"] == "refused":
        out.append({"at": incident["started_at"], "by": "auto",
                    "text": "el paquete quedó en cuarentena; siguió en línea el corte anterior"})
    return out
