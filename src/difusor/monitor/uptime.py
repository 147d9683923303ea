"""Uptime in time, not in checks: how long each target was up, down or unknown over a range.

Each probe row stands for a stretch of time: from its ``at`` until the next probe of the same
target from the same vantage, but never longer than ``interval_s × STANDS_FOR`` (one late or
missed probe is tolerated; more is a monitor that was not running). Time no probe stands for is
**unknown**, not down. A result whose ``failure`` is ``authority_delay`` is the authority's delay,
not our downtime: it is counted apart and left out of the ratio, as is unknown time::

    ratio = up / (up + down)            budget = 0.1 % of the whole range

Several vantages (the local monitor, remote probe agents) are views of the same target: a moment
is *up* when any vantage saw it up (a failure seen from one place only is that place's network),
and *down* only when none did. The **public site** is the targets with ``public = true`` in
``[[monitor.targets]]`` (without any, the first configured target; without targets, the embedded
server the monitor then probes, ``origen``, or else the first target the ledger knows). Each is a
way visitors reach the site, so the site is down while *any* of them is down, unknown while any
is unknown, and up only when all are up. Time after ``now`` (the rest of the current month) is
not measured at all: it is neither up nor unknown.

The public site's **timeline** (``linea_de_tiempo``) is the same segments as up / degraded /
down / unknown: *degraded* is up but slow (every vantage that saw it up saw ``degraded``);
authority delay shows as up (the site answered). ``latencia``: see ``monitor/latency.py``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from typing import Any
from zoneinfo import ZoneInfo

from difusor.config import Config
from difusor.errors import DifusorError
from difusor.ledger import Ledger
from difusor.moments import storable
from difusor.monitor.latency import latency

STANDS_FOR = 2.0  # a result stands at most this many intervals
LOOKBACK = timedelta(hours=6)  # how far before the range a standing result is looked for
TARGET = 0.999  # the convocatoria's monthly availability (II.2.e)
SITE = "sitio público"

UP, DOWN, DELAY = "up", "down", "authority_delay"
DEGRADED, UNKNOWN = "degraded", "unknown"
_US = timedelta(microseconds=1)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class DownInterval:
    start: datetime
    end: datetime
    failure: str  # the probes' failures, e.g. "outage" or "outage, stale"

    @property
    def seconds(self) -> float:
        return (self.end - self.start).total_seconds()


@dataclass(frozen=True)
class Uptime:
    """Availability of one target (or of the public site) over ``[start, end)``."""

    target: str
    start: datetime
    end: datetime
    until: datetime  # measured up to here: min(end, now)
    up_seconds: float
    down_seconds: float
    unknown_seconds: float
    authority_delay_seconds: float
    down: list[DownInterval] = field(default_factory=list)
    targets: tuple[str, ...] = ()  # what it covers (the public site: the public targets)
    timeline: tuple[tuple[datetime, datetime, str], ...] = ()  # up|degraded|down|unknown

    @property
    def ratio(self) -> float | None:
        """up / (up + down): the known time only; None when nothing is known."""
        known = self.up_seconds + self.down_seconds
        return self.up_seconds / known if known else None

    @property
    def worst_ratio(self) -> float | None:
        """up / (up + down + unknown): all that can be claimed if every unknown second was down
        (the headline: never more than was measured)."""
        total = self.up_seconds + self.down_seconds + self.unknown_seconds
        return self.up_seconds / total if total else None

    @property
    def coverage(self) -> float | None:
        """The share of the time so far (``start`` → ``until``) whose state is known."""
        elapsed = (self.until - self.start).total_seconds()
        return max(0.0, elapsed - self.unknown_seconds) / elapsed if elapsed > 0 else None

    @property
    def budget_seconds(self) -> float:
        """What 99.9 % allows over the whole range (43.2 min in a 30-day month)."""
        return round((self.end - self.start).total_seconds() * (1 - TARGET), 6)

    @property
    def budget_left_seconds(self) -> float:
        return round(self.budget_seconds - self.down_seconds, 6)

    def to_dict(self) -> dict[str, Any]:
        ratio = self.ratio
        return {
            "objetivo": self.target,
            "objetivos": list(self.targets),
            "desde": self.start.isoformat(),
            "hasta": self.end.isoformat(),
            "medido_hasta": self.until.isoformat(),
            "disponible_s": self.up_seconds,
            "caido_s": self.down_seconds,
            "desconocido_s": self.unknown_seconds,
            "retraso_autoridad_s": self.authority_delay_seconds,
            "disponibilidad": ratio,
            "disponibilidad_pct": None if ratio is None else round(ratio * 100, 4),
            "disponibilidad_peor_caso_pct": _pct(self.worst_ratio),
            "cobertura_pct": _pct(self.coverage),
            "meta_pct": TARGET * 100,
            "presupuesto_s": self.budget_seconds,
            "presupuesto_restante_s": self.budget_left_seconds,
            "caidas": [{"inicio": d.start.isoformat(), "fin": d.end.isoformat(),
                        "segundos": d.seconds, "falla": d.failure} for d in self.down],
        }


@dataclass(frozen=True)
class UptimeReport:
    """The public site and each target over one range."""

    site: Uptime
    targets: list[Uptime]
    latency: list[dict[str, Any]] = field(default_factory=list)  # monitor/latency.py

    def to_dict(self) -> dict[str, Any]:
        return {"desde": self.site.start.isoformat(), "hasta": self.site.end.isoformat(),
                "medido_hasta": self.site.until.isoformat(), "meta_pct": TARGET * 100,
                "sitio_publico": self.site.to_dict(), "latencia": self.latency,
                "objetivos": [u.to_dict() for u in self.targets],
                "linea_de_tiempo": [{"inicio": a.isoformat(), "fin": b.isoformat(), "estado": s}
                                    for a, b, s in self.site.timeline]}


# A segment of a timeline: [start_us, end_us) in one state; failure only for DOWN.
_Seg = tuple[int, int, str, str]


def _pct(ratio: float | None) -> float | None:
    return None if ratio is None else round(ratio * 100, 4)


def uptime(ledger: Ledger, *, start: datetime, end: datetime, target: str | None = None,
           vantage: str | None = None, targets: Sequence[str] | None = None,
           now: datetime | None = None) -> Uptime:
    """Availability over ``[start, end)`` of ``target``; of ``targets`` combined as the public
    site is (down while any is down); with neither, of every target the ledger has probes of,
    combined the same way. ``vantage`` keeps one vantage's probes only."""
    start, end, until = _bounds(start, end, now)
    if target is not None:
        names: list[str] = [target]
    else:
        names = list(targets) if targets is not None else []
    lines = _timelines(ledger, start, until, names or None, vantage)
    if target is not None:
        return _summary(target, lines.get(target, []), start, end, until, (target,))
    names = names or sorted(lines)
    combined = _combine([lines.get(n, []) for n in names], _site_state)
    return _summary(SITE, combined, start, end, until, tuple(names))


