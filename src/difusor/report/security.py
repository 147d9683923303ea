"""Attacks detected and contained, bans and throttles, attack-mode periods, and the legitimate
traffic the site served meanwhile — read from what the shield left: its ``shield`` events (one
per decision), its ``attack`` incidents (with their evidence: peak requests/s, sources, requests
refused) and the access log (``analytics.metrics.answered_during``)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from difusor.config import Config
from difusor.ledger import Ledger
from difusor.moments import in_zone, stored
from difusor.report.chronology import events

BLOCKS = {"ban": "bloqueo", "throttle": "límite de velocidad"}


def security(cfg: Config, ledger: Ledger, start: datetime, end: datetime,
             incidents: list[dict[str, Any]]) -> dict[str, Any]:
    """``seguridad`` of the document; ``incidents`` are the period's ``incidents --json``
    entries (the attacks among them are the shield's own incidents)."""
    from difusor.analytics.metrics import answered_during

    zone = ZoneInfo(cfg.site.timezone)
    attacks = [_attack(doc, end, zone) for doc in incidents if doc["tipo"] == "attack"]
    attacks.sort(key=lambda a: a["inicio"])
    blocks, modes, open_since = [], [], None
    for e in events(ledger, ("shield",), start, end):
        d = e.get("detail") or {}
        action = d.get("action")
        if action in BLOCKS:
            until = d.get("expiry")
            blocks.append({"clave": d.get("key"), "tipo": BLOCKS[action],
                           "motivo": d.get("reason") or "", "desde": in_zone(e["at"], zone),
                           "hasta": _epoch(until, zone), "por": d.get("by") or "auto"})
        elif action == "attack_mode_on" and open_since is None:
            open_since = stored(e["at"])
        elif action == "attack_mode_off" and open_since is not None:
            modes.append((open_since, stored(e["at"])))
            open_since = None
    if open_since is not None:
        modes.append((open_since, end))
    windows = _windows(attacks, modes)
    answered = answered_during(cfg, windows)
    return {
        "ataques": attacks,
        "bloqueos": blocks,
        "modo_ataque": [{"inicio": in_zone(a, zone), "fin": in_zone(b, zone)} for a, b in modes],
        "legitimas_durante_ataques": answered["served"],
        "rechazadas_durante_ataques": answered["refused"],
        "segundos_bajo_ataque": round(sum((b - a).total_seconds() for a, b in windows), 3),
    }


def _attack(doc: dict[str, Any], end: datetime, zone: ZoneInfo) -> dict[str, Any]:
    detail = doc.get("detalle") or {}
    finished = doc.get("fin")
    return {
        "incidente": doc["id"],
        "inicio": in_zone(doc["inicio"], zone),
        "fin": in_zone(finished, zone) if finished else None,
        "duracion_s": doc["duracion_s"],
        "pico_rps": detail.get("peak_rps"),
        "fuentes": [{"clave": s.get("key"), "peticiones": s.get("requests")}
                    for s in detail.get("sources") or []],
        "rechazadas": detail.get("requests_refused"),
        "contenido": not doc["en_curso"],
    }


def _windows(attacks: list[dict[str, Any]], modes: list[tuple[datetime, datetime]]
             ) -> list[tuple[datetime, datetime]]:
    """The attacks and attack-mode periods as disjoint intervals (overlaps merged)."""
    spans = list(modes)
    for a in attacks:
        begin = datetime.fromisoformat(a["inicio"])
        finish = datetime.fromisoformat(a["fin"]) if a["fin"] else begin
        spans.append((begin, max(begin, finish)))
    merged: list[tuple[datetime, datetime]] = []
    for a, b in sorted(spans):
        if merged and a <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], b))
        elif b > a:
            merged.append((a, b))
    return merged


def _epoch(value: Any, zone: ZoneInfo) -> str | None:
    """A decision's expiry (seconds since the epoch) in the site's zone."""
    if not isinstance(value, (int, float)):
        return None
    return in_zone(datetime.fromtimestamp(value, UTC), zone)
