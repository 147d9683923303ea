"""The annexes' full data: ``annex_tables`` gives each CSV (file stem → header, rows); the render
side (``annexes.py``) writes them and attaches them to the PDF.

The document states the top rows; these are every row: the ranked lists come from the same
``analytics.metrics.summary`` asked for all of its rows (``full=True``), the cortes and
incidents from the document itself, probes and shield decisions straight from the ledger
(``ledger_tables``, read in a child process while the visits are summarised).
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from difusor.config import Config
from difusor.ledger import Ledger
from difusor.moments import in_zone, storable
from difusor.report.chronology import events

Table = tuple[list[str], list[tuple[Any, ...]]]


def full_summary(cfg: Config, start: datetime, end: datetime) -> dict[str, Any]:
    """The period's visits with every row of the ranked lists (document and annexes)."""
    from difusor.analytics.metrics import summary

    return summary(cfg, start, end, full=True)


def ledger_tables(cfg: Config, ledger: Ledger, start: datetime, end: datetime
                  ) -> dict[str, Table]:
    """The annexes read straight from the ledger (probes per hour, shield decisions): they need
    neither the document nor the visits, so they are read while the visits are summarised
    (``document.read_ledger``)."""
    zone = ZoneInfo(cfg.site.timezone)
    return {"sondeos_por_hora": _probes(ledger, start, end, zone),
            "decisiones_escudo": _shield(ledger, start, end, zone)}


def annex_tables(cfg: Config, ledger: Ledger, start: datetime, end: datetime,
                 doc: dict[str, Any], full: dict[str, Any] | None = None,
                 from_ledger: dict[str, Table] | None = None) -> dict[str, Table]:
    """``full``: the period's ``full_summary`` if the caller already has it; ``from_ledger``:
    its ``ledger_tables`` likewise."""
    full = full if full is not None else full_summary(cfg, start, end)
    from_ledger = from_ledger if from_ledger is not None else ledger_tables(cfg, ledger, start,
                                                                            end)
    geo = full["geo"]
    return {
        "cortes": _cortes(doc),
        "incidentes": _incidents(doc),
        "sondeos_por_hora": from_ledger["sondeos_por_hora"],
        "visitas_10min": (["inicio", "visitantes", "paginas_vistas", "peticiones"],
                          [(p["t"], p["visitors"], p["pageviews"], p["hits"])
                           for p in full["series_10min"]]),
        "paginas": (["ruta", "paginas_vistas", "visitantes"],
                    [(r["path"], r["pageviews"], r["visitors"]) for r in full["top_pages"]]),
        "vistas": (["vista", "vistas", "visitantes"],
                   [(r["view"], r["views"], r["visitors"]) for r in full["top_views"]]),
        "estados": (["estado", "visitantes"], [(r["state"], r["visitors"]) for r in geo["state"]]),
        "paises": (["pais", "visitantes"], [(r["country"], r["visitors"]) for r in geo["country"]]),
        "dispositivos": (["dispositivo", "visitantes"],
                         [(r["device"], r["visitors"]) for r in full["devices"]]),
        "referentes": (["sitio_de_origen", "visitas"],
                       [(r["host"], r["visits"]) for r in full["referrers"]]),
        "decisiones_escudo": from_ledger["decisiones_escudo"],
    }


def _cortes(doc: dict[str, Any]) -> Table:
    keys = ["corte", "hora_autoridad", "recibido", "en_linea", "verificado_borde", "retraso_s",
            "retraso_borde_s", "archivos", "cambiados", "sha256", "verificaciones"]
    return keys, [tuple(c[k] for k in keys) for c in doc["cronologia"]["cortes"]]


def _incidents(doc: dict[str, Any]) -> Table:
    header = ["id", "titulo", "tipo", "categoria", "severidad", "estado", "objetivo", "inicio",
              "fin", "duracion_s", "causa", "causa_sugerida", "impacto", "medidas", "deteccion"]
    rows = []
    for i in doc["incidentes"]:
        impact = i["impacto"]
        measures = " | ".join(f"{m['en'] or ''} [{m['por']}] {m['texto']}" for m in i["medidas"])
        rows.append((i["id"], i.get("titulo"), i["tipo_texto"], i.get("categoria"),
                     i["severidad_texto"], i["estado_texto"], i["objetivo"], i["inicio"],
                     i["fin"], i["duracion_s"], i["causa"], i["causa_sugerida"],
                     impact if isinstance(impact, str) or impact is None
                     else json.dumps(impact, ensure_ascii=False, sort_keys=True),
                     measures, i.get("deteccion")))
    return header, rows


def _probes(ledger: Ledger, start: datetime, end: datetime, zone: ZoneInfo) -> Table:
    """Per hour, target and vantage: probes, successes, failures by kind, latency. Counted by
    the ledger per UTC hour; each hour is labelled with its start in the site's zone (Mexico's
    offsets are whole hours, so a UTC hour is a local hour)."""
    rows = []
    for hour, target, vantage, n, ok, avg, top, failures in ledger.probes_per_hour(
            storable(start), storable(end)):
        begins = datetime.fromisoformat(hour + ":00:00+00:00").astimezone(zone).isoformat()
        rows.append((begins, target, vantage, n, ok, n - ok, failures,
                     round(avg, 1) if avg is not None else None,
                     round(top, 1) if top is not None else None))
    return (["hora", "objetivo", "punto", "sondeos", "correctos", "fallidos", "fallas",
             "latencia_promedio_ms", "latencia_max_ms"], rows)


def _shield(ledger: Ledger, start: datetime, end: datetime, zone: ZoneInfo) -> Table:
    rows = []
    for e in events(ledger, ("shield", "attack", "attack_over"), start, end):
        d = e.get("detail") or {}
        expiry = d.get("expiry")
        rows.append((in_zone(e["at"], zone), d.get("action") or e["kind"], d.get("key"),
                     d.get("key_kind"), d.get("reason"), d.get("rate"),
                     in_zone(datetime.fromtimestamp(expiry, ZoneInfo("UTC")), zone)
                     if isinstance(expiry, (int, float)) else None,
                     d.get("by") or "auto", e.get("message")))
    return (["momento", "accion", "clave", "tipo_de_clave", "motivo", "limite_rps", "hasta",
             "por", "mensaje"], rows)
