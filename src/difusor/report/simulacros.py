"""The simulacros the difusor took part in (convocatoria I.11), as its test site recorded them.

The memoria says «participó en los simulacros del …» with evidence: for each
``[[operation.simulacros]]`` window, what the test site of the same authority published in it
(cortes, publication lag), refused, how available it was and its incidents, and when
``difusor simulacro reset`` emptied it. The test site's ledger keeps all of it after the reset.
Without a calendar, the test site's whole record is one entry «sin calendario».
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from difusor.config import Config
from difusor.ledger import Ledger
from difusor.moments import in_zone, storable, stored
from difusor.paths import StateLayout
from difusor.report.chronology import chronology, events, percentiles
from difusor.sites.catalog import route


def simulacros(root: Config, site: Config, now: datetime) -> list[dict[str, Any]]:
    """``simulacros`` of the document: [{nombre, sitio, url, desde, hasta, cortes_publicados,
    primer_corte, ultimo_corte, paquetes_rechazados, retraso_publicacion_s, disponibilidad_pct,
    incidentes, vaciado}]."""
    entry = root.sites.get(site.site_name)
    if entry is None:
        return []
    name, _why = route(root, entry.feed, "simulacro")  # the same authority's test site
    if not name:
        return []
    cfg = root.for_site(name)
    path = StateLayout(cfg.state_dir).ledger
    if not path.exists():
        return []
    zone = ZoneInfo(cfg.site.timezone)
    with Ledger(path) as ledger:
        windows = [(w.name or f"Simulacro {n}", stored(w.start), stored(w.end))
                   for n, w in enumerate(root.operation.simulacros, 1)]
        if not windows:
            first, last = ledger.probes_span()
            received = [stored(p["received_at"]) for p in ledger.packages_since(
                "0001-01-01T00:00:00+00:00", limit=1_000_000)]
            moments = [stored(m) for m in (first, last) if m] + received
            if not moments:
                return []
            windows = [("sin calendario", min(moments), max(moments))]
        return [_one(cfg, ledger, label, start, end, now, zone) for label, start, end in windows]


def _one(cfg: Config, ledger: Ledger, label: str, start: datetime, end: datetime,
         now: datetime, zone: ZoneInfo) -> dict[str, Any]:
    from difusor.monitor.uptime import report

    cron = chronology(cfg, ledger, start, end)
    live = [c for c in cron["cortes"] if c["en_linea"]]
    site = report(cfg, ledger, start=start, end=min(end, max(start, now)), now=now).site
    ratio = site.ratio
    resets = events(ledger, ("simulacro_reset",), start, now)
    return {
        "nombre": label, "sitio": cfg.site_name, "url": cfg.site.url,
        "desde": in_zone(start, zone), "hasta": in_zone(end, zone),
        "cortes_publicados": len(live),
        "primer_corte": live[0]["corte"] if live else None,
        "ultimo_corte": live[-1]["corte"] if live else None,
        "paquetes_rechazados": len(cron["rechazados"]),
        "retraso_publicacion_s": percentiles(c["retraso_s"] for c in live
                                             if c["retraso_s"] is not None),
        "disponibilidad_pct": None if ratio is None else round(ratio * 100, 4),
        "incidentes": len(ledger.incidents(since=storable(start), until=storable(end),
                                           limit=100_000)),
        "vaciado": in_zone(stored(resets[0]["at"]), zone) if resets else None,
    }
