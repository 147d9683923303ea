"""The annexes' full data: ``annex_tables`` gives each CSV (file stem → header, rows); the render
side (``annexes.py``) writes them and attaches them to the PDF.

The document states the top rows; these are every row: the ranked lists come from the same
``analytics.metrics.summary`` asked for all of its rows (``full=True``), the cortes and
incidents from the document itself, probes and shield decisions straight from the ledger.
"""

from __future__ import annotations

import json
from collections import defaultdict
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from difusor.config import Config
from difusor.ledger import Ledger
from difusor.moments import in_zone, stored
from difusor.report.chronology import events, iso

Table = tuple[list[str], list[tuple[Any, ...]]]


def annex_tables(cfg: Config, ledger: Ledger, start: datetime, end: datetime,
                 doc: dict[str, Any]) -> dict[str, Table]:
    from difusor.analytics.metrics import summary

    zone = ZoneInfo(cfg.site.timezone)
    full = summary(cfg, start, end, full=True)
    geo = full["geo"]
    return {
        "cortes": _cortes(doc),
        "incidentes": _incidents(doc),
        "sondeos_por_hora": _probes(ledger, start, end, zone),
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
        "decisiones_escudo": _shield(ledger, start, end, zone),
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
    """Per local hour, target and vantage: probes, successes, failures by kind, latency."""
    hours: dict[tuple[str, str, str], dict[str, Any]] = defaultdict(
        lambda: {"n": 0, "ok": 0, "failures": defaultdict(int), "ms": []})
    for row in ledger.probes(since=iso(start), until=iso(end)):
        hour = stored(row["at"]).astimezone(zone).replace(minute=0, second=0, microsecond=0)
        cell = hours[(hour.isoformat(), row["target"], row["vantage"])]
        cell["n"] += 1
        cell["ok"] += int(bool(row["ok"]))
        if row["failure"]:
            cell["failures"][row["failure"]] += 1
        if row["latency_ms"] is not None:
            cell["ms"].append(float(row["latency_ms"]))
    rows = []
    for (hour, target, vantage), c in sorted(hours.items()):
        ms = c["ms"]
        rows.append((hour, target, vantage, c["n"], c["ok"], c["n"] - c["ok"],
                     "; ".join(f"{k}: {n}" for k, n in sorted(c["failures"].items())),
                     round(sum(ms) / len(ms), 1) if ms else None,
                     round(max(ms), 1) if ms else None))
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
