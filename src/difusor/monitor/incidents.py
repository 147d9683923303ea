"""Incidents: opened from probe results and ledger events, with every field the memoria asks.

A target's probes open an incident of a kind (outage, stale, integrity, header, tls, degraded)
after ``fail_after`` consecutive probes with that finding; ``started_at`` is the *first* of them.
The first probe without it moves the incident to *monitoring* and is its ``ended_at`` once
``recover_after`` consecutive probes confirm it (a new failure meanwhile sends it back). A gap
longer than ``GAP_INTERVALS`` probe intervals (the monitor was not running) breaks a streak: it
is unknown time, not failures. A probe that got no answer says nothing about stale bytes or
headers, so it neither breaks nor extends those streaks.

The ledger opens the others: a refused package (opened and resolved at once), ``origin_out``
until ``origin_back``, ``purge_failed``/``edge_stale`` until the next good purge or edge check,
``attack`` until ``attack_over`` (written by whatever detects one), and the monitor's own
authority delay (see ``service``).

Each incident carries a suggested root cause from the evidence (the operator's ``cause`` wins and
moves it to *identified*), its impact from the embedded server's access log (requests, distinct
IPs, errors ≥ 500 in the window; the monitor's own requests and ``/_difusor/`` health checks
left out) and the automatic measures
the ledger shows in the window; an operator's measures are kept as they are.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from pathlib import Path
from typing import Any, BinaryIO
from zoneinfo import ZoneInfo

import orjson

from difusor.config import Config
from difusor.ledger import Ledger, utcnow
from difusor.moments import stored
from difusor.monitor.probe import ProbeResult
from difusor.paths import StateLayout

# kind → (Spanish label, default severity)
KINDS: dict[str, tuple[str, str]] = {
    "outage": ("caída", "critical"),
    "degraded": ("servicio degradado", "minor"),
    "stale": ("corte desactualizado", "major"),
    "integrity": ("integridad", "critical"),
    "header": ("encabezado incorrecto", "major"),
    "tls": ("certificado TLS", "critical"),
    "refused": ("paquete rechazado", "minor"),
    "attack": ("ataque", "major"),
    "purge": ("falla de purga", "major"),
    "origin_out": ("origen fuera de rotación", "major"),
    "authority_delay": ("retraso de la autoridad", "warning"),
    "disk": ("disco casi lleno", "major"),
}
STATES = {"investigating": "investigando", "identified": "identificado",
          "monitoring": "en observación", "resolved": "resuelto"}
SEVERITIES = {"critical": "crítica", "major": "mayor", "minor": "menor", "warning": "aviso",
              "info": "informativa"}
PROBE_KINDS = ("outage", "integrity", "stale", "header", "tls", "degraded")
GAP_INTERVALS = 2.5
LEDGER_LOOKBACK = timedelta(days=1)  # events a (re)started monitor still turns into incidents
_LEDGER_EVENTS = ("refused", "origin_out", "origin_back", "purge_failed", "edge_stale", "purge",
                  "edge_verified", "attack", "attack_over")
MONITOR_AGENTS = (b"difusor-",)  # user agents of our own probes, not visitors

Notify = Callable[[dict[str, Any], str], None]


def set_cause(ledger: Ledger, incident_id: int, cause: str) -> None:
    """The operator's root cause: an incident still being investigated becomes identified."""
    incident = ledger.incident(incident_id)
    if incident is None:
        raise KeyError(incident_id)
    fields: dict[str, Any] = {"cause": cause}
    if incident["state"] == "investigating" and cause:
        fields["state"] = "identified"
    ledger.incident_update(incident_id, **fields)


