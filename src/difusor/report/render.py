"""The memoria técnica as one self-contained HTML page: Jinja2 templates (``templates/``, one
per section) filled from the document dict (see ``difusor.report``) and the SVG drawings
(``draw_all``). ``write_memoria`` writes the HTML, the PDF/A-3b and the annexes
(report/typeset.py). Same document, same bytes: nothing reads the clock — every date written
into the files (HTML meta, PDF info and XMP, attachment dates) is ``doc["generado"]``, and fonts
are the installed DejaVu (no font lookup varies).
"""

from __future__ import annotations

import base64
import io
import math
import mimetypes
import re
import warnings
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from markupsafe import Markup

from difusor.moments import duration, printed, stored
from difusor.monitor.incident_sheet import SEVERITY_LABELS
from difusor.report import sections
from difusor.report.annexes import Table, write_atomic
from difusor.report.numbers import grouped
from difusor.report.operator_text import operator_html

if TYPE_CHECKING:
    from difusor.config import Config

TEMPLATES = Path(__file__).with_name("templates")
NONE = "sin datos"


# -- numbers and moments, the Mexican Spanish way (1,234,567.89; 08/12/2024 20:30:00 CST) ----


def num(value: Any, places: int = 0) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return NONE
    return grouped(value, places)


def pct(value: Any, places: int = 3) -> str:
    """A percentage already ×100, truncated (99.9996 is not 100)."""
    if value is None:
        return NONE
    scale = 10 ** places
    return f"{math.floor(float(value) * scale + 1e-9) / scale:,.{places}f} %"


def lag(seconds: float | None) -> str:
    """A publication lag: milliseconds matter under a second (``350 ms``), then a duration."""
    if seconds is None:
        return NONE
    return f"{seconds * 1000:,.0f} ms" if seconds < 1 else duration(seconds)


def sources(rows: list[dict[str, Any]] | int | None, shown: int = 5) -> str:
    """An attack's sources: ``45.10.0.9 (138), …`` and how many more (all are in the annex);
    a bare count when that is all the record has."""
    if isinstance(rows, int):
        return num(rows)
    rows = rows or []
    text = ", ".join(f"{r.get('clave')} ({num(r.get('peticiones'))})" for r in rows[:shown])
    more = len(rows) - shown
    return (text + (f" y {more:,} más" if more > 0 else "")) or NONE


def figure(value: Any) -> str:
    """A figure of any kind as the text beside a finding."""
    if isinstance(value, bool) or value is None:
        return {True: "sí", False: "no", None: "—"}[value]
    if isinstance(value, int):
        return num(value)
    if isinstance(value, float):
        return num(value, 0 if value.is_integer() else 2)
    if isinstance(value, dict):
        return "; ".join(f"{k}: {figure(v)}" for k, v in value.items())
    if isinstance(value, list | tuple):
        return ", ".join(figure(v) for v in value)
    return str(value)


def size(value: Any) -> str:
    if value is None:
        return NONE
    n = float(value)
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{num(n, 0 if unit == 'B' else 1)} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def _filters(zone: ZoneInfo) -> dict[str, Any]:
    def moment(value: Any, fmt: str = "") -> str:
        if not value:
            return "—"
        if not fmt:
            return printed(value, zone)
        return stored(value).astimezone(zone).strftime(fmt) if isinstance(value, str) \
            else value.astimezone(zone).strftime(fmt)

    return {
        "num": num, "pct": pct, "figure": figure, "size": size, "moment": moment,
        "dur": lambda s: NONE if s is None else duration(s),
        "lag": lag, "sources": sources,
        "day": lambda v: moment(v, "%d/%m/%Y"),
        "hhmm": lambda v: moment(v, "%H:%M"),
        "hms": lambda v: moment(v, "%H:%M:%S"),
        "hmsz": lambda v: moment(v, "%H:%M:%S %Z"),
        "sev": lambda code: SEVERITY_LABELS.get(code, code),
        "dhms": lambda v: moment(v, "%d/%m %H:%M:%S"),
        "shorthash": lambda h: f"{h[:12]}…" if h else "—",
        "or_none": lambda v, text="sin registrar": text if v in (None, "", [], {}) else v,
    }


# -- HTML ------------------------------------------------------------------------------------


@lru_cache(maxsize=8)
def environment(zone: ZoneInfo) -> Environment:
    """One environment per zone (the filters print moments in it) and per process: Jinja
    compiles each template once, which the typesetter does while it waits (``preload``)."""
    env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(
        ["html", "css"], default=True), undefined=StrictUndefined, trim_blocks=True,
        lstrip_blocks=True, keep_trailing_newline=True)
    env.filters.update(_filters(zone))
    # Tables name a column's format by the filter's name (see templates/macros.html).
    env.globals["fmt"] = lambda name, value: env.filters[name](value)
    return env


_PROLOGUE = re.compile(r"^\s*(<\?xml[^>]*\?>\s*)?(<!DOCTYPE[^>]*>\s*)?", re.IGNORECASE)


