"""The memoria's period: which ``[desde, hasta)`` the document covers, and why.

In order of precedence:

- ``--from``/``--to`` (``origen: opciones``), each parsed by ``moments.parse_moment``; a side not
  given falls back to the default's side;
- the operation (``origen: operacion``): ``[operation] start`` (or, without it, the first record)
  until ``[operation] end`` + ``keep_hours`` — the night and the permanence the convocatoria
  (I.2) requires;
- all the data (``origen: datos``): the first record to just after the last one, in the ledger
  (events, probes, incidents) and the analytics database.

An unreadable moment, or an empty or inverted period, is a ``DifusorError`` in Spanish.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from difusor.config import Config
from difusor.errors import DifusorError
from difusor.ledger import Ledger
from difusor.moments import in_zone, parse_moment, printed, stored

OPERATION, OPTIONS, DATA = "operacion", "opciones", "datos"
_AFTER_LAST = timedelta(seconds=1)  # the period's end is exclusive: the last record is inside


@dataclass(frozen=True)
class Period:
    start: datetime
    end: datetime
    origin: str  # operacion | opciones | datos

    def to_dict(self, zone: ZoneInfo) -> dict[str, str]:
        return {"desde": in_zone(self.start, zone), "hasta": in_zone(self.end, zone),
                "zona": zone.key, "origen": self.origin}


def resolve(cfg: Config, ledger: Ledger, since: str | None = None,
            until: str | None = None) -> Period:
    """The period from the options (None: not given), the operation or the data."""
    zone = ZoneInfo(cfg.site.timezone)
    start = parse_moment(since, zone, "--from") if since is not None else None
    end = parse_moment(until, zone, "--to") if until is not None else None
    if start is not None and end is not None:
        return _checked(start, end, OPTIONS, zone)
    default = default_period(cfg, ledger)
    if default is None:
        if start is None and end is None:
            raise DifusorError("no hay datos registrados (ni cortes, ni sondeos, ni visitas) ni "
                               "[operation] en la configuración: indica el periodo con --from "
                               "y --to")
        raise DifusorError("sin datos registrados no hay de dónde tomar el otro extremo: "
                           "indica --from y --to")
    if start is None and end is None:
        return _checked(default.start, default.end, default.origin, zone)
    return _checked(start or default.start, end or default.end, OPTIONS, zone)


def default_period(cfg: Config, ledger: Ledger) -> Period | None:
    """The operation's period when ``[operation] end`` is configured, else the data's; None
    when there is neither."""
    op = cfg.operation
    first, last = data_span(cfg, ledger)
    if op.end:
        end = datetime.fromisoformat(op.end) + timedelta(hours=op.keep_hours)
        start = datetime.fromisoformat(op.start) if op.start else first
        if start is None:  # no start configured and nothing recorded yet: the night before
            start = datetime.fromisoformat(op.end) - timedelta(days=1)
        return Period(start, end, OPERATION)
    if op.start and last is not None:
        return Period(datetime.fromisoformat(op.start), last + _AFTER_LAST, OPERATION)
    if first is None or last is None:
        return None
    return Period(first, last + _AFTER_LAST, DATA)


def data_span(cfg: Config, ledger: Ledger) -> tuple[datetime | None, datetime | None]:
    """The first and last moments anything was recorded: ledger events, probes, incidents,
    visits."""
    from difusor.analytics.metrics import span

    moments: list[datetime] = []
    for a, b in (ledger.events_span(), ledger.probes_span()):
        moments += [stored(x) for x in (a, b) if x]
    for row in ledger.incidents(limit=100_000):
        moments += [stored(x) for x in (row["started_at"], row.get("ended_at")) if x]
    moments += [m for m in span(cfg) if m is not None]
    if not moments:
        return None, None
    return min(moments), max(moments)


def _checked(start: datetime, end: datetime, origin: str, zone: ZoneInfo) -> Period:
    if end <= start:
        raise DifusorError(f"el periodo está vacío o invertido: el fin ({printed(end, zone)}) "
                           f"debe ser posterior al inicio ({printed(start, zone)})")
    return Period(start, end, origin)
