"""``build``: every figure of the memoria técnica in one plain dict (report/__init__.py states
its keys), what ``difusor report --json`` prints.

One source of truth: ``visitas`` is ``analytics.metrics.summary`` for the period (what
``analytics summary --json`` prints), ``disponibilidad`` is ``monitor.uptime.report`` (what
``uptime --json --from --to`` prints), ``incidentes`` are ``incident_sheet.incident_doc``
entries (what ``incidents --json`` prints) that overlap the period. The resumen copies their
figures; the corte chronology and the shield's record are read from the ledger here, because no
command computed them before.
"""

from __future__ import annotations

import platform
from collections import Counter
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from difusor import __version__
from difusor.config import Config
from difusor.ledger import Ledger
from difusor.moments import in_zone, storable
from difusor.report.chronology import chronology, percentiles
from difusor.report.findings import findings, recommendations
from difusor.report.integrity import integrity_doc
from difusor.report.security import security
from difusor.report.simulacros import simulacros

if TYPE_CHECKING:
    from difusor.report.background import Pending

VERSION = 1
LOGOS = ("logo.svg", "logo.png", "logo.jpg")  # beside difusor.toml, like memoria.md
METHODOLOGY = [
    ("Visitante", "Una clave (día, visitante): un resumen con llave de la sal secreta de ese "
     "día, la dirección IP y el user agent; la sal se descarta después, de modo que nadie puede "
     "volver a saber quién era. Los robots se cuentan aparte."),
    ("Visitantes únicos", "Pares distintos (día, visitante): en un periodo de un solo día son "
     "personas distintas; en uno de varios días son visitantes-día (quien volvió otro día "
     "cuenta otra vez), porque por privacidad no se puede reconocer a la misma persona de un "
     "día a otro. Varias personas tras una misma IP cuentan aparte si su navegador difiere."),
    ("Visitantes totales", "Cada llegada de un visitante, es decir, las visitas: quien vuelve "
     "tras más de 30 minutos sin actividad (o después de la medianoche) llega de nuevo."),
    ("Visita y tiempo en el sitio", "Las peticiones de un visitante separadas por no más de "
     "30 minutos; su duración va de la primera a la última petición (la consulta periódica de "
     "la página cuenta como actividad). Se dan el promedio y la mediana."),
    ("Páginas vistas y vistas", "Páginas HTML servidas más las vistas de la aplicación "
     "inferidas de los archivos JSON que cada una pide (p. ej. la vista de una casilla)."),
    ("Visitantes por 10 minutos y por hora", "Visitantes distintos dentro de cada intervalo, "
     "alineado a la hora local del sitio."),
    ("Geolocalización", "País y estado de la dirección IP según la base DB-IP City Lite "
     "(CC BY 4.0, https://db-ip.com); se guarda solo el lugar, no la dirección."),
    ("Disponibilidad", "Tiempo, no número de sondeos: cada sondeo vale hasta el siguiente (a lo "
     "más dos intervalos); disponible / (disponible + caído). El tiempo sin sondeos es "
     "desconocido y no se cuenta como disponible; el peor caso lo cuenta como caída. La meta "
     "es 99.9 % (convocatoria II.2.e). El sitio público está caído si lo está cualquiera de sus "
     "accesos públicos, y un acceso solo si ningún punto de sondeo lo vio en línea."),
    ("Retraso de publicación", "De la recepción del paquete a su activación en línea, y a la "
     "verificación en el borde de la CDN (los bytes nuevos servidos); p50, p95 y máximo."),
    ("Ataques", "Periodos en que el escudo detectó y contuvo un ataque (modo ataque, bloqueos "
     "y límites por fuente), con su pico de peticiones por segundo y las peticiones rechazadas."),
    ("Incidentes", "Los registrados por el monitor y el escudo, y los que el operador registró "
     "con «difusor incident new»; cada uno con fecha, hora, duración, causa raíz, impacto y "
     "medidas (convocatoria II.4.a). Se incluyen los que se traslapan con el periodo."),
]