def report(cfg: Config, ledger: Ledger, *, start: datetime, end: datetime,
           vantage: str | None = None, now: datetime | None = None) -> UptimeReport:
    """Each target (configured ones first, then any other the ledger has probes of) and the
    public site, over ``[start, end)``."""
    start, end, until = _bounds(start, end, now)
    lines = _timelines(ledger, start, until, None, vantage)
    configured = [t.name for t in cfg.monitor.targets]
    names = configured + sorted(set(lines) - set(configured))
    public = public_targets(cfg, names)
    per_target = [_summary(n, lines.get(n, []), start, end, until, (n,)) for n in names]
    site = _combine([lines.get(n, []) for n in public], _site_state)
    return UptimeReport(_summary(SITE, site, start, end, until, tuple(public)), per_target,
                        latency(ledger, since=storable(start), until=storable(until)))


def public_targets(cfg: Config, known: Sequence[str] = ()) -> list[str]:
    """The targets that make up the public site (see the module's docstring)."""
    public = [t.name for t in cfg.monitor.targets if t.public]
    if public:
        return public
    if cfg.monitor.targets:
        return [cfg.monitor.targets[0].name]
    from difusor.monitor.service import EMBEDDED  # what the monitor probes without targets

    return [EMBEDDED] if EMBEDDED in known else list(known[:1])