@dataclass
class _Streak:
    fails: int = 0
    first_at: str | None = None
    last_at: str | None = None

    def step(self, failed: bool, at: str, interval: float) -> None:
        if self.last_at and _seconds(self.last_at, at) > GAP_INTERVALS * interval:
            self.fails, self.first_at = 0, None  # unknown time in between: a new streak
        self.last_at = at
        if failed:
            self.fails += 1
            self.first_at = self.first_at or at
        else:
            self.fails, self.first_at = 0, None


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
        self._streaks: dict[tuple[str, str, str], _Streak] = {}
        self._restored: set[tuple[str, str]] = set()
        self._cursor: int | None = None  # the last ledger event seen
        self._seen: set[str] = set()
        self._spans: list[tuple[str, str | None, str, str | None]] = []

    # -- probes ---------------------------------------------------------------------------

    def observe(self, result: ProbeResult, at: str, *, vantage: str = "local",
                interval_s: float | None = None) -> None:
        interval = interval_s or self.cfg.monitor.interval
        if (result.target, vantage) not in self._restored:
            self._restore(result.target, vantage, before=at, interval=interval)
        target = result.target if vantage == "local" else f"{result.target} ({vantage})"
        for kind, failed in _verdicts(result).items():
            streak = self._streaks.setdefault((result.target, vantage, kind), _Streak())
            streak.step(failed, at, interval)
            if failed:
                self._failing(kind, target, streak, result, vantage)
            else:
                self._passing(kind, target, at)

    def _restore(self, name: str, vantage: str, *, before: str, interval: float) -> None:
        """Streaks a restarted monitor was in the middle of, from the ledger's last probes."""
        self._restored.add((name, vantage))
        span = GAP_INTERVALS * interval * (self.cfg.monitor.fail_after + 1)
        since = _iso(stored(before) - timedelta(seconds=span))
        for row in self.ledger.probes(target=name, since=since, until=before, vantage=vantage):
            result = ProbeResult(row["target"], bool(row["ok"]), row["failure"], row["status"],
                                 row["latency_ms"], row["corte"], row["message"] or "",
                                 row["detail"] or {})
            for kind, failed in _verdicts(result).items():
                streak = self._streaks.setdefault((name, vantage, kind), _Streak())
                streak.step(failed, row["at"], row["interval_s"])

    def _failing(self, kind: str, target: str, streak: _Streak, result: ProbeResult,
                 vantage: str) -> None:
        incident = self.ledger.open_incident(kind, target)
        if incident is not None:
            detail = incident["detail"]
            detail["failed_probes"] = detail.get("failed_probes", 0) + 1
            detail["last_message"] = _finding(result, kind)
            fields: dict[str, Any] = {"detail": detail}
            if incident["state"] == "monitoring":  # it came back: not over yet
                detail.pop("first_ok_at", None)
                detail["ok_streak"] = 0
                fields["state"] = "identified" if incident["cause"] else "investigating"
                self.log(f"incidente n.º {incident['id']}: «{target}» vuelve a fallar "
                         f"({_finding(result, kind)})")
            self.ledger.incident_update(incident["id"], **fields)
            return
        if streak.fails < self.cfg.monitor.fail_after or streak.first_at is None:
            return
        label, severity = KINDS[kind]
        if kind == "tls" and result.detail.get("severity") == "warning":
            severity = "warning"
        evidence = {
            "label": label, "vantage": vantage, "failed_probes": streak.fails,
            "last_message": _finding(result, kind),
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
        """Open and resolve incidents for events written since the last scan (on the first
        scan: the last ``LEDGER_LOOKBACK``, skipping events that already have their incident)."""
        if self._cursor is None:
            since = _iso(datetime.now(UTC) - LEDGER_LOOKBACK)
            known = self.ledger.incidents(since=since)
            self._seen = {str(i["detail"].get("source")) for i in known}
            self._spans = [(i["kind"], i["target"], i["started_at"], i["ended_at"])
                           for i in known]
            newest = self.ledger.events(limit=1)
            self._cursor = int(newest[0]["id"]) if newest else 0
            events = self.ledger.events_since(kinds=_LEDGER_EVENTS, since=since)
        else:
            events = self.ledger.events_since(after_id=self._cursor, kinds=_LEDGER_EVENTS)
        for event in events:
            self._cursor = max(self._cursor, int(event["id"]))
            if f"event:{event['id']}" not in self._seen:
                self._ledger_event(event)

    def _ledger_event(self, event: dict[str, Any]) -> None:
        kind, detail = event["kind"], event["detail"] or {}
        source = {"source": f"event:{event['id']}", "event": event["message"]}
        if kind == "refused":
            package = self.ledger.package(event["package_id"]) if event["package_id"] else None
            name = package["name"] if package else "?"
            reason = (package or {}).get("reason") or event["message"]
            self.open("refused", target=name, started_at=(package or event).get(
                "received_at") or event["at"], ended_at=event["at"], cause=reason,
                confirmed_cause=True, detail={**source, "package_id": event["package_id"],
                                              "reason_code": (package or {}).get("reason_code")})
            return
        opening = {"origin_out": ("origin_out", "origin"), "purge_failed": ("purge", "cdn"),
                   "edge_stale": ("purge", "cdn"), "attack": ("attack", "target")}
        closing = {"origin_back": ("origin_out", "origin"), "purge": ("purge", "cdn"),
                   "edge_verified": ("purge", "cdn"), "attack_over": ("attack", "target")}
        if kind in opening:
            incident_kind, key = opening[kind]
            target = detail.get(key)
            covered = any(k == incident_kind and t == target and start <= event["at"] and
                          (end is None or event["at"] <= end)
                          for k, t, start, end in self._spans)  # replayed after a restart
            if not covered and self.ledger.open_incident(incident_kind, target) is None:
                cause = event["message"] or ""
                if incident_kind == "origin_out" and detail.get("error"):
                    cause = f"el origen no aceptó el corte: {detail['error']}"
                self.open(incident_kind, target=target, started_at=event["at"], cause=cause,
                          detail=source)
        elif kind in closing:
            incident_kind, key = closing[kind]
            incident = self.ledger.open_incident(incident_kind, detail.get(key))
            if incident is not None:
                self.resolve(incident, ended_at=event["at"])

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

    def disk(self, folder: str, free: int | None, minimum: int, at: str) -> None:
        """``free``: bytes free under ``folder`` (None: it could not be read, which counts as
        low). Opens one incident while below ``minimum``; resolves it once above."""
        incident = self.ledger.open_incident("disk", folder)
        low = free is None or free < minimum
        if incident is not None and not low:
            self.resolve(incident, ended_at=at)
        elif incident is None and low:
            shown = "no se puede leer" if free is None else f"quedan {free / 2**20:.0f} MB"
            self.open("disk", target=folder, started_at=at, detail={"free_bytes": free},
                      cause=f"espacio en disco bajo {folder}: {shown} (mínimo "
                      f"{minimum / 2**20:.0f} MB); los paquetes que no quepan se reintentan solos")

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
                 f"{_local(started_at, self.zone)}; causa probable: {cause}")
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
        seconds = _seconds(done["started_at"], ended_at)
        self.log(f"incidente n.º {done['id']} resuelto ({KINDS[done['kind']][0]}"
                 f"{' de «' + done['target'] + '»' if done['target'] else ''}): duró "
                 f"{seconds:.0f} s")
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


