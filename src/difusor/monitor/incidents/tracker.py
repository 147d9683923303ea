"""The incident tracker: probe results, the authority's pace and the disk open and close
incidents; each one opened is filled in (cause, impact, measures) and announced.

A target's probes open an incident of a kind after ``fail_after`` consecutive probes with that
finding; ``started_at`` is the *first* of them. The first probe without it moves the incident to
*monitoring* and is its ``ended_at`` once ``recover_after`` consecutive probes confirm it (a new
failure meanwhile sends it back).
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from datetime import timedelta
from typing import Any
from zoneinfo import ZoneInfo

from difusor.config import Config
from difusor.ledger import Ledger, utcnow
from difusor.moments import storable, stored
from difusor.monitor.incidents.causes import authority_cause, suggest_cause
from difusor.monitor.incidents.clock import local, seconds
from difusor.monitor.incidents.impact import impact, impact_text
from difusor.monitor.incidents.kinds import KINDS, SEVERITIES, SEVERITY_RANK
from difusor.monitor.incidents.ledgerevents import LedgerEvents
from difusor.monitor.incidents.measures import automatic_measures
from difusor.monitor.incidents.streaks import GAP_INTERVALS, Streak, finding, verdicts
from difusor.monitor.probe import ProbeResult
from difusor.paths import StateLayout

Notify = Callable[[dict[str, Any], str], None]
DISK_SEVERITY = {"warning": "minor", "critical": "critical"}  # a volume's level → severity


def set_cause(ledger: Ledger, incident_id: int, cause: str) -> None:
    """The operator's root cause: an incident still being investigated becomes identified."""
    incident = ledger.incident(incident_id)
    if incident is None:
        raise KeyError(incident_id)
    fields: dict[str, Any] = {"cause": cause}
    if incident["state"] == "investigating" and cause:
        fields["state"] = "identified"
    ledger.incident_update(incident_id, **fields)