def month_range(month: str | None, zone: ZoneInfo, now: datetime) -> tuple[datetime, datetime]:
    """``YYYY-MM`` (default: ``now``'s month) as [first day 00:00, next first day) in ``zone``."""
    if month is None:
        local = now.astimezone(zone)
        year, mon = local.year, local.month
    else:
        try:
            parsed = datetime.strptime(month, "%Y-%m")
        except ValueError:
            raise DifusorError(f"«{month}» no es un mes AAAA-MM (p. ej. 2024-12)") from None
        year, mon = parsed.year, parsed.month
    first = datetime(year, mon, 1, tzinfo=zone)
    following = datetime(year + mon // 12, mon % 12 + 1, 1, tzinfo=zone)
    return first, following


# -- building timelines --------------------------------------------------------------------


def _bounds(start: datetime, end: datetime, now: datetime | None
            ) -> tuple[datetime, datetime, datetime]:
    if start.tzinfo is None or end.tzinfo is None:
        raise ValueError("start y end deben llevar zona horaria")
    if end <= start:
        raise DifusorError("el final del periodo debe ser posterior al inicio")
    now = now or datetime.now(UTC)
    return start, end, max(start, min(end, now))


def _us(when: datetime) -> int:
    return (when - _EPOCH) // _US


def _at(us: int) -> datetime:
    return _EPOCH + timedelta(microseconds=us)


def _timelines(ledger: Ledger, start: datetime, until: datetime, names: Sequence[str] | None,
               vantage: str | None) -> dict[str, list[_Seg]]:
    """Per target: what the probes say over [start, until), vantages already combined."""
    rows: list[Any] = []
    since, upto = storable(start - LOOKBACK), storable(until)
    if names is None:
        rows = ledger.probe_states(since=since, until=upto, vantage=vantage)
    else:
        for name in dict.fromkeys(names):
            rows += ledger.probe_states(target=name, since=since, until=upto, vantage=vantage)
    grouped: dict[str, dict[str, list[Any]]] = {}
    for row in rows:
        grouped.setdefault(row["target"], {}).setdefault(row["vantage"], []).append(row)
    lo, hi = _us(start), _us(until)
    out: dict[str, list[_Seg]] = {}
    for name, by_vantage in grouped.items():
        views = [_timeline(probes, lo, hi) for probes in by_vantage.values()]
        out[name] = views[0] if len(views) == 1 else _combine(views, _vantage_state)
    return out


def _state(row: Any) -> tuple[str, str]:  # a ledger.probe_states row
    failure = row["failure"] or ""
    if failure == "authority_delay":
        return DELAY, ""
    if row["ok"]:
        return UP, DEGRADED if failure == DEGRADED else ""
    return DOWN, failure or "outage"


def _timeline(rows: list[Any], lo: int, hi: int) -> list[_Seg]:
    """One vantage's probes of one target (time order) as merged segments within [lo, hi)."""
    times = [_us(datetime.fromisoformat(r["at"])) for r in rows]
    segs: list[_Seg] = []
    for i, row in enumerate(rows):
        begin = times[i]
        stop = begin + round(float(row["interval_s"]) * STANDS_FOR * 1_000_000)
        if i + 1 < len(rows):
            stop = min(stop, times[i + 1])
        begin, stop = max(begin, lo), min(stop, hi)
        if stop > begin:
            _append(segs, (begin, stop, *_state(row)))
    return segs


def _append(segs: list[_Seg], seg: _Seg) -> None:
    """Add ``seg`` after the last one, merging when they touch and say the same."""
    if segs:
        last = segs[-1]
        if last[1] == seg[0] and last[2:] == seg[2:]:
            segs[-1] = (last[0], seg[1], *seg[2:])
            return
    segs.append(seg)


# -- combining timelines -------------------------------------------------------------------


def _vantage_state(states: list[tuple[str, str] | None]) -> tuple[str, str] | None:
    """Views of one target: up if any vantage saw it up; down only if none did."""
    known = [s for s in states if s is not None]
    ups = [s for s in known if s[0] == UP]
    if ups:  # degraded only when every vantage that saw it up saw it slow
        return UP, "" if any(not s[1] for s in ups) else DEGRADED
    if any(s[0] == DELAY for s in known):
        return DELAY, ""
    return (DOWN, _failures(known)) if known else None


def _site_state(states: list[tuple[str, str] | None]) -> tuple[str, str] | None:
    """Ways into the public site: down while any is down, unknown while any is unknown."""
    if not states:
        return None
    down = [s for s in states if s is not None and s[0] == DOWN]
    if down:
        return DOWN, _failures(down)
    if any(s is None for s in states):
        return None
    if any(s[0] == DELAY for s in states if s):
        return DELAY, ""
    return UP, DEGRADED if any(s[1] == DEGRADED for s in states if s) else ""


def _failures(states: Iterable[tuple[str, str] | None]) -> str:
    names: dict[str, None] = {}
    for s in states:
        if s is not None and s[0] == DOWN:
            for name in s[1].split(", "):
                names.setdefault(name)
    return ", ".join(names)


Rule = Callable[[list[tuple[str, str] | None]], tuple[str, str] | None]


def _combine(lines: list[list[_Seg]], rule: Rule) -> list[_Seg]:
    """Several timelines as one, moment by moment, by ``rule``."""
    if len(lines) == 1:
        return lines[0]
    cuts = sorted({t for line in lines for seg in line for t in seg[:2]})
    index = [0] * len(lines)
    out: list[_Seg] = []
    for a, b in pairwise(cuts):
        states: list[tuple[str, str] | None] = []
        for k, line in enumerate(lines):
            i = index[k]
            while i < len(line) and line[i][1] <= a:
                i += 1
            index[k] = i
            states.append(line[i][2:] if i < len(line) and line[i][0] <= a else None)
        state = rule(states)
        if state is not None:
            _append(out, (a, b, *state))
    return out


def _summary(name: str, segs: list[_Seg], start: datetime, end: datetime, until: datetime,
             covers: tuple[str, ...]) -> Uptime:
    totals = {UP: 0, DOWN: 0, DELAY: 0}
    outages: list[list[Any]] = []  # [start_us, end_us, {failure: None}], touching ones merged
    for begin, stop, state, failure in segs:
        totals[state] += stop - begin
        if state != DOWN:
            continue
        if outages and outages[-1][1] == begin:
            outages[-1][1] = stop
        else:
            outages.append([begin, stop, {}])
        for one in failure.split(", "):
            outages[-1][2].setdefault(one)
    down = [DownInterval(_at(a), _at(b), ", ".join(f)) for a, b, f in outages]
    timeline = _public_timeline(segs, _us(start), _us(until))
    measured = _us(until) - _us(start)
    unknown = measured - sum(totals.values())
    return Uptime(
        target=name, start=start, end=end, until=until,
        up_seconds=totals[UP] / 1e6, down_seconds=totals[DOWN] / 1e6,
        unknown_seconds=unknown / 1e6, authority_delay_seconds=totals[DELAY] / 1e6,
        down=down, targets=covers, timeline=timeline,
    )


def _public_timeline(segs: list[_Seg], lo: int, hi: int
                     ) -> tuple[tuple[datetime, datetime, str], ...]:
    """``segs`` as up/degraded/down/unknown over [lo, hi): the gaps between them are unknown."""
    out: list[list[Any]] = []
    cursor = lo
    for begin, stop, state, failure in [*segs, (hi, hi, UNKNOWN, "")]:
        pieces = [(cursor, begin, UNKNOWN)] if begin > cursor else []
        if stop > begin:
            shown = DOWN if state == DOWN else DEGRADED if failure == DEGRADED else UP
            pieces.append((begin, stop, shown))
        for a, b, name in pieces:
            if out and out[-1][1] == a and out[-1][2] == name:
                out[-1][1] = b
            else:
                out.append([a, b, name])
        cursor = max(cursor, stop)
    return tuple((_at(a), _at(b), s) for a, b, s in out)