def build(cfg: Config, ledger: Ledger, start: datetime, end: datetime, *, draft: bool = False,
          now: datetime | None = None, origin: str = "opciones",
          full_visits: dict[str, Any] | None = None, root: Config | None = None,
          from_ledger: Pending | None = None) -> dict[str, Any]:
    """The document dict for ``[start, end)``; ``now`` bounds what was measured (default: the
    clock), ``origin`` says where the period came from (report/period.py). ``full_visits``: the
    period's ``summary(full=True)`` when the caller has it for the annexes (computed once).
    ``root``: the whole file when ``cfg`` is one of its sites, for the test site's simulacros.
    ``from_ledger``: ``read_ledger``'s figures being read in a child process meanwhile
    (report/background.py), else read here."""
    from difusor.analytics.metrics import summary, top_only

    zone = ZoneInfo(cfg.site.timezone)
    now = now or datetime.now(UTC)
    visits = top_only(full_visits) if full_visits is not None else summary(cfg, start, end)
    visits["series_hora"] = visits["series_hour"]  # the contract's name, same points
    read = from_ledger.result()["figuras"] if from_ledger is not None else \
        ledger_figures(cfg, ledger, start, end, now, root)
    doc: dict[str, Any] = {
        "version": VERSION,
        "generado": in_zone(min(end, max(start, now)), zone),
        "borrador": draft,
        "periodo": {"desde": in_zone(start, zone), "hasta": in_zone(end, zone),
                    "zona": zone.key, "origen": origin},
        "sitio": site(cfg),
        "arquitectura": {"componentes": components(cfg)},
        "cronologia": read["cronologia"],
        "simulacros": read["simulacros"],
        "revision": read["revision"],
        "integridad": read["integridad"],
        "disponibilidad": read["disponibilidad"],
        "visitas": visits,
        "seguridad": security(cfg, ledger, start, end, read["incidentes"]),
        "incidentes": read["incidentes"],
        "metodologia": [{"termino": t, "definicion": d} for t, d in METHODOLOGY],
        "texto_operador": _operator_text(cfg),
        "anexos": [],
    }
    doc["resumen"] = summary_figures(doc)
    doc["hallazgos"] = findings(doc)
    doc["recomendaciones"] = recommendations(doc, doc["hallazgos"])
    return doc


def ledger_figures(cfg: Config, ledger: Ledger, start: datetime, end: datetime, now: datetime,
                   root: Config | None) -> dict[str, Any]:
    """What the ledger alone says (the test site's too): availability, incidents, chronology,
    simulacros, the last check and the chain of cortes — none of it needs the visits."""
    from difusor.monitor.incident_sheet import incident_doc
    from difusor.monitor.uptime import report

    incidents = [incident_doc(row, now) for row in
                 ledger.incidents(since=storable(start), until=storable(end), limit=100_000)]
    incidents.sort(key=lambda i: (i["inicio"], i["id"]))
    return {
        "cronologia": chronology(cfg, ledger, start, end),
        "simulacros": simulacros(root, cfg, now) if root is not None else [],
        "revision": compliance_check(ledger, end),
        "integridad": integrity_doc(cfg, ledger, start, end),
        "disponibilidad": report(cfg, ledger, start=start, end=end, now=now).to_dict(),
        "incidentes": incidents,
    }


def read_ledger(cfg: Config, start: datetime, end: datetime, now: datetime,
                root: Config | None, tables: bool) -> dict[str, Any]:
    """``ledger_figures`` (and, for the files, ``tables.ledger_tables``) on a connection of its
    own: what ``background.in_child`` runs while the visits are summarised."""
    from difusor.paths import StateLayout
    from difusor.report.tables import ledger_tables

    with Ledger(StateLayout(cfg.state_dir).ledger) as ledger:
        return {"figuras": ledger_figures(cfg, ledger, start, end, now, root),
                "tablas": ledger_tables(cfg, ledger, start, end) if tables else None}


