"""The memoria's charts as inline SVG: visitors per bucket with the cortes marked, visitors per
hour, the availability timeline and the publication lag per corte.

Matplotlib draws them through ``Figure`` (never pyplot: no global figure manager), under one
lock, because the SVG backend reads ``rcParams`` — process-global — while it writes. Same input,
same bytes:
- ``svg.hashsalt`` is fixed per chart, ``metadata`` carries no date and no creator;
- ``svg.fonttype = "none"``: labels stay text in DejaVu Sans (which the PDF embeds; a browser
  without it uses its own sans-serif). Drawn as outlines, the glyphs tripled the SVG and took
  WeasyPrint seconds per memoria;
- every ``id`` (Matplotlib's ``figure_1``, ``DejaVuSans-…`` glyphs, clip paths) is prefixed with
  the chart's name, and the backend's ``*{…}`` style is scoped to the chart, so several charts
  sit in one HTML page without clashing.
Also the small SVG helpers the map and the diagram share (``esc``, ``number``, ``empty_svg``).
"""

from __future__ import annotations

import io
import itertools
import re
import threading
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta, tzinfo
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from difusor.moments import duration, stored
from difusor.report.numbers import grouped

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

NO_DATA = "sin datos en el periodo"
FONT = "DejaVu Sans"
WIDTH_IN = 6.7  # A4 minus 2 cm margins each side, in inches
STATES = {  # uptime estado → (colour, Spanish legend)
    "up": ("#2e7d32", "disponible"),
    "degraded": ("#f9a825", "degradado"),
    "down": ("#c62828", "caído"),
    "unknown": ("#9e9e9e", "desconocido"),
}
_RC = {"font.family": "sans-serif", "font.sans-serif": [FONT], "font.size": 8,
       "svg.fonttype": "none", "axes.spines.top": False, "axes.spines.right": False,
       "axes.grid": True, "grid.color": "#dddddd", "grid.linewidth": 0.5,
       "legend.frameon": False, "path.simplify": False}
_LOCK = threading.Lock()  # rcParams are process-global: one chart drawn at a time
_ID = re.compile(r'\sid="([^"]+)"')
_REF = re.compile(r'(\sid="|href="#|url\(#)([^")]+)')


def esc(text: object) -> str:
    """Text safe inside SVG/XML element content and attribute values."""
    return (str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
            .replace('"', "&quot;"))


def number(n: float) -> str:
    """``12,345``: the same grouping as the document's tables (``render.num``)."""
    return grouped(round(n))


def empty_svg(name: str, title: str) -> str:
    """The small SVG a chart becomes when there is nothing to draw."""
    return (f'<svg xmlns="http://www.w3.org/2000/svg" id="{esc(name)}" role="img" '
            f'aria-label="{esc(title)}: {NO_DATA}" width="482pt" height="40pt" '
            f'viewBox="0 0 482 40"><title>{esc(title)}: {NO_DATA}</title>'
            '<rect x="0.5" y="0.5" width="481" height="39" fill="#fafafa" stroke="#cccccc"/>'
            f'<text x="241" y="24" text-anchor="middle" font-family="{FONT}, sans-serif" '
            f'font-size="11" fill="#555555">{NO_DATA}</text></svg>')


def _zone(zone: str | tzinfo) -> tzinfo:
    return ZoneInfo(zone) if isinstance(zone, str) else zone


def _inline(svg: str, name: str, title: str) -> str:
    """Matplotlib's document → one ``<svg>`` element fit to sit among others in a page."""
    svg = svg[svg.index("<svg"):]
    svg = re.sub(r"\s*<metadata>.*?</metadata>", "", svg, flags=re.S)
    ids = set(_ID.findall(svg))
    svg = _REF.sub(lambda m: m[1] + (f"{name}-{m[2]}" if m[2] in ids else m[2]), svg)
    svg = svg.replace("<style type=\"text/css\">*{", f'<style type="text/css">#{name} *{{', 1)
    return svg.replace("<svg ", f'<svg id="{name}" role="img" aria-label="{esc(title)}" ', 1) \
        .replace(">", f"><title>{esc(title)}</title>", 1).rstrip() + "\n"


