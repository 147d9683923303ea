"""An incident as the memoria técnica asks for it (II.4.a), and the operator's edits to it.

``incident_doc`` holds every field the report needs: start, end, duration, kind, severity, root
cause (the suggested one, marked as such, until an operator writes one), impact, measures and
state, with Spanish labels (``difusor incidents --json`` prints it; the CLI lays it out as text).
``edit_incident`` is the operator's side of an incident: a cause moves it from *investigating* to
*identified*, measures are appended with their time and "operador". ``new_incident`` records one
the monitor never saw (an ISP cut, a call from the authority): ``difusor incident new``.

Each kind falls in one of the convocatoria's categories (II.4.a: interruptions of the service,
failures of the web page, connectivity problems, cyber attacks, other problems): ``CATEGORIES``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from difusor.errors import DifusorError, NotFound
from difusor.ledger import Ledger
from difusor.moments import storable, stored

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
    "disk": "disco casi lleno",
    # kinds only an operator records (``difusor incident new --kind``)
    "connectivity": "problema de conectividad",
    "web": "falla de la página web",
    "other": "otro",
}
MANUAL_KIND = "other"  # ``incident new`` without --kind
MANUAL_SEVERITY = {"connectivity": "major", "web": "major", "other": "minor"}
INTERRUPTION, WEB, CONNECTIVITY, ATTACK, OTHER = (
    "interrupción del servicio", "falla de la página web", "problema de conectividad",
    "ataque cibernético", "otro")
CATEGORIES = {  # kind → the convocatoria's category (II.4.a)
    "outage": INTERRUPTION, "origin_out": INTERRUPTION, "degraded": WEB, "stale": WEB,
    "integrity": WEB, "header": WEB, "tls": WEB, "purge": WEB, "purge_failure": WEB,
    "web": WEB, "connectivity": CONNECTIVITY, "attack": ATTACK,
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


def incident_doc(row: dict[str, Any], now: datetime) -> dict[str, Any]:
    """One incident as ``difusor incidents --json`` prints it (Spanish keys, UTC ISO times)."""
    kinds, states, severities = _labels()
    started = stored(row["started_at"])
    ended = stored(row["ended_at"]) if row.get("ended_at") else None
    cause = row.get("cause") or None
    return {
        "id": row["id"],
        "tipo": row["kind"],
        "tipo_texto": kinds.get(row["kind"], row["kind"]),
        "categoria": CATEGORIES.get(row["kind"], OTHER),
        "titulo": (row.get("detail") or {}).get("title"),
        "deteccion": _detected_by(row),
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


def _detected_by(row: dict[str, Any]) -> str:
    """Who saw it first: the operator (recorded by hand), the shield (attacks) or the monitor."""
    given = (row.get("detail") or {}).get("detected_by")
    if given:
        return str(given)
    return "escudo" if row["kind"] == "attack" else "monitor"


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
    stamp = storable(now)
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


def new_incident(ledger: Ledger, *, title: str, start: datetime, end: datetime | None,
                 cause: str, impact: str, measures: Sequence[str], kind: str | None = None,
                 severity: str | None = None, target: str | None = None,
                 now: datetime | None = None) -> int:
    """Record an incident the monitor never saw; returns its number. With an end it is
    resolved; without one it stays *identified* (its cause is known) until edited."""
    kinds, _states, severities = _labels()
    kind = kind or MANUAL_KIND
    if kind not in kinds:
        raise DifusorError(f"tipo de incidente desconocido «{kind}»; usa uno de: "
                           + ", ".join(sorted(kinds)))
    severity = severity or MANUAL_SEVERITY.get(kind) or _default_severity(kind)
    if severity not in severities:
        raise DifusorError(f"severidad desconocida «{severity}»; usa una de: "
                           + ", ".join(severities))
    for flag, text in (("--title", title), ("--cause", cause), ("--impact", impact)):
        if not text.strip():
            raise DifusorError(f"{flag} no puede ir vacío")
    if end is not None and end <= start:
        raise DifusorError("--end debe ser posterior a --start")
    now = now or datetime.now(UTC)
    stamp = storable(now)
    number = ledger.incident_opened(
        kind=kind, severity=severity, started_at=storable(start), target=target,
        detail={"title": title.strip(), "detected_by": OPERATOR})
    ledger.incident_update(
        number, cause=cause.strip(), impact=impact.strip(),
        measures=[{"at": stamp, "by": OPERATOR, "text": m.strip()} for m in measures if m.strip()],
        state="resolved" if end is not None else "identified",
        ended_at=storable(end) if end is not None else None)
    ledger.event("incident_updated", f"incidente n.º {number} registrado por el operador",
                 detail={"incident": number, "fields": ["new"]})
    return number


def _default_severity(kind: str) -> str:
    from difusor.monitor.incidents import KINDS

    return KINDS.get(kind, ("", "minor"))[1]
