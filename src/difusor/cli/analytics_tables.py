"""``difusor analytics summary`` as the operator reads it: tables, in Spanish.

Paths, views, beacon pages, referrers, agents' families and source names come from the logs, so
from anyone: every value is escaped before rich reads it (``[/x]`` is text, not markup).
"""

from __future__ import annotations

from datetime import date, tzinfo
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from difusor.analytics.metrics import TOP
from difusor.moments import duration, printed, stored


def size(nbytes: int) -> str:
    value = float(nbytes)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:,.0f} {unit}" if unit == "B" else f"{value:,.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def number(n: int) -> str:
    return f"{n:,}".replace(",", " ")  # the thin-space style of Mexican official tables


def share(part: int, whole: int) -> str:
    return f"{100 * part / whole:.1f} %" if whole else "-"


def _table(title: str, headers: list[str], rows: list[list[str]]) -> Table:
    table = Table(title=title, title_justify="left", show_edge=False, pad_edge=False)
    for i, header in enumerate(headers):
        table.add_column(header, justify="left" if i == 0 else "right",
                         overflow="fold", max_width=60 if i == 0 else None)
    for row in rows:
        table.add_row(*(escape(cell) for cell in row))
    return table


def _ranking(data: list[dict[str, Any]], key: str, count: str, total: int,
             unknown: str = "(desconocido)") -> list[list[str]]:
    return [[str(row[key]) if row[key] is not None else unknown, number(row[count]),
             share(row[count], total)] for row in data]


def moment(iso: str | None, zone: tzinfo | None) -> str:
    """A summary's ISO moment as the CLI prints dates (its own offset when no zone is given)."""
    if iso is None:
        return "-"
    when = stored(iso)
    return printed(when, zone or when.tzinfo)


def day(iso: str) -> str:
    return date.fromisoformat(iso).strftime("%d/%m/%Y")


def print_summary(data: dict[str, Any], out: Console, err: Console,
                  zone: tzinfo | None = None) -> None:
    who = "incluidos los robots" if data["include_bots"] else "sin robots"
    basis = ("registros del borde (CDN)" if data["basis"] == "borde"
             else "registros del origen")
    out.print(f"[bold]Visitas del {moment(data['from'], zone)} al {moment(data['to'], zone)}"
              f"[/bold] ({who}; {basis})")
    if not data["hits"]:
        err.print("No hay visitas registradas en ese periodo; ¿ya se ingirieron los registros? "
                  "(difusor analytics ingest)")
    visitors = data["unique_visitors"]
    out.print(_table("Resumen", ["Métrica", "Valor"], [
        ["Visitantes únicos (visitante-día)", number(visitors)],
        ["Visitas", number(data["visits"])],
        ["Páginas vistas", number(data["pageviews"])],
        ["  de ellas, vistas de la aplicación", number(data["views"])],
        ["Tiempo promedio en el sitio", duration(data["avg_visit_seconds"])],
        ["Tiempo mediano en el sitio", duration(data["median_visit_seconds"])],
        ["Peticiones", number(data["hits"])],
        ["Peticiones de robots (aparte)", number(data["bot_hits"])],
        ["Datos servidos", size(data["bytes"])],
    ]))
    if data["days"]:
        out.print(_table("Por día", ["Día", "Visitantes únicos", "Visitas", "Páginas vistas"],
                         [[day(d["day"]), number(d["visitors"]), number(d["visits"]),
                           number(d["pageviews"])] for d in data["days"]]))
    points = data["series"]["points"]
    if points:
        peak = max(points, key=lambda p: (p["visitors"], p["hits"]))
        out.print(f"Momento de más visitantes (cada {data['series']['granularity']}): "
                  f"{moment(peak['t'], zone)}, {number(peak['visitors'])} visitantes, "
                  f"{number(peak['hits'])} peticiones")
    out.print(_table(f"Páginas más consultadas (hasta {TOP})", ["Página", "Vistas", "Visitantes"],
                     [[p["path"], number(p["pageviews"]), number(p["visitors"])]
                      for p in data["top_pages"]]))
    out.print(_table(f"Vistas más consultadas (hasta {TOP})", ["Vista", "Vistas", "Visitantes"],
                     [[v["view"], number(v["views"]), number(v["visitors"])]
                      for v in data["top_views"]]))
    geo = data["geo"]
    out.print(_table("Entidades (México)", ["Entidad", "Visitantes", "%"],
                     _ranking(geo["state"], "state", "visitors", visitors)))
    out.print(_table("Países", ["País", "Visitantes", "%"],
                     _ranking(geo["country"], "country", "visitors", visitors)))
    out.print(_table("Navegadores", ["Navegador", "Visitantes", "%"],
                     _ranking(data["browsers"], "browser", "visitors", visitors)))
    out.print(_table("Dispositivos", ["Dispositivo", "Visitantes", "%"],
                     _ranking(data["devices"], "device", "visitors", visitors)))
    out.print(_table("Referencias (sitios de origen de las visitas)", ["Sitio", "Visitas", "%"],
                     _ranking(data["referrers"], "host", "visits", data["visits"])))
    beacon = data["beacon"]
    if beacon["views"]:
        out.print(_table("Portal del difusor (baliza)", ["Página", "Vistas", "Tiempo visible"],
                         [[p["page"], number(p["views"]), duration(p["avg_visible_seconds"])]
                          for p in beacon["pages"]]))
    if data["sources"]:
        out.print(_table("Fuentes", ["Registro", "Tipo", "Peticiones", "Datos", "Se usa"],
                         [[s["source"], "borde" if s["edge"] else "origen", number(s["hits"]),
                           size(s["bytes"]), "sí" if s["used"] else "no (el borde manda)"]
                          for s in data["sources"]]))