def _draw(name: str, title: str, height_in: float, paint: Callable[[Figure], None], *,
          bottom_in: float = 0.42, left_in: float = 0.62) -> str:
    """Build, paint and save one figure under the lock with this chart's fixed settings.

    Margins are fixed, in inches (room for the tick labels, the axis label and, below, what the
    chart puts there): Matplotlib's constrained layout measures every label first and took half
    of the drawing time, for charts whose labels are always of the same kind."""
    import matplotlib
    from matplotlib.figure import Figure

    with _LOCK, matplotlib.rc_context({**_RC, "svg.hashsalt": f"difusor-{name}"}):
        fig = Figure(figsize=(WIDTH_IN, height_in))
        fig.subplots_adjust(left=left_in / WIDTH_IN, right=1 - 0.12 / WIDTH_IN,
                            bottom=bottom_in / height_in, top=1 - 0.1 / height_in)
        paint(fig)
        out = io.StringIO()
        fig.savefig(out, format="svg", metadata={"Date": None, "Creator": None})
    return _inline(out.getvalue(), name, title)


def _time_axis(ax: Axes, zone: tzinfo) -> None:
    from matplotlib import dates

    ax.xaxis.set_major_locator(dates.AutoDateLocator(tz=zone, minticks=4, maxticks=8))
    ax.xaxis.set_major_formatter(dates.DateFormatter("%d/%m %H:%M", tz=zone))
    for label in ax.get_xticklabels():
        label.set_rotation(0)


def _step(times: Sequence[datetime]) -> tuple[timedelta, str]:
    """The series' own step (the smallest gap between points) and its name: «10 min», «hora»…"""
    gaps = [b - a for a, b in itertools.pairwise(times) if b > a]
    step = min(gaps) if gaps else timedelta(minutes=10)
    return step, {60: "minuto", 600: "10 min", 3600: "hora"}.get(
        int(step.total_seconds()), duration(step.total_seconds()))


def visits_chart(points: Sequence[dict[str, Any]], cortes: Sequence[str],
                 zone: str | tzinfo) -> str:
    """Visitors per bucket (``series_10min``) as an area, each corte's live time a thin line."""
    name, title = "grafica-visitas", "Visitantes por intervalo y cortes publicados"
    times = [stored(p["t"]) for p in points]
    if not times:
        return empty_svg(name, title)
    values = [int(p.get("visitors") or 0) for p in points]
    step, bucket = _step(times)
    tz, lo, hi = _zone(zone), times[0], times[-1] + step  # the last bucket has its width too
    marks = [t for t in sorted(stored(c) for c in cortes) if lo <= t <= hi]

    def paint(fig: Figure) -> None:
        ax = fig.add_subplot()
        xs, ys = [*times, hi], [*values, values[-1]]  # close the last step
        ax.fill_between(xs, ys, step="post", color="#1f77b4", alpha=0.25, linewidth=0)
        ax.step(xs, ys, where="post", color="#1f77b4", linewidth=1,
                label=f"visitantes por {bucket}")
        for i, t in enumerate(marks):
            ax.axvline(t, color="#e65100", linewidth=0.5, alpha=0.7,
                       label="corte publicado" if i == 0 else None)
        ax.set_ylabel(f"visitantes por {bucket}")
        ax.set_ylim(bottom=0)
        ax.set_xlim(lo, hi)
        _time_axis(ax, tz)
        ax.legend(loc="upper left")

    return _draw(name, title, 2.8, paint)


def hourly_chart(points: Sequence[dict[str, Any]], zone: str | tzinfo) -> str:
    """Visitors per hour as bars (``series_hora``)."""
    name, title = "grafica-horas", "Visitantes por hora"
    times = [stored(p["t"]) for p in points]
    if not times:
        return empty_svg(name, title)
    values = [int(p.get("visitors") or 0) for p in points]
    tz = _zone(zone)

    def paint(fig: Figure) -> None:
        ax = fig.add_subplot()
        ax.bar(times, values, width=timedelta(minutes=50), align="edge", color="#1f77b4")
        ax.set_ylabel("visitantes por hora")
        ax.grid(axis="x", visible=False)
        _time_axis(ax, tz)

    return _draw(name, title, 2.6, paint)