class IncidentTracker:
    """Turns observations into incident rows; one per monitor (not thread-safe)."""

    def __init__(self, cfg: Config, ledger: Ledger, *, on_incident: Notify | None = None,
                 log: Callable[[str], None] | None = None) -> None:
        self.cfg = cfg
        self.ledger = ledger
        self.on_incident = on_incident
        self.log = log or (lambda _m: None)
        self.access_log = StateLayout(cfg.state_dir).access_log
        self.zone = ZoneInfo(cfg.site.timezone)
        self._streaks: dict[tuple[str, str, str], Streak] = {}
        self._restored: set[tuple[str, str]] = set()
        self._events = LedgerEvents(self)

    # -- probes ---------------------------------------------------------------------------

    def observe(self, result: ProbeResult, at: str, *, vantage: str = "local",
                interval_s: float | None = None) -> None:
        interval = interval_s or self.cfg.monitor.interval
        if (result.target, vantage) not in self._restored:
            self._restore(result.target, vantage, before=at, interval=interval)
        target = result.target if vantage == "local" else f"{result.target} ({vantage})"
        for kind, failed in verdicts(result).items():
            streak = self._streaks.setdefault((result.target, vantage, kind), Streak())
            streak.step(failed, at, interval)
            if failed:
                self._failing(kind, target, streak, result, vantage)
            else:
                self._passing(kind, target, at)

    def _restore(self, name: str, vantage: str, *, before: str, interval: float) -> None:
        """Streaks a restarted monitor was in the middle of, from the ledger's last probes."""
        self._restored.add((name, vantage))
        span = GAP_INTERVALS * interval * (self.cfg.monitor.fail_after + 1)
        since = storable(stored(before) - timedelta(seconds=span))
        for row in self.ledger.probes(target=name, since=since, until=before, vantage=vantage):
            result = ProbeResult(row["target"], bool(row["ok"]), row["failure"], row["status"],
                                 row["latency_ms"], row["corte"], row["message"] or "",
                                 row["detail"] or {})
            for kind, failed in verdicts(result).items():
                streak = self._streaks.setdefault((name, vantage, kind), Streak())
                streak.step(failed, row["at"], row["interval_s"])

    def _failing(self, kind: str, target: str, streak: Streak, result: ProbeResult,
                 vantage: str) -> None:
        incident = self.ledger.open_incident(kind, target)
        if incident is not None:
            detail = incident["detail"]
            detail["failed_probes"] = detail.get("failed_probes", 0) + 1
            detail["last_message"] = finding(result, kind)
            fields: dict[str, Any] = {"detail": detail}
            if incident["state"] == "monitoring":  # it came back: not over yet
                detail.pop("first_ok_at", None)
                detail["ok_streak"] = 0
                fields["state"] = "identified" if incident["cause"] else "investigating"
                self.log(f"incidente n.º {incident['id']}: «{target}» vuelve a fallar "
                         f"({finding(result, kind)})")
            self.ledger.incident_update(incident["id"], **fields)
            return
        if streak.fails < self.cfg.monitor.fail_after or streak.first_at is None:
            return
        label, severity = KINDS[kind]
        if kind == "tls" and result.detail.get("severity") == "warning":
            severity = "warning"
        evidence = {
            "label": label, "vantage": vantage, "failed_probes": streak.fails,
            "last_message": finding(result, kind),
            "status": result.status, "served_release": result.detail.get("served_release"),
            "expected_release": result.detail.get("expected_release"),
            "error": result.detail.get("error"), "mismatched": result.detail.get("mismatched"),
            "tls_days_left": result.detail.get("tls_days_left"),
            "latency_ms": result.latency_ms,
        }
        evidence = {k: v for k, v in evidence.items() if v is not None}
        self.open(kind, target=target, started_at=streak.first_at, severity=severity,
                  cause=suggest_cause(kind, evidence, self.ledger, target=target,
                                      since=streak.first_at, zone=self.zone),
                  detail=evidence)

    def _passing(self, kind: str, target: str, at: str) -> None:
        incident = self.ledger.open_incident(kind, target)
        if incident is None:
            return
        detail = incident["detail"]
        detail["ok_streak"] = detail.get("ok_streak", 0) + 1
        detail.setdefault("first_ok_at", at)
        if detail["ok_streak"] >= self.cfg.monitor.recover_after:
            self.resolve(incident, ended_at=detail["first_ok_at"], detail=detail)
        elif incident["state"] != "monitoring":
            self.ledger.incident_update(incident["id"], state="monitoring", detail=detail)
        else:
            self.ledger.incident_update(incident["id"], detail=detail)

    # -- the ledger's own events ------------------------------------------------------------

    def scan_ledger(self) -> None:
        """Open and resolve incidents for events written since the last scan (see
        ``ledgerevents``)."""
        self._events.scan()

    # -- the authority ------------------------------------------------------------------------

    def authority(self, *, overdue_since: str | None, last_activation: str | None) -> None:
        """``overdue_since``: when the next corte was due and had not come (None: on time)."""
        incident = self.ledger.open_incident("authority_delay", None)
        if incident is not None:
            if last_activation and last_activation > incident["started_at"]:
                self.resolve(incident, ended_at=last_activation)
            elif overdue_since is not None:
                since = incident["detail"].get("last_activation") or incident["started_at"]
                cause = authority_cause(self.ledger, since, self.zone)
                if cause != incident["cause_suggested"]:
                    self.ledger.incident_update(incident["id"], cause_suggested=cause)
            return
        if overdue_since is None:
            return
        since = last_activation or overdue_since
        self.open("authority_delay", target=None, started_at=overdue_since,
                  cause=authority_cause(self.ledger, since, self.zone),
                  detail={"last_activation": last_activation})

    # -- the disk -----------------------------------------------------------------------------

    def disk(self, target: str, level: str, at: str, *, cause: Callable[[], str],
             detail: dict[str, Any]) -> None:
        """One volume's round (``monitor/disk.py``): ``level`` "warning" or "critical" opens an
        incident on ``target`` (minor or critical) or raises an open one's severity; "ok"
        resolves it. ``cause`` is only called when the text is needed (it estimates ``gc``)."""
        incident = self.ledger.open_incident("disk", target)
        if level == "ok":
            if incident is not None:
                self.resolve(incident, ended_at=at, detail={**incident["detail"], **detail})
            return
        severity = DISK_SEVERITY[level]
        if incident is None:
            self.open("disk", target=target, started_at=at, severity=severity, cause=cause(),
                      detail=detail)
            return
        fields: dict[str, Any] = {"detail": {**incident["detail"], **detail}}
        worse = SEVERITY_RANK.index(severity) > SEVERITY_RANK.index(incident["severity"])
        if worse:  # the worst level reached stays: a disk that recovers a little is not fixed
            fields.update(severity=severity, cause_suggested=cause())
        self.ledger.incident_update(incident["id"], **fields)
        if worse:
            self.log(f"incidente n.º {incident['id']}: el disco de «{target}» empeora "
                     f"({SEVERITIES[severity]})")
            self._notify(self.ledger.incident(incident["id"]) or {}, "updated")

    def disks_watched(self, targets: Collection[str], at: str) -> None:
        """Resolve disk incidents on volumes no longer watched (a folder moved to another
        mount, the configuration changed): nobody would ever close them otherwise."""
        for incident in self.ledger.incidents(open_only=True):
            if incident["kind"] == "disk" and incident["target"] not in targets:
                self.resolve(incident, ended_at=at)

    # -- opening and closing ----------------------------------------------------------------

    def open(self, kind: str, *, target: str | None, started_at: str, cause: str,
             severity: str | None = None, detail: dict[str, Any] | None = None,
             ended_at: str | None = None, measures: list[dict[str, Any]] | None = None,
             confirmed_cause: bool = False) -> dict[str, Any]:
        """Open an incident (and, with ``ended_at``, close it at once: a refused package)."""
        label, default = KINDS[kind]
        incident_id = self.ledger.incident_opened(
            kind=kind, severity=severity or default, started_at=started_at, target=target,
            cause_suggested=cause, detail={"label": label, **(detail or {})})
        if confirmed_cause:
            self.ledger.incident_update(incident_id, cause=cause, state="identified")
        if measures:
            self.ledger.incident_update(incident_id, measures=measures)
        self._refresh(incident_id, until=ended_at)
        incident = self.ledger.incident(incident_id) or {}
        where = f" de «{target}»" if target else ""
        self.log(f"incidente n.º {incident_id} abierto: {label}{where} desde "
                 f"{local(started_at, self.zone)}; causa probable: {cause}")
        self._notify(incident, "opened")
        if ended_at is not None:
            self.resolve(incident, ended_at=ended_at)
        return incident

    def resolve(self, incident: dict[str, Any], *, ended_at: str,
                detail: dict[str, Any] | None = None) -> None:
        fields: dict[str, Any] = {"state": "resolved", "ended_at": ended_at}
        if detail is not None:
            fields["detail"] = detail
        self.ledger.incident_update(incident["id"], **fields)
        self._refresh(incident["id"], until=ended_at)
        done = self.ledger.incident(incident["id"]) or incident
        lasted = seconds(done["started_at"], ended_at)
        self.log(f"incidente n.º {done['id']} resuelto ({KINDS[done['kind']][0]}"
                 f"{' de «' + done['target'] + '»' if done['target'] else ''}): duró "
                 f"{lasted:.0f} s")
        self._notify(done, "resolved")

    def _notify(self, incident: dict[str, Any], change: str) -> None:
        if self.on_incident is not None and incident:
            try:
                self.on_incident(incident, change)
            except Exception as exc:  # an alert channel must never stop the monitor
                self.log(f"aviso del incidente n.º {incident.get('id')} falló: {exc!r}")

    def _refresh(self, incident_id: int, *, until: str | None) -> None:
        """Recompute impact and automatic measures over the incident's window."""
        incident = self.ledger.incident(incident_id)
        if incident is None:
            return
        start, end = incident["started_at"], until or incident["ended_at"] or utcnow()
        detail = incident["detail"]
        fields: dict[str, Any] = {}
        found = impact(self.access_log, start, end, estimate=incident["kind"] == "outage")
        if found is not None:
            text = impact_text(found, incident["kind"])
            detail["impact"] = found
            if not incident["impact"] or incident["impact"] == detail.get("impact_auto"):
                fields["impact"] = text
            detail["impact_auto"] = text
        auto = automatic_measures(self.ledger, incident, start, end,
                                  margin=self.cfg.monitor.interval)
        kept = [m for m in incident["measures"] if not (isinstance(m, dict) and
                                                          m.get("by") == "auto")]
        fields["measures"] = sorted([*auto, *kept], key=lambda m: str(
            m.get("at", "") if isinstance(m, dict) else ""))
        fields["detail"] = detail
        self.ledger.incident_update(incident_id, **fields)