def inline_svg(svg: str) -> Markup:
    # The drawings are ours (charts/map/diagram); an XML prologue is not valid inside HTML.
    return Markup(_PROLOGUE.sub("", svg or "").strip())


def logo_uri(path: str | None) -> str | None:
    """The operator's logo inlined as a ``data:`` URI (the HTML makes no request)."""
    if not path or not Path(path).is_file():
        return None
    mime = mimetypes.guess_type(str(path))[0] or "application/octet-stream"
    return f"data:{mime};base64,{base64.b64encode(Path(path).read_bytes()).decode('ascii')}"


def render_html(doc: dict[str, Any], drawings: dict[str, str]) -> str:
    """The whole memoria as one HTML page (inline CSS and SVG, no external request)."""
    zone = ZoneInfo(doc["periodo"]["zona"])
    env = environment(zone)
    operator = doc.get("texto_operador") or {}
    context = {
        "doc": doc, "zone": zone, "v": sections.derive(doc),
        "svg": {k: inline_svg(v) for k, v in drawings.items()},
        "logo": logo_uri((doc.get("sitio") or {}).get("logo")),
        "operator_html": Markup(operator_html(operator.get("archivo")) or ""),
        # In UTC, so the PDF's info dictionary and its XMP state the very same date string.
        "created": generated_at(doc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "css": Markup((TEMPLATES / "memoria.css").read_text(encoding="utf-8")),
    }
    return env.get_template("memoria.html").render(context)


def draw_all(doc: dict[str, Any], cfg: Config) -> dict[str, str]:
    """Every drawing of the memoria as SVG text (the visuals' functions, called here)."""
    from difusor.report import charts, diagram, mexico_map

    zone = ZoneInfo(doc["periodo"]["zona"])
    visits, cortes = doc.get("visitas") or {}, doc["cronologia"]["cortes"]
    return {
        "visitas": charts.visits_chart(visits.get("series_10min") or [],
                                       [c["en_linea"] for c in cortes if c.get("en_linea")], zone),
        "por_hora": charts.hourly_chart(visits.get("series_hora") or [], zone),
        "linea_de_tiempo": charts.uptime_timeline(
            (doc.get("disponibilidad") or {}).get("linea_de_tiempo") or [], zone),
        "retraso": charts.lag_chart(cortes),
        "mapa": mexico_map.mexico_map((visits.get("geo") or {}).get("state") or []),
        "diagrama": diagram.service_diagram(cfg),
    }


def preload_templates(zone: str = "America/Mexico_City") -> None:
    """Compile every template for the usual zone (the configuration's default)."""
    env = environment(ZoneInfo(zone))
    for name in env.list_templates():
        env.get_template(name)


def preload_drawing() -> None:
    """Import what ``draw_all`` uses (report/worker.py runs it while the figures are gathered):
    Matplotlib's SVG backend and the drawings' modules, and what unpickling a Config needs."""
    import matplotlib.backends.backend_svg  # noqa: F401
    from matplotlib.figure import Figure

    from difusor import config  # noqa: F401 — unpickling the job's Config needs it
    from difusor.report import charts, diagram, mexico_map  # noqa: F401

    Figure(figsize=(1, 1)).savefig(io.StringIO(), format="svg")


# -- PDF -------------------------------------------------------------------------------------


def generated_at(doc: dict[str, Any]) -> datetime:
    """The document's one date (from the data, never the clock), in UTC."""
    return stored(doc["generado"]).astimezone(UTC)


def write_pdf(html: str, target: Path, attachments: list[Path], doc: dict[str, Any]) -> None:
    """PDF/A-3b of ``html`` with ``attachments`` (CSV files) as its source data; reproducible
    byte for byte (the registration kit's; the memoria's is typeset.typeset)."""
    from weasyprint import HTML

    from difusor.report.typeset import OPTIONS, attachments_for

    with warnings.catch_warnings():
        # WeasyPrint opens its sRGB profile (the PDF/A output intent) and never closes it.
        warnings.simplefilter("ignore", ResourceWarning)
        pdf = HTML(string=html, base_url=str(target.parent)).write_pdf(
            attachments=attachments_for(attachments, doc), **OPTIONS)
    write_atomic(target, pdf)


def write_memoria(doc: dict[str, Any], tables: dict[str, Table], outdir: Path,
                  cfg: Config, drawings: dict[str, str] | None = None) -> list[Path]:
    """``outdir/memoria-tecnica.{html,pdf}`` and ``outdir/anexos/*.csv``; fills
    ``doc["anexos"]``; returns the paths written (HTML, PDF, then the CSVs). ``drawings``:
    ``draw_all(doc, cfg)`` when the caller has it already (drawn in another process)."""
    from difusor.report.typeset import typeset

    return typeset(doc, tables, Path(outdir),
                   lambda: drawings if drawings is not None else draw_all(doc, cfg))