def uptime_timeline(segments: Sequence[dict[str, Any]], zone: str | tzinfo) -> str:
    """One horizontal band per target (``objetivo`` when segments carry it, else one band) of
    up/degraded/down/unknown, with the time in each state in the legend."""
    name, title = "grafica-disponibilidad", "Línea de tiempo de la disponibilidad"
    rows = [(str(s.get("objetivo") or "sitio"), stored(s["inicio"]), stored(s["fin"]),
             s["estado"] if s.get("estado") in STATES else "unknown") for s in segments]
    rows = [r for r in rows if r[2] > r[1]]
    if not rows:
        return empty_svg(name, title)
    tz = _zone(zone)
    bands = list(dict.fromkeys(r[0] for r in rows))
    spent = dict.fromkeys(STATES, 0.0)
    for _b, start, end, state in rows:
        spent[state] += (end - start).total_seconds()

    def paint(fig: Figure) -> None:
        from matplotlib.patches import Patch

        ax = fig.add_subplot()
        for y, band in enumerate(bands):
            for state, (colour, _label) in STATES.items():
                spans = [(start, end - start) for b, start, end, s in rows
                         if b == band and s == state]
                if spans:
                    ax.broken_barh(spans, (y - 0.35, 0.7), facecolors=colour, linewidth=0)
        ax.set_yticks(range(len(bands)), bands)
        ax.set_ylim(len(bands) - 0.5, -0.5)
        ax.set_xlim(min(r[1] for r in rows), max(r[2] for r in rows))
        ax.grid(axis="y", visible=False)
        _time_axis(ax, tz)
        handles = [Patch(facecolor=colour, label=f"{label} ({duration(spent[state])})")
                   for state, (colour, label) in STATES.items()]
        fig.legend(handles=handles, loc="lower center", ncols=2, bbox_to_anchor=(0.5, 0.0))

    return _draw(name, title, 1.35 + 0.35 * len(bands), paint, bottom_in=0.95)


def _lags(corte: dict[str, Any]) -> tuple[float, float] | None:
    """(received → live, live → edge-verified) seconds, from the corte's times; without them
    from ``retraso_s`` (received → live) and ``retraso_borde_s`` (received → edge)."""
    def at(key: str) -> datetime | None:
        return stored(corte[key]) if corte.get(key) else None

    received, live, edge = at("recibido"), at("en_linea"), at("verificado_borde")
    if received and live:
        first = (live - received).total_seconds()
        second = (edge - live).total_seconds() if edge else 0.0
    elif corte.get("retraso_s") is not None:
        first = float(corte["retraso_s"])
        second = float(corte.get("retraso_borde_s") or first) - first
    else:
        return None  # never went live: nothing to draw
    return max(0.0, first), max(0.0, second)


def _corte_label(corte: dict[str, Any]) -> str:
    when = corte.get("hora_autoridad") or corte.get("en_linea")
    return stored(when).strftime("%d/%m %H:%M") if when else str(corte.get("corte", "?"))


def lag_chart(cortes: Sequence[dict[str, Any]]) -> str:
    """Per corte (``cronologia.cortes``), stacked: received → live, then live → edge-verified."""
    name, title = "grafica-retraso", "Retraso de publicación por corte"
    rows = [(_corte_label(c), lag) for c in cortes if (lag := _lags(c)) is not None]
    if not rows:
        return empty_svg(name, title)
    labels = [label for label, _ in rows]
    first = [lag[0] for _, lag in rows]
    second = [lag[1] for _, lag in rows]
    every = max(1, len(rows) // 24)  # at most ~24 labels across the page

    def paint(fig: Figure) -> None:
        ax = fig.add_subplot()
        xs = range(len(rows))
        ax.bar(xs, first, color="#1f77b4", label="recibido → en línea")
        ax.bar(xs, second, bottom=first, color="#ff7f0e", label="en línea → verificado en el borde")
        ax.set_xticks(list(xs)[::every], labels[::every], rotation=60, ha="right")
        ax.set_ylabel("segundos")
        ax.set_xlabel("corte (hora de la autoridad)")
        ax.grid(axis="x", visible=False)
        ax.legend(loc="upper left")

    return _draw(name, title, 3.0, paint, bottom_in=1.0)
