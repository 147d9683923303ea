"""The operation's phase: from the ``[operation]`` calendar, unless the operator set one.

    preparacion  before the start of publication, outside a simulacro: packages go to «prueba»
    simulacro    inside an ``[[operation.simulacros]]`` window: packages go to «prueba»
    oficial      from ``start`` to ``end``: packages go to «oficial»
    cerrado      after ``end``: the site stays up (``keep_hours``), packages are refused

Without a calendar (no start, end or simulacros) it is always «oficial»: today's behaviour. The
operator's override (``difusor phase --set``) is a ``phase_set`` event in the difusor's ledger
(who, when); ``--set auto`` hands the phase back to the calendar.
"""

from __future__ import annotations

import getpass
import os
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from difusor.moments import stored

if TYPE_CHECKING:
    from difusor.config import Config
    from difusor.ledger import Ledger

PHASES = ("preparacion", "simulacro", "oficial", "cerrado")
SETTABLE = ("simulacro", "oficial", "cerrado", "auto")
LABELS = {"preparacion": "preparación", "simulacro": "simulacro", "oficial": "oficial",
          "cerrado": "cerrado"}
# Which site role a phase's packages go to (None: refused).
ROLE_FOR = {"preparacion": "prueba", "simulacro": "prueba", "oficial": "oficial", "cerrado": None}


@dataclass(frozen=True)
class Deadline:
    what: str  # Spanish: «inicio del simulacro «Tercer simulacro»»
    at: datetime


@dataclass(frozen=True)
class Phase:
    name: str
    source: str  # «calendario», «operador» or «sin calendario»
    simulacro: str | None  # the window's name while in one
    next: Deadline | None
    override: dict[str, Any] | None  # the phase_set event in force

    def as_dict(self) -> dict[str, Any]:
        return {"fase": self.name, "origen": self.source, "simulacro": self.simulacro,
                "siguiente": None if self.next is None else
                {"que": self.next.what, "cuando": self.next.at.isoformat()},
                "fijada": None if self.override is None else
                {"por": (self.override.get("detail") or {}).get("by"),
                 "cuando": self.override.get("at")}}


def _deadlines(cfg: Config) -> list[Deadline]:
    op = cfg.operation
    out = []
    for n, w in enumerate(op.simulacros, 1):
        label = f"«{w.name}»" if w.name else f"n.º {n}"
        out += [Deadline(f"inicio del simulacro {label}", stored(w.start)),
                Deadline(f"fin del simulacro {label}", stored(w.end))]
    if op.start:
        out.append(Deadline("inicio de la publicación oficial", stored(op.start)))
    if op.end:
        end = stored(op.end)
        out.append(Deadline("fin de la publicación (cierre)", end))
        out.append(Deadline("fin de la permanencia del sitio (keep_hours)",
                            end + timedelta(hours=op.keep_hours)))
    return sorted(out, key=lambda d: d.at)


def calendar_phase(cfg: Config, now: datetime) -> tuple[str, str | None]:
    """The calendar's phase at ``now`` and the simulacro's name when in one."""
    op = cfg.operation
    for n, w in enumerate(op.simulacros, 1):
        if stored(w.start) <= now < stored(w.end):
            return "simulacro", w.name or f"simulacro n.º {n}"
    if op.end and now >= stored(op.end):
        return "cerrado", None
    if op.start and now >= stored(op.start):
        return "oficial", None
    if op.start or op.simulacros:
        return "preparacion", None
    return "oficial", None  # no calendar: as before the calendar existed


def current(cfg: Config, ledger: Ledger, now: datetime) -> Phase:
    upcoming = next((d for d in _deadlines(cfg) if d.at > now), None)
    override = _override(ledger)
    if override is not None:
        return Phase(override["detail"]["phase"], "operador", None, upcoming, override)
    name, window = calendar_phase(cfg, now)
    has_calendar = bool(cfg.operation.start or cfg.operation.end or cfg.operation.simulacros)
    return Phase(name, "calendario" if has_calendar else "sin calendario", window, upcoming, None)


def _override(ledger: Ledger) -> dict[str, Any] | None:
    last = ledger.events("phase_set", limit=1)
    if not last or (last[0].get("detail") or {}).get("phase") not in PHASES:
        return None  # never set, or «auto»: the calendar decides
    return last[0]


def operator() -> str:
    """Who is at the keyboard, for the record: SUDO_USER when run through sudo."""
    try:
        return os.environ.get("SUDO_USER") or getpass.getuser()
    except (KeyError, OSError):
        return "desconocido"


def set_phase(ledger: Ledger, phase: str, by: str) -> None:
    if phase not in SETTABLE:
        raise ValueError(phase)
    message = ("fase devuelta al calendario" if phase == "auto"
               else f"fase fijada por el operador: {LABELS[phase]}")
    ledger.event("phase_set", f"{message} ({by})", detail={"phase": phase, "by": by})
