"""The monitor under ``difusor run``: every ``[monitor] interval``, probe, record, keep incidents.

Each round computes what a healthy target serves (``expected_state``, its sample rotating through
the live manifest), probes every ``[[monitor.targets]]`` at once (none configured: the embedded
server at ``[web] listen``, named ``origen``) and writes one ``probes`` row per target with
``vantage = "local"`` and ``interval_s = [monitor] interval``; then it feeds the incident
tracker with those results, with the rows remote agents reported since the last round, with the
authority's state and with the ledger's new events.

**Authority delay.** Operation is on from the first activation until ``[operation] end``. While
no corte was *published* (rollbacks do not count) for longer than ``cadence + grace``, the
authority is late: a probe that finds the target otherwise up is recorded with
``failure = "authority_delay"`` and ``ok = 1`` — uptime counts that time apart, never as our
downtime — while a probe that finds it down stays down. An ``authority_delay`` incident (no
target) runs from when the corte was due until the next publication.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from difusor.config import Config, parse_address
from difusor.config.operation import DISK_THRESHOLDS
from difusor.ledger import Ledger, utcnow
from difusor.monitor import disk
from difusor.monitor.chaincheck import ChainCheck
from difusor.monitor.expected import Expected, expected_state
from difusor.monitor.incidents import IncidentTracker, Notify
from difusor.monitor.probe import DOWN, ProbeResult, make_client, probe_target
from difusor.paths import StateLayout
from difusor.publish.activate import live_release
from difusor.store.layout import StoreLayout

LOCAL = "local"
EMBEDDED = "origen"  # the embedded server's name when no target is configured
STARTUP_GRACE = 10.0  # seconds the first round waits for targets to listen


@dataclass(frozen=True)
class Target:
    name: str
    url: str
    ca_file: str = ""
    host: str = ""  # the Host asked for ("" = the URL's)


def targets(cfg: Config) -> list[Target]:
    """What is probed: the configured targets, or the embedded server."""
    if cfg.monitor.targets:
        return [Target(t.name, t.url, str(cfg.path(t.ca_file)) if t.ca_file else "")
                for t in cfg.monitor.targets]
    host, port = parse_address(cfg.web.listen)
    host = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)
    if ":" in host:
        host = f"[{host}]"
    tls = bool(cfg.web.tls_cert and cfg.web.tls_key)
    url = f"{'https' if tls else 'http'}://{host}:{port}"
    # One named site of several: the server tells sites apart by Host.
    host = cfg.site.hosts[0] if cfg.site_name and cfg.site.hosts else ""
    return [Target(EMBEDDED, url, str(cfg.path(cfg.web.tls_cert)) if tls else "", host)]


class Monitor:
    def __init__(self, cfg: Config, ledger: Ledger, *, log: Callable[[str], None] | None = None,
                 on_incident: Notify | None = None, disks: Config | None = None,
                 watch_disks: bool = True) -> None:
        """``disks``: the file whose volumes this monitor watches (default ``cfg``; with
        ``[sites]`` the whole file, given to one site's monitor only, so a shared disk is one
        incident, not one per site); ``watch_disks=False``: none."""
        self.cfg = cfg
        self.disks = (disks or cfg) if watch_disks else None
        self.ledger = ledger
        self.log = log or (lambda _m: None)
        self.targets = targets(cfg)
        self.layout = StoreLayout(StateLayout(cfg.state_dir).store)
        self.tracker = IncidentTracker(cfg, ledger, on_incident=on_incident, log=self.log)
        self._offset = 0
        self._remote_since: str | None = None
        self.chain = ChainCheck(cfg.monitor.sample)

    def run(self, stop: threading.Event) -> None:
        interval = self.cfg.monitor.interval
        names = ", ".join(f"{t.name} ({t.url})" for t in self.targets)
        self.log(f"monitor: sondeo cada {interval:g} s de {names}")
        self._await_listening(stop, min(interval, STARTUP_GRACE))
        due = time.monotonic()
        while not stop.is_set():
            try:
                self.check_once()
            except Exception as exc:  # one bad round must not stop the record
                self.log(f"monitor: falla inesperada en un sondeo: {exc!r}")
            due = max(due + interval, time.monotonic())
            if stop.wait(max(0.0, due - time.monotonic())):
                return

    def _await_listening(self, stop: threading.Event, grace: float) -> None:
        """Under ``difusor run`` the web server starts beside the monitor: give it ``grace``
        seconds to listen before the first probe (time not yet probed is unknown, not down)."""
        deadline = time.monotonic() + grace
        pending = list(self.targets)
        while pending and time.monotonic() < deadline:
            pending = [t for t in pending if not _listening(t.url)]
            if pending and stop.wait(0.1):
                return

    def check_once(self) -> list[ProbeResult]:
        """One round: probe, record, update incidents. Returns the results recorded."""
        monitor = self.cfg.monitor
        offset = self._offset
        self._offset += max(1, monitor.sample)
        expected = expected_state(self.cfg, self.ledger, sample=monitor.sample, offset=offset)
        rounds = self._probe_all(expected)
        if live_release(self.layout) != expected.release_id:
            # A corte went live while probing: judge again against it, not the one before.
            fresh = expected_state(self.cfg, self.ledger, sample=monitor.sample, offset=offset)
            again = [t for t, (_at, r) in zip(self.targets, rounds, strict=True)
                     if r.failure in ("stale", "integrity")]
            if again:
                redo = dict(zip([t.name for t in again], self._probe_all(fresh, again),
                                strict=True))
                rounds = [redo.get(t.name, pair)
                          for t, pair in zip(self.targets, rounds, strict=True)]
        overdue, last_publish = self._authority()
        results = []
        for at, result in rounds:
            if overdue is not None and result.failure not in DOWN and result.ok:
                result = _delayed(result, overdue)
            self.ledger.probe_recorded(**result.ledger_fields(), at=at, vantage=LOCAL,
                                       interval_s=monitor.interval)
            self.tracker.observe(result, at, interval_s=monitor.interval)
            results.append(result)
        self._remote()
        self._disk()
        self.tracker.authority(overdue_since=overdue, last_activation=last_publish)
        self.tracker.scan_ledger()
        return results

    def _disk(self) -> None:
        """Every volume the difusor writes to, each round (a handful of stat calls): one
        incident per volume below ``[monitor] disk_*``."""
        cfg = self.disks
        if cfg is None:
            return
        at = utcnow()
        if not any(getattr(cfg.monitor, k) for k in DISK_THRESHOLDS):
            self.tracker.disks_watched((), at)  # watching turned off: nothing stays open
            return
        try:
            found = disk.volumes(cfg)
        except OSError as exc:
            self.log(f"monitor: no se pudo medir el disco: {exc}")
            return
        for volume in found:
            lvl, why = disk.level(volume, cfg.monitor)
            self.tracker.disk(disk.name(volume), lvl, at, detail=disk.detail(volume, lvl),
                              cause=lambda v=volume, w=why: disk.disk_cause(v, w, cfg))
        self.tracker.disks_watched({disk.name(v) for v in found}, at)

    def _probe_all(self, expected: Expected, which: list[Target] | None = None
                   ) -> list[tuple[str, ProbeResult]]:
        chosen = self.targets if which is None else which
        if len(chosen) == 1:
            return [self._probe(chosen[0], expected)]
        with ThreadPoolExecutor(len(chosen), thread_name_prefix="sondeo") as pool:
            return list(pool.map(lambda t: self._probe(t, expected), chosen))

    def _probe(self, target: Target, expected: Expected) -> tuple[str, ProbeResult]:
        at = utcnow()
        monitor = self.cfg.monitor
        result = probe_target(target.name, target.url, expected, timeout=monitor.timeout,
                              degraded_ms=monitor.degraded_ms,
                              tls_warn_days=monitor.tls_warn_days, ca_file=target.ca_file,
                              host=target.host)
        with make_client(monitor.timeout, target.ca_file, target.host) as client:
            result = self.chain.apply(result, target.url, client,
                                      required=self.ledger.chain_head() is not None)
        return at, result

    def _authority(self) -> tuple[str | None, str | None]:
        """(when the next corte was due, if it is late now; the last publication's time)."""
        last = next((a for a in self.ledger.activations(50) if a.cause == "publish"), None)
        if last is None:
            return None, None  # operation has not started
        now = datetime.now(UTC)
        end = self.cfg.operation.end
        if end and now > datetime.fromisoformat(end):
            return None, last.at  # operation over: no corte is expected any more
        monitor = self.cfg.monitor
        due = datetime.fromisoformat(last.at) + timedelta(seconds=monitor.cadence + monitor.grace)
        return (due.isoformat(timespec="microseconds") if now > due else None), last.at

    def _remote(self) -> None:
        """Probe rows remote agents reported since the last round: their incidents too."""
        now = utcnow()
        since, self._remote_since = self._remote_since or now, now
        for row in self.ledger.probes(since=since, until=now):
            if row["vantage"] == LOCAL:
                continue
            result = ProbeResult(row["target"], bool(row["ok"]), row["failure"], row["status"],
                                 row["latency_ms"], row["corte"], row["message"] or "",
                                 row["detail"] or {})
            self.tracker.observe(result, row["at"], vantage=row["vantage"],
                                 interval_s=row["interval_s"])


def _listening(url: str) -> bool:
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        with socket.create_connection((parts.hostname or "", port), timeout=0.5):
            return True
    except OSError:
        return False


def _delayed(result: ProbeResult, due: str) -> ProbeResult:
    late = (datetime.now(UTC) - datetime.fromisoformat(due)).total_seconds()
    detail: dict[str, Any] = {**result.detail, "authority_due": due}
    if result.failure is not None:
        detail["finding"] = result.failure
    note = f"retraso de la autoridad: el siguiente corte debía llegar hace {late:.0f} s"
    return ProbeResult(result.target, True, "authority_delay", result.status, result.latency_ms,
                       result.corte, f"{result.message}; {note}", detail)