# -- what a probe says about each kind ------------------------------------------------------


def _verdicts(result: ProbeResult) -> dict[str, bool]:
    """kind → failed (True) / passed (False); kinds the probe could not judge are absent."""
    found = {f["failure"] for f in result.detail.get("findings", ())}
    if result.failure in PROBE_KINDS:
        found.add(result.failure)
    found &= set(PROBE_KINDS)
    answered = result.status is not None and "outage" not in found
    out: dict[str, bool] = {}
    for kind in PROBE_KINDS:
        if kind in found:
            out[kind] = True
        elif answered or kind == "outage":
            out[kind] = False
    return out


def _finding(result: ProbeResult, kind: str) -> str:
    for item in result.detail.get("findings", ()):
        if item["failure"] == kind:
            return str(item["message"])
    return result.message


# -- root cause -------------------------------------------------------------------------------


_ERRORS = {
    "refused": "el servidor no responde (¿proceso detenido?)",
    "timeout": "el servidor no contesta a tiempo (¿saturado, colgado o la red?)",
    "reset": "la conexión se corta (¿el servidor se reinicia o un balanceador la cierra?)",
    "dns": "el nombre no se resuelve (DNS)",
    "tls": "falla la negociación TLS (¿certificado vencido o equivocado?)",
    "http_5xx": "el servidor responde con errores 5xx",
    "http_status": "main.json no está disponible en el servidor",
    "protocol": "el servidor devuelve respuestas HTTP inválidas",
}


def suggest_cause(kind: str, evidence: dict[str, Any], ledger: Ledger, *, target: str | None,
                  since: str, zone: tzinfo | None = None) -> str:
    """A first guess at the root cause from what the probes saw and the ledger shows."""
    if kind == "outage":
        cause = _ERRORS.get(str(evidence.get("error")), "el servidor no responde")
        restarts = ledger.events_since(kinds=("service_restarted",), since=since)
        if restarts:
            cause += f"; el supervisor lo reinició {len(restarts)} vez/veces"
        return cause
    if kind == "stale":
        return _stale_cause(evidence, ledger, target=target, zone=zone)
    if kind == "integrity":
        paths = evidence.get("mismatched") or []
        where = f" ({', '.join('/' + p for p in paths[:3])})" if paths else ""
        return ("los bytes servidos no coinciden con el manifiesto del corte en línea" + where
                + ": ¿archivo alterado en disco, un origen o una CDN que sirve otra cosa?")
    if kind == "header":
        return ("Cache-Control de main.json no es el que fija la convocatoria: ¿una regla de la "
                "CDN o del proxy lo cambia?")
    if kind == "tls":
        days = evidence.get("tls_days_left")
        if days is not None:
            return f"el certificado TLS vence en {float(days):.1f} días: renovarlo"
        return "el certificado TLS no es válido (¿vencido o de otro nombre?)"
    if kind == "degraded":
        return "respuestas lentas: ¿carga alta, red o disco del servidor?"
    return ""


