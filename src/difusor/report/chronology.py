"""The night corte by corte, from the ledger: when each package arrived, went live and was seen
at the edge; what was refused; the milestones.

Publication lag is measured from the moment the package was received (``packages.received_at``)
to its release's first activation (``retraso_s``, *en línea*) and to the first ``edge_verified``
event of that release (``retraso_borde_s``, the CDN served the new bytes). A corte belongs to
the period when its package was received in it.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from difusor.config import Config
from difusor.ledger import Ledger
from difusor.moments import in_zone, storable, stored

PAGE = 10_000
_CHANGED = re.compile(r"\((\d+) archivos nuevos o cambiados\)")  # publisher's activation line


def events(ledger: Ledger, kinds: tuple[str, ...], start: datetime, end: datetime
           ) -> list[dict[str, Any]]:
    """Every event of ``kinds`` in ``[start, end)``, in order (paged: a month may hold many)."""
    rows: list[dict[str, Any]] = []
    after = 0
    while True:
        page = ledger.events_since(after_id=after, kinds=kinds, since=storable(start), until=storable(end),
                                   limit=PAGE)
        rows += page
        if len(page) < PAGE:
            return rows
        after = page[-1]["id"]


def percentiles(values: Iterable[float]) -> dict[str, float | None]:
    """p50, p95 (nearest rank) and max; None each without values."""
    data = sorted(values)
    if not data:
        return {"p50": None, "p95": None, "max": None}

    def rank(p: float) -> float:
        return round(data[max(0, math.ceil(p * len(data)) - 1)], 3)

    return {"p50": rank(0.50), "p95": rank(0.95), "max": round(data[-1], 3)}


def chronology(cfg: Config, ledger: Ledger, start: datetime, end: datetime) -> dict[str, Any]:
    """``cronologia`` of the document (see report/__init__.py)."""
    zone = ZoneInfo(cfg.site.timezone)
    packages = [p for p in ledger.packages_since(storable(start), limit=1_000_000)
                if stored(p["received_at"]) < end]
    by_package = {p["id"]: p for p in packages}
    first_live: dict[str, dict[str, Any]] = {}
    for e in events(ledger, ("activated",), start, end + timedelta(days=1)):
        first_live.setdefault(e["release_id"], e)
    edge: dict[str, str] = {}
    for e in events(ledger, ("edge_verified",), start, end + timedelta(days=1)):
        edge.setdefault(e["release_id"], e["at"])
    checks = {e["package_id"]: (e.get("detail") or {}).get("checksums")
              for e in events(ledger, ("verified",), start, end)}
    cortes = []
    for rel in ledger.releases():
        pkg = by_package.get(rel.package_id) if rel.package_id is not None else None
        if pkg is None:
            continue  # received outside the period (or a rollback's re-activation)
        cortes.append(_corte(rel, pkg, first_live.get(rel.id), edge.get(rel.id),
                             checks.get(pkg["id"]), zone))
    cortes.sort(key=lambda c: (c["recibido"], c["corte"]))
    refused = [{"paquete": p["name"], "recibido": in_zone(p["received_at"], zone),
                "codigo": p.get("reason_code"), "motivo": p.get("reason")}
               for p in packages if p["state"] == "refused"]
    return {"hitos": _milestones(cfg, ledger, cortes, start, end, zone), "cortes": cortes,
            "rechazados": refused, "paquetes_recibidos": len(packages)}


def _corte(rel: Any, pkg: dict[str, Any], live: dict[str, Any] | None, edge_at: str | None,
           checksums: Any, zone: ZoneInfo) -> dict[str, Any]:
    received = stored(pkg["received_at"])
    live_at = stored(live["at"]) if live else None
    edge_when = stored(edge_at) if edge_at else None
    changed = _CHANGED.search((live or {}).get("message") or "")
    return {
        "corte": rel.id,
        "hora_autoridad": in_zone(rel.corte_time, zone),
        "recibido": in_zone(received, zone),
        "en_linea": in_zone(live_at, zone) if live_at else None,
        "verificado_borde": in_zone(edge_when, zone) if edge_when else None,
        "retraso_s": _seconds(received, live_at),
        "retraso_borde_s": _seconds(received, edge_when),
        "archivos": rel.files,
        "cambiados": int(changed[1]) if changed else None,
        "sha256": rel.package_sha256,
        "verificaciones": len(checksums) if isinstance(checksums, list) else checksums,
        "tipo": rel.kind,
    }


def _seconds(a: datetime, b: datetime | None) -> float | None:
    return None if b is None else round((b - a).total_seconds(), 3)


def _milestones(cfg: Config, ledger: Ledger, cortes: list[dict[str, Any]], start: datetime,
                end: datetime, zone: ZoneInfo) -> list[dict[str, str]]:
    out: list[tuple[datetime, str]] = []
    live = [c for c in cortes if c["en_linea"]]
    if cortes:
        out.append((datetime.fromisoformat(cortes[0]["recibido"]),
                    f"apertura: primer paquete recibido (corte {cortes[0]['corte']})"))
    if live:
        out.append((datetime.fromisoformat(live[0]["en_linea"]),
                    f"primer corte en línea ({live[0]['corte']})"))
        out.append((datetime.fromisoformat(live[-1]["en_linea"]),
                    f"último corte en línea ({live[-1]['corte']})"))
    for e in events(ledger, ("run_started", "takedown", "console_action"), start, end):
        if e["kind"] == "console_action":  # the operator's hand, from the console (with the user)
            text = e["message"]
        else:
            text = "inicio de «difusor run»" if e["kind"] == "run_started" else "retiro del sitio"
        out.append((stored(e["at"]), text))
    if cfg.operation.end:
        closing = datetime.fromisoformat(cfg.operation.end)
        keep = closing + timedelta(hours=cfg.operation.keep_hours)
        out.append((closing, "cierre de la operación ([operation] end)"))
        out.append((keep, f"fin de la permanencia en línea ({cfg.operation.keep_hours:g} h "
                          "después del cierre, convocatoria I.2)"))
    out = [(w, t) for w, t in out if start <= w <= end]
    return [{"momento": in_zone(w, zone), "texto": t} for w, t in sorted(out, key=lambda x: x[0])]