def summary_figures(doc: dict[str, Any]) -> dict[str, Any]:
    """``resumen``: copied from the sections' figures, never measured again."""
    site, v, cortes = doc["disponibilidad"]["sitio_publico"], doc["visitas"], doc["cronologia"]
    severities = Counter(i["severidad"] for i in doc["incidentes"])
    return {
        "disponibilidad_pct": site["disponibilidad_pct"],
        "disponibilidad_peor_caso_pct": site["disponibilidad_peor_caso_pct"],
        "desconocido_s": site["desconocido_s"],
        "cortes_recibidos": cortes["paquetes_recibidos"],
        "cortes_publicados": sum(1 for c in cortes["cortes"] if c["en_linea"]),
        "paquetes_rechazados": len(cortes["rechazados"]),
        "retraso_publicacion_s": percentiles(c["retraso_s"] for c in cortes["cortes"]
                                             if c["retraso_s"] is not None),
        "retraso_borde_s": percentiles(c["retraso_borde_s"] for c in cortes["cortes"]
                                       if c["retraso_borde_s"] is not None),
        "visitantes_totales": v["total_visitors"],
        "visitantes_unicos": v["unique_visitors"],
        "paginas_vistas": v["pageviews"],
        "vistas": v["views"],
        "tiempo_promedio_s": v["avg_visit_seconds"],
        "tiempo_mediana_s": v["median_visit_seconds"],
        "incidentes_por_severidad": dict(sorted(severities.items())),
        "ataques_contenidos": sum(1 for a in doc["seguridad"]["ataques"] if a["contenido"]),
    }


_STATUS = {"ok": "cumple", "fail": "no cumple", "unverifiable": "no verificable desde el equipo"}


def compliance_check(ledger: Ledger, end: datetime) -> dict[str, Any] | None:
    """The last ``difusor check`` recorded before ``end``, item by item, as it was measured."""
    until = storable(end)
    row = next((r for r in ledger.events("check", 500) if r["at"] < until), None)
    if row is None or not row["detail"]:
        return None
    detail = row["detail"]
    return {"momento": row["at"], "cumple": detail.get("passed"),
            "puntos": [{"estado": _STATUS.get(i["status"], i["status"]), "inciso": i["clause"],
                        "requisito": i["title"], "evidencia": i["evidence"]}
                       for i in detail.get("items", [])]}


def site(cfg: Config) -> dict[str, Any]:
    urls = [cfg.site.url, *(t.url for t in cfg.monitor.targets if t.public)]
    logo = next((Path(cfg.root) / n for n in LOGOS if (Path(cfg.root) / n).is_file()), None)
    return {"nombre": cfg.site.name, "autoridad": cfg.operation.authority or None,
            "eleccion": cfg.operation.election or None, "url": cfg.site.url,
            "urls": list(dict.fromkeys(str(u) for u in urls)),
            "logo": str(logo) if logo else None,
            "personal": [{"nombre": p.name, "rol": p.role, "contacto": p.contact() or None}
                         for p in cfg.personal]}


def components(cfg: Config) -> list[dict[str, Any]]:
    """What served the operation, from the configuration, with the versions installed."""
    def version(dist: str) -> str | None:
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            return None

    out = [{"nombre": "difusor", "tipo": "publicador", "detalle": "recibe, verifica, publica "
            f"y sirve cada corte; Python {platform.python_version()}", "version": __version__},
           {"nombre": "servidor web embebido", "tipo": "origen",
            "detalle": f"granian en {cfg.web.listen}", "version": version("granian")}]
    if cfg.sftp.enabled:
        out.append({"nombre": "SFTP", "tipo": "recepción", "detalle": cfg.sftp.listen,
                    "version": version("asyncssh")})
    if cfg.pull.url:
        out.append({"nombre": "descarga HTTPS", "tipo": "recepción", "detalle": cfg.pull.url,
                    "version": None})
    for o in cfg.origins:
        out.append({"nombre": o.name, "tipo": "origen", "detalle": o.kind, "version": None})
    for c in cfg.cdn:
        out.append({"nombre": c.name, "tipo": "CDN", "detalle": c.kind, "version": None})
    for t in cfg.monitor.targets:
        out.append({"nombre": t.name, "tipo": "objetivo del monitor", "detalle": str(t.url),
                    "version": None})
    out.append({"nombre": "analítica", "tipo": "visitas", "detalle": "DuckDB",
                "version": version("duckdb")})
    if cfg.shield.enabled:
        out.append({"nombre": "escudo", "tipo": "seguridad", "detalle": "detector por ventanas "
                    "y modo ataque", "version": __version__})
    return out


def _operator_text(cfg: Config) -> dict[str, Any]:
    try:
        from difusor.report.operator_text import operator_status
    except ImportError:  # the render side is not there yet: the same place, stated here
        path = Path(cfg.root) / "memoria.md"
        return {"archivo": str(path), "existe": path.is_file()}
    return operator_status(cfg)