def _stale_cause(evidence: dict[str, Any], ledger: Ledger, *, target: str | None,
                 zone: tzinfo | None) -> str:
    live = evidence.get("expected_release")
    served = evidence.get("served_release") or "uno anterior"
    activation = next((a for a in ledger.activations(50) if a.release_id == live), None)
    when = f" a las {_local(activation.at, zone)}" if activation else ""
    base = (f"la autoridad sí entregó: el corte {live} se aceptó y activó{when}, pero "
            f"«{target}» sigue sirviendo {served}")
    if activation is not None:
        late = [e for e in ledger.events_since(kinds=("served_late", "served"),
                                                since=activation.at)
                if e["release_id"] == live]
        if any(e["kind"] == "served_late" for e in late):
            return base + " (el servidor no cambió de corte al activarlo: ver «served_late»)"
        edge = ledger.events_since(kinds=("purge_failed", "edge_stale"), since=activation.at)
        if edge:
            return base + f" (la CDN: {edge[-1]['message']})"
        out = ledger.events_since(kinds=("origin_out",), since=activation.at)
        if out:
            return base + f" (un origen quedó fuera: {out[-1]['message']})"
    return base + " (¿el servidor, un origen o la CDN no recibió el cambio?)"


def authority_cause(ledger: Ledger, since: str, zone: tzinfo | None = None) -> str:
    """Why no new corte went live since ``since``: nothing arrived, refused, or not published."""
    packages = ledger.packages_since(since)
    if not packages:
        return f"la autoridad no ha enviado paquetes desde {_local(since, zone)}"
    refused = [p for p in packages if p["state"] in ("refused", "failed")]
    pending = [p for p in packages if p["state"] not in ("refused", "failed", "activated",
                                                           "duplicate")]
    if pending:
        p = pending[-1]
        return (f"llegó el paquete {p['name']} ({p['state']}) pero no se ha publicado: "
                "¿el publicador está detenido?")
    if refused:
        p = refused[-1]
        return (f"llegaron {len(packages)} paquete(s) pero se rechazaron; el último, "
                f"{p['name']}: {p['reason'] or p['state']}")
    return (f"llegaron {len(packages)} paquete(s) repetidos (mismo corte): la autoridad no ha "
            "generado uno nuevo")


# -- impact: the access log ---------------------------------------------------------------


def impact(path: Path, start: str, end: str, *, estimate: bool = False
           ) -> dict[str, Any] | None:
    """Requests, distinct IPs and errors ≥ 500 between ``start`` and ``end`` (ISO UTC) in the
    embedded server's access log (and its rotated ``.1``); None when there is no log.
    ``estimate``: also the requests expected in the window at the pace of the same length before
    it (a stopped server logs nothing: the visitors it turned away are estimated, not counted)."""
    files = [p for p in (path.with_name(path.name + ".1"), path) if p.exists()]
    if not files:
        return None
    lo, hi = _log_stamp(start), _log_stamp(end)
    requests, errors, ips = _count(files, lo, hi)
    out: dict[str, Any] = {"requests": requests, "visitors": len(ips), "errors": errors,
                           "source": str(path)}
    if estimate:
        seconds = max(_seconds(start, end), 1.0)
        length = min(max(seconds, 300.0), 3600.0)
        before = _iso(stored(start) - timedelta(seconds=length))
        earlier, _e, seen = _count(files, _log_stamp(before), lo)
        out["baseline_requests_per_min"] = round(earlier / length * 60, 2)
        out["estimated_requests"] = round(earlier / length * seconds)
        out["baseline_visitors"] = len(seen)
    return out


def impact_text(found: dict[str, Any], kind: str) -> str:
    text = (f"{found['requests']} peticiones de {found['visitors']} visitantes (IP distintas) "
            f"en la ventana; {found['errors']} respuestas con error ≥ 500")
    if kind == "outage" and "estimated_requests" in found:
        text += (f"; con el servidor sin responder las visitas no llegan al registro: al ritmo "
                 f"previo ({found['baseline_requests_per_min']}/min) se estiman "
                 f"~{found['estimated_requests']} peticiones no atendidas")
    return text


