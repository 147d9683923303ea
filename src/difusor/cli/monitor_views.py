"""What ``difusor uptime``, ``incidents`` and ``incident`` print: the availability table and its
headline, and an incident as a block of text (every field the memoria técnica asks, II.4.a), in
Spanish and in the site's timezone."""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from rich.table import Table

from difusor.moments import duration, printed
from difusor.monitor.uptime import TARGET, Uptime, UptimeReport


def local(when: str | datetime | None, zone: ZoneInfo) -> str:
    return "—" if when is None else printed(when, zone)


# -- uptime --------------------------------------------------------------------------------


def uptime_table(rep: UptimeReport, zone: ZoneInfo) -> tuple[str, Table, list[str]]:
    """A title, the table (the public site first) and the outages of the public site."""
    site = rep.site
    title = (f"Disponibilidad del {local(site.start, zone)[:10]} al {local(site.end, zone)[:10]}"
             f" (meta {TARGET * 100:.1f} %)")
    if site.until < site.end:
        title += f"; medido hasta {local(site.until, zone)}"
    title += "\n" + headline(site)
    table = Table("objetivo", "disponible %", "peor caso %", "cobertura %", "caído",
                  "desconocido", "retraso de la autoridad",
                  f"presupuesto restante ({TARGET * 100:.1f} %)")
    for row in (site, *rep.targets):
        name = row.target if row is not site else f"{row.target} ({', '.join(row.targets) or '—'})"
        table.add_row(name, _pct(row.ratio), _pct(row.worst_ratio), _pct(row.coverage, 1),
                      duration(row.down_seconds), duration(row.unknown_seconds),
                      duration(row.authority_delay_seconds), _budget(row))
    lines = [f"  {local(d.start, zone)} → {local(d.end, zone)}  {duration(d.seconds)}  "
             f"({d.failure})" for d in site.down]
    return title, table, lines


def headline(row: Uptime) -> str:
    """The public site in one line that claims no more than was measured: with unknown time
    (the monitor was down), the worst case — unknown counted as down — comes first."""
    if row.ratio is None:
        return "Sitio público: sin datos (el monitor no registró sondeos en el periodo)"
    if not row.unknown_seconds:
        return f"Sitio público: {_pct(row.ratio)} (todo el tiempo transcurrido fue medido)"
    return (f"Sitio público: al menos {_pct(row.worst_ratio)} (peor caso: lo desconocido "
            f"cuenta como caído); {_pct(row.ratio)} del tiempo medido, que cubre el "
            f"{_pct(row.coverage, 1)} del periodo ({duration(row.unknown_seconds)} desconocido)")


def _pct(ratio: float | None, places: int = 3) -> str:
    if ratio is None:
        return "sin datos"
    scale = 10 ** (places + 2)
    # Truncated, never rounded up: 99.9996 is not 100.
    return f"{math.floor(ratio * scale) / 10 ** places:.{places}f} %"


def _budget(row: Uptime) -> str:
    left = row.budget_left_seconds
    text = f"{duration(abs(left))} de {duration(row.budget_seconds)}"
    return text if left >= 0 else f"excedido por {text}"


# -- incidents -----------------------------------------------------------------------------


def incident_lines(doc: dict[str, Any], zone: ZoneInfo) -> list[str]:
    """The incident (``incident_sheet.incident_doc``) as a block of text, every field on its
    own line."""
    head = (f"Incidente n.º {doc['id']} — {doc['tipo_texto']} · severidad "
            f"{doc['severidad_texto']} · {doc['estado_texto']}")
    span = duration(doc["duracion_s"])
    lines = [head,
             f"  objetivo:  {doc['objetivo'] or '—'}",
             f"  inicio:    {local(doc['inicio'], zone)}",
             f"  fin:       {local(doc['fin'], zone) if doc['fin'] else 'en curso'}",
             f"  duración:  {span + (' (sigue abierto)' if doc['en_curso'] else '')}"]
    if doc["causa"] is None:
        lines.append("  causa:     — (sin causa; agréguela con difusor incident "
                     f"{doc['id']} --cause …)")
    else:
        label = "causa sugerida (por confirmar): " if doc["causa_sugerida"] else "causa:     "
        lines.append(f"  {label}{doc['causa']}")
    impact = doc["impacto"]
    if isinstance(impact, dict):
        impact = "; ".join(f"{k}: {v}" for k, v in impact.items())
    lines.append(f"  impacto:   {impact or '— (sin registrar)'}")
    if doc["medidas"]:
        lines.append("  medidas:")
        for m in doc["medidas"]:
            when = f"{local(m['en'], zone)} " if m["en"] else ""
            lines.append(f"    - {when}[{m['por']}] {m['texto']}")
    else:
        lines.append("  medidas:   — (ninguna registrada)")
    return lines
