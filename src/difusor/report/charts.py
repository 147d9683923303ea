"""The memoria's charts as inline SVG: visitors per bucket with the cortes marked, visitors per
hour, the availability timeline and the publication lag per corte.

Matplotlib draws them through ``Figure`` (never pyplot: no global figure manager), under one
lock, because the SVG backend reads ``rcParams`` — process-global — while it writes. Same input,
same bytes:
- ``svg.hashsalt`` is fixed per chart, ``metadata`` carries no date and no creator;
- ``svg.fonttype = "none"``: labels stay text in DejaVu Sans (which the PDF embeds; a browser
  without it uses its own sans-serif). Drawn as outlines, the glyphs tripled the SVG and took
  WeasyPrint seconds per memoria;
- every ``id`` (Matplotlib's ``figure_1``, clip paths) is prefixed with the chart's name, and
  the backend's ``*{…}`` style is scoped to the chart, so several charts sit in one HTML page
  without clashing; the wrappers and whitespace nothing needs go (``svgtidy``);
- what would be hundreds of nodes is one path, because WeasyPrint parses and paints every node
  in Python: the bars of a series (``_bars``), the cortes' marks, and a series denser than the
  page can show is drawn per half point of width (``_columns``).
Also the small SVG helpers the map and the diagram share (``esc``, ``number``, ``empty_svg``).
"""

from __future__ import annotations

import io
import itertools
import math
import threading
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta, tzinfo
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from difusor.moments import duration, stored
from difusor.report.numbers import grouped
from difusor.report.svgtidy import esc, inline

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
LEFT_IN, RIGHT_IN = 0.62, 0.12  # fixed margins (see _draw)
COLUMNS_PER_PT = 2  # a dense series is drawn per half point of width (see _columns)

__all__ = ["FONT", "NO_DATA", "empty_svg", "esc", "hourly_chart", "lag_chart", "number",
           "uptime_timeline", "visits_chart"]


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


def _draw(name: str, title: str, height_in: float, paint: Callable[[Figure], None], *,
          bottom_in: float = 0.42, left_in: float = LEFT_IN) -> str:
    """Build, paint and save one figure under the lock with this chart's fixed settings.

    Margins are fixed, in inches (room for the tick labels, the axis label and, below, what the
    chart puts there): Matplotlib's constrained layout measures every label first and took half
    of the drawing time, for charts whose labels are always of the same kind."""
    import matplotlib
    from matplotlib.figure import Figure

    with _LOCK, matplotlib.rc_context({**_RC, "svg.hashsalt": f"difusor-{name}"}):
        fig = Figure(figsize=(WIDTH_IN, height_in))
        fig.subplots_adjust(left=left_in / WIDTH_IN, right=1 - RIGHT_IN / WIDTH_IN,
                            bottom=bottom_in / height_in, top=1 - 0.1 / height_in)
        paint(fig)
        out = io.StringIO()
        fig.savefig(out, format="svg", metadata={"Date": None, "Creator": None})
    return inline(out.getvalue(), name, title)


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


def _columns(xs: list[float], ys: list[float], lo: float, hi: float,
             columns: int) -> tuple[list[float], list[float]]:
    """A step polyline with more vertices than ``columns`` of width can show, drawn per column:
    up and down between its lowest and highest value at the column's first x, then across at
    its last value — the pixels the steps cover at that resolution, with at most five vertices
    a column (a month of 10-minute buckets: 8,640 vertices, then fewer than 4,300)."""
    if len(xs) <= 4 * columns or hi <= lo:
        return xs, ys
    width = (hi - lo) / columns
    points: list[tuple[float, float]] = []
    start = 0
    while start < len(xs):
        column = math.floor((xs[start] - lo) / width)
        end = start + 1
        while end < len(xs) and math.floor((xs[end] - lo) / width) == column:
            end += 1
        span = range(start, end)
        extremes = sorted({min(span, key=ys.__getitem__), max(span, key=ys.__getitem__)})
        x0, x1 = xs[start], xs[end - 1]
        for y in (ys[start], *(ys[k] for k in extremes), ys[end - 1]):
            points.append((x0, y))
        points.append((x1, ys[end - 1]))
        start = end
    kept = [p for i, p in enumerate(points) if i == 0 or p != points[i - 1]]
    return [x for x, _ in kept], [y for _, y in kept]