def _count(files: list[Path], lo: bytes, hi: bytes) -> tuple[int, int, set[bytes]]:
    requests = errors = 0
    ips: set[bytes] = set()
    past = _log_stamp(_iso(_parse_log(hi) + _SLACK))
    for path in files:
        with path.open("rb") as f:
            f.seek(_first_offset(f, lo))
            for line in f:
                stamp = line[9:33]
                if stamp >= past:
                    break  # well past the window (batches interleave only a little)
                if not lo <= stamp < hi:
                    continue
                try:
                    row = orjson.loads(line)
                except orjson.JSONDecodeError:
                    continue
                agent = (row.get("user_agent") or "").encode()
                if agent.startswith(MONITOR_AGENTS) or str(row.get("path")).startswith(
                        "/_difusor/"):
                    continue  # our probes, balancers' health checks: not visitors
                requests += 1
                ips.add(str(row.get("ip")).encode())
                if int(row.get("status") or 0) >= 500:
                    errors += 1
    return requests, errors, ips


_SLACK = timedelta(seconds=10)  # lines are written in batches: a little out of order


def _first_offset(f: BinaryIO, lo: bytes) -> int:
    """Offset of a line start at or before the first line stamped ≥ ``lo`` minus slack."""
    target = _log_stamp(_iso(_parse_log(lo) - _SLACK))
    size = os.fstat(f.fileno()).st_size
    left, right = 0, size
    while right - left > 4096:
        mid = (left + right) // 2
        f.seek(mid)
        f.readline()
        line = f.readline()
        if not line or line[9:33] >= target:
            right = mid
        else:
            left = mid
    f.seek(left)
    if left:
        f.readline()
    return f.tell()


def _log_stamp(iso: str) -> bytes:
    """The access log's own form: ``2024-06-02T20:00:00.000Z``."""
    when = stored(iso).astimezone(UTC)
    return (when.strftime("%Y-%m-%dT%H:%M:%S") + f".{when.microsecond // 1000:03d}Z").encode()


def _parse_log(stamp: bytes) -> datetime:
    return datetime.strptime(stamp.decode()[:23], "%Y-%m-%dT%H:%M:%S.%f").replace(tzinfo=UTC)


# -- measures ---------------------------------------------------------------------------------


_MEASURE_EVENTS = ("service_restarted", "origin_out", "origin_back", "origin_restored", "purge",
                   "activated", "alert_sent")


def automatic_measures(ledger: Ledger, incident: dict[str, Any], start: str, end: str, *,
                       margin: float) -> list[dict[str, Any]]:
    """What the system itself did in the window, from the ledger (``by: auto``)."""
    since = _iso(stored(start) - timedelta(seconds=margin))
    until = _iso(stored(end) + timedelta(seconds=margin))
    out: list[dict[str, Any]] = []
    for event in ledger.events_since(kinds=_MEASURE_EVENTS, since=since, until=until):
        detail = event["detail"] or {}
        kind = event["kind"]
        if kind == "alert_sent":
            if detail.get("incident") != incident["id"]:
                continue
            text = event["message"]
        elif kind == "activated":
            cause = detail.get("cause")
            if cause == "rollback":
                text = f"vuelta atrás: {event['message']}"
            elif cause == "recovery":
                text = f"recuperación automática: {event['message']}"
            elif incident["kind"] in ("stale", "authority_delay", "integrity"):
                text = f"publicación: {event['message']}"
            else:
                continue
        elif kind == "service_restarted":
            text = f"reinicio automático: {event['message']}"
        else:
            text = event["message"]
        out.append({"at": event["at"], "by": "auto", "text": text, "event": event["id"]})
    if incident["kind"] == "refused":
        out.append({"at": incident["started_at"], "by": "auto",
                    "text": "el paquete quedó en cuarentena; siguió en línea el corte anterior"})
    return out


# -- time -------------------------------------------------------------------------------------




def _iso(when: datetime) -> str:
    return when.astimezone(UTC).isoformat(timespec="microseconds")


def _seconds(start: str, end: str) -> float:
    return (stored(end) - stored(start)).total_seconds()


def _local(iso: str, zone: tzinfo | None = None) -> str:
    """``HH:MM:SS`` in the site's zone (the operator's clock), with the date when not today."""
    when = stored(iso).astimezone(zone)
    today = datetime.now(zone).date()
    return when.strftime("%H:%M:%S" if when.date() == today else "%d/%m/%Y %H:%M:%S")
