"""What ``difusor uptime``, ``incidents`` and ``incident`` print, and the operator's edits.

Incidents are shown with every field the memoria técnica asks (II.4.a): start, end, duration,
kind, severity, root cause (the suggested one, marked as such, until an operator writes one),
impact, measures and state, in Spanish and in the site's timezone. ``edit_incident`` is the
operator's side of an incident: a cause moves it from *investigating* to *identified*, measures
are appended with their time and "operador".
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from rich.table import Table

from difusor.errors import DifusorError, NotFound
from difusor.ledger import Ledger
from difusor.moments import parse_moment
from difusor.monitor.uptime import TARGET, Uptime, UptimeReport

KIND_LABELS = {
    "outage": "caída",
    "degraded": "servicio degradado",
    "stale": "corte desactualizado",
    "integrity": "integridad",
    "header": "encabezado incorrecto",
    "tls": "certificado TLS",
    "refused": "paquete rechazado",
    "attack": "ataque",
    "purge": "falla de purga",
    "purge_failure": "falla de purga",
    "origin_out": "origen fuera de rotación",
    "authority_delay": "retraso de la autoridad",
}
STATE_LABELS = {
    "investigating": "investigando",
    "identified": "identificado",
    "monitoring": "en observación",
    "resolved": "resuelto",
}
SEVERITY_LABELS = {
    "critical": "crítica", "major": "mayor", "minor": "menor", "warning": "aviso",
    "info": "informativa",
}
OPERATOR = "operador"


def _labels() -> tuple[dict[str, str], dict[str, str], dict[str, str]]:
    """Kind, state and severity labels: the incidents module's (``KINDS``, ``STATES``,
    ``SEVERITIES``) where it has them, ours for anything it lacks."""
    kinds, states, severities = dict(KIND_LABELS), dict(STATE_LABELS), dict(SEVERITY_LABELS)
    try:
        from difusor.monitor import incidents
    except ImportError:
        return kinds, states, severities
    for kind, value in (getattr(incidents, "KINDS", None) or {}).items():
        kinds[kind] = value[0] if isinstance(value, tuple) else str(value)
    states.update(getattr(incidents, "STATES", None) or {})
    severities.update(getattr(incidents, "SEVERITIES", None) or {})
    return kinds, states, severities


def state_code(value: str) -> str:
    """``resolved`` or ``resuelto`` (any case, with or without accents) → ``resolved``."""
    plain = _plain(value)
    for code, label in STATE_LABELS.items():
        if plain in (code, _plain(label), _plain(label).replace(" ", "-")):
            return code
    known = ", ".join(f"{c} ({label})" for c, label in STATE_LABELS.items())
    raise DifusorError(f"estado desconocido «{value}»; usa uno de: {known}")


def _plain(text: str) -> str:
    return text.strip().lower().translate(str.maketrans("áéíóú", "aeiou"))


# -- time and duration ---------------------------------------------------------------------


def moment_from(value: str | None, zone: ZoneInfo, what: str = "--now / DIFUSOR_NOW") -> datetime:
    """A moment from the command line, ISO 8601 or ``dd/mm/aaaa HH:MM`` (a naive one is in the
    site's ``zone``); None is the clock. ``--now``/``DIFUSOR_NOW`` fix the clock for drills."""
    return datetime.now(UTC) if value is None else parse_moment(value, zone, what)


def duration(seconds: float) -> str:
    """``14 min 30 s``, ``2 h 05 min``, ``3 d 4 h``."""
    s = max(0, round(seconds))
    days, rest = divmod(s, 86400)
    hours, rest = divmod(rest, 3600)
    mins, secs = divmod(rest, 60)
    if days:
        return f"{days} d {hours} h"
    if hours:
        return f"{hours} h {mins:02d} min"
    if mins:
        return f"{mins} min {secs:02d} s"
    return f"{secs} s"


def local(iso: str | datetime | None, zone: ZoneInfo) -> str:
    if iso is None:
        return "—"
    when = datetime.fromisoformat(iso) if isinstance(iso, str) else iso
    return when.astimezone(zone).strftime("%d/%m/%Y %H:%M:%S %Z")


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


def incident_doc(row: dict[str, Any], now: datetime) -> dict[str, Any]:
    """One incident as ``difusor incidents --json`` prints it (Spanish keys, UTC ISO times)."""
    kinds, states, severities = _labels()
    started = datetime.fromisoformat(row["started_at"])
    ended = datetime.fromisoformat(row["ended_at"]) if row.get("ended_at") else None
    cause = row.get("cause") or None
    return {
        "id": row["id"],
        "tipo": row["kind"],
        "tipo_texto": kinds.get(row["kind"], row["kind"]),
        "severidad": row["severity"],
        "severidad_texto": severities.get(row["severity"], row["severity"]),
        "objetivo": row.get("target"),
        "estado": row["state"],
        "estado_texto": states.get(row["state"], row["state"]),
        "inicio": row["started_at"],
        "fin": row.get("ended_at"),
        "duracion_s": round(((ended or now) - started).total_seconds(), 3),
        "en_curso": ended is None,
        "causa": cause or row.get("cause_suggested") or None,
        "causa_sugerida": cause is None and bool(row.get("cause_suggested")),
        "impacto": _impact(row.get("impact")),
        "impacto_cifras": (row.get("detail") or {}).get("impact"),  # from the access log
        "medidas": [_measure(m) for m in row.get("measures") or []],
        "actualizado": row.get("updated_at"),
        "detalle": row.get("detail") or {},
    }


def _impact(value: Any) -> Any:
    """Free text from an operator, or the monitor's JSON figures."""
    if isinstance(value, str) and value.startswith("{"):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value or None


def _measure(item: Any) -> dict[str, Any]:
    if isinstance(item, dict):
        text = item.get("text") or item.get("measure") or item.get("message") or ""
        by = str(item.get("by") or item.get("source") or "auto")
        return {"en": item.get("at"), "por": _BY.get(by, by),
                "texto": str(text or json.dumps(item, ensure_ascii=False))}
    return {"en": None, "por": _BY["auto"], "texto": str(item)}


_BY = {"auto": "automática"}  # who took a measure: the system itself, or "operador"


def incident_lines(doc: dict[str, Any], zone: ZoneInfo) -> list[str]:
    """The incident as a block of text, every field on its own line."""
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


def edit_incident(ledger: Ledger, incident_id: int, *, cause: str | None = None,
                  impact: str | None = None, measures: Sequence[str] = (),
                  state: str | None = None, now: datetime | None = None) -> dict[str, Any]:
    """The operator's edits; returns the incident as it is afterwards.

    A cause moves an incident being investigated to *identified* (one in observation or resolved
    keeps its state, as with the incidents module's ``set_cause``); each measure is appended with
    its time and "operador". Resolving an open incident ends it now; leaving *resolved* reopens it
    (its end is cleared)."""
    row = ledger.incident(incident_id)
    if row is None:
        raise NotFound(f"no existe el incidente n.º {incident_id} (ver difusor incidents)")
    now = now or datetime.now(UTC)
    stamp = now.astimezone(UTC).isoformat(timespec="microseconds")
    fields: dict[str, Any] = {}
    if cause is not None:
        if not cause.strip():
            raise DifusorError("--cause no puede ir vacío")
        fields["cause"] = cause.strip()
        if row["state"] == "investigating" and state is None:
            fields["state"] = "identified"
    if impact is not None:
        fields["impact"] = impact.strip()
    if measures:
        added = [{"at": stamp, "by": OPERATOR, "text": m.strip()} for m in measures if m.strip()]
        fields["measures"] = [*(row.get("measures") or []), *added]
    if state is not None:
        code = state_code(state)
        fields["state"] = code
        if code == "resolved" and not row.get("ended_at"):
            fields["ended_at"] = stamp
        elif code != "resolved" and row["state"] == "resolved":
            fields["ended_at"] = None
    if fields:
        ledger.incident_update(incident_id, **fields)
        ledger.event("incident_updated", f"incidente n.º {incident_id} editado por el operador",
                     detail={"incident": incident_id, "fields": sorted(fields)})
    updated = ledger.incident(incident_id)
    assert updated is not None
    return updated