def _bars(ax: Axes, lefts: Sequence[float], width: float, heights: Sequence[float],
          bottoms: Sequence[float] | None = None, **style: Any) -> None:
    """Bars as one compound path: what ``ax.bar`` draws, as one node instead of one per bar."""
    from matplotlib.patches import PathPatch
    from matplotlib.path import Path

    bottoms = bottoms or [0.0] * len(lefts)
    vertices: list[tuple[float, float]] = []
    codes: list[int] = []
    for left, height, bottom in zip(lefts, heights, bottoms, strict=True):
        top, right = bottom + height, left + width
        vertices += [(left, bottom), (right, bottom), (right, top), (left, top), (left, bottom)]
        codes += [Path.MOVETO, Path.LINETO, Path.LINETO, Path.LINETO, Path.CLOSEPOLY]
    patch = PathPatch(Path(vertices, codes), edgecolor="none", linewidth=0, **style)
    patch.sticky_edges.y.extend(bottoms)  # as ax.bar: no margin beyond a bar's base
    ax.add_patch(patch)
    ax.autoscale_view()  # add_patch only records the limits; ax.bar also rescales


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
        from matplotlib.dates import date2num

        ax = fig.add_subplot()
        x0, x1 = float(date2num(lo)), float(date2num(hi))
        edges = [float(x) for x in date2num([*times[1:], hi])]
        xs: list[float] = []
        ys: list[float] = []
        for start, end, value in zip([x0, *edges[:-1]], edges, values, strict=True):
            xs += [start, end]  # the step drawn as ax.step(where="post") draws it
            ys += [value, value]
        xs, ys = _columns(xs, ys, x0, x1, round(_axes_width_pt() * COLUMNS_PER_PT))
        ax.fill([*xs, x1, x0], [*ys, 0, 0], facecolor="#1f77b4", edgecolor="none", alpha=0.25,
                linewidth=0)
        ax.plot(xs, ys, color="#1f77b4", linewidth=1, label=f"visitantes por {bucket}")
        if marks:  # one path for every corte: x in data, y across the axes
            at = [float(x) for x in date2num(marks)]
            ax.plot([x for t in at for x in (t, t, math.nan)],
                    [y for _ in at for y in (0.0, 1.0, math.nan)],
                    transform=ax.get_xaxis_transform(), color="#e65100", linewidth=0.5,
                    alpha=0.7, label="corte publicado")
        ax.set_ylabel(f"visitantes por {bucket}")
        ax.set_ylim(bottom=0)
        ax.set_xlim(x0, x1)
        _time_axis(ax, tz)
        ax.legend(loc="upper left")

    return _draw(name, title, 2.8, paint)


def _axes_width_pt() -> float:
    return (WIDTH_IN - LEFT_IN - RIGHT_IN) * 72


def hourly_chart(points: Sequence[dict[str, Any]], zone: str | tzinfo) -> str:
    """Visitors per hour as bars (``series_hora``)."""
    name, title = "grafica-horas", "Visitantes por hora"
    times = [stored(p["t"]) for p in points]
    if not times:
        return empty_svg(name, title)
    values = [int(p.get("visitors") or 0) for p in points]
    tz = _zone(zone)

    def paint(fig: Figure) -> None:
        from matplotlib.dates import date2num

        ax = fig.add_subplot()
        _bars(ax, [float(x) for x in date2num(times)], 50 / 1440, values, facecolor="#1f77b4")
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
        lefts = [x - 0.4 for x in xs]  # ax.bar's default: 0.8 wide, centred
        _bars(ax, lefts, 0.8, first, facecolor="#1f77b4", label="recibido → en línea")
        _bars(ax, lefts, 0.8, second, first, facecolor="#ff7f0e",
              label="en línea → verificado en el borde")
        ax.set_xticks(list(xs)[::every], labels[::every], rotation=60, ha="right")
        ax.set_ylabel("segundos")
        ax.set_xlabel("corte (hora de la autoridad)")
        ax.grid(axis="x", visible=False)
        ax.legend(loc="upper left")

    return _draw(name, title, 3.0, paint, bottom_in=1.0)
