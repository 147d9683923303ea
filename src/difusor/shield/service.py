"""The shield as a part of ``difusor run``: access log → detector → decisions → enforcement.

Every ``READ_SECONDS`` it reads the new lines of the embedded server's access log (workers flush
every half second, so a request is judged within about a second) and of nginx's, feeds the detector, and when
the decisions changed rewrites ``decisions.json`` (every web worker reloads it within 0.2 s),
tells the external enforcers (nginx, nftables, Cloudflare: only addresses and networks), writes
each decision to the ledger and logs it in Spanish. Attack mode opens an ``attack`` incident
(target: the site's URL) before the ``attack`` event, keeps its evidence up to date and closes
it with ``attack_over``. The operator's entries in the file (``difusor shield …``) are kept, and
an operator's unblock is honoured.
"""

from __future__ import annotations

import calendar
import os
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import orjson

from difusor.config import Config
from difusor.errors import DifusorError
from difusor.ledger import Ledger
from difusor.logtail import Follower
from difusor.paths import StateLayout
from difusor.serve.decisions import Decisions, decisions_path, edit
from difusor.shield.asn import AsnLookup
from difusor.shield.detector import Action, Detector
from difusor.shield.model import Block, Enforcer

READ_SECONDS = 0.15
EVIDENCE_SECONDS = 5.0  # how often the open incident's evidence is rewritten
ACTIVATION_SECONDS = 5.0  # how often the ledger is asked for the last activation


def _epoch_second(at: str) -> int:
    """``2024-12-08T20:30:00.123Z`` (embedded) or ``…00.123-06:00`` (nginx) → epoch second."""
    sec = calendar.timegm(time.strptime(at[:19], "%Y-%m-%dT%H:%M:%S"))
    zone = at[19:].lstrip(".0123456789")
    if zone in ("", "Z"):
        return sec
    if len(zone) != 6 or zone[0] not in "+-" or zone[3] != ":":
        raise ValueError(at)
    offset = int(zone[1:3]) * 3600 + int(zone[4:6]) * 60
    return sec - offset if zone[0] == "+" else sec + offset


class Shield:
    def __init__(self, cfg: Config, ledger: Ledger, log: Callable[[str], None] | None = None
                 ) -> None:
        self.cfg = cfg
        self.ledger = ledger
        self.log = log or (lambda _m: None)
        self.path = decisions_path(cfg.state_dir)
        # The embedded server's log and nginx's: requests nginx refuses before any handler
        # (400 malformed, 414, request headers too large) appear only in nginx's log.
        self.logs = [StateLayout(cfg.state_dir).access_log, cfg.nginx_access_log]
        self.zone = ZoneInfo(cfg.site.timezone)
        self.detector = Detector(cfg.shield, self.zone, asn=AsnLookup())
        self.enforcers: list[Enforcer] = _enforcers(cfg, self.log)
        self._rev = -1  # the file revision we last wrote or read
        self._signature: tuple[int, int] | None = None
        self._written: set[str] = set()  # the automatic entries in our last write
        self._stamps: dict[bytes, int] = {}
        self._incident: int | None = None
        self._evidence_at = 0.0
        self._activation_at = 0.0
        self._blocks: list[Block] | None = None
        self._sources: dict[str, int] = {}
        self.lines = 0

    # -- the loop --------------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        followers = [Follower(path, from_end=True) for path in self.logs]
        self._sync(time.time(), force=True)
        try:
            while not stop.wait(READ_SECONDS):
                self.step(b"".join(f.read() for f in followers))
        finally:
            for follower in followers:
                follower.close()
            for enforcer in self.enforcers:
                try:
                    enforcer.close()
                except Exception as exc:
                    self.log(f"escudo: {enforcer.name} no cerró bien: {exc}")

    def step(self, data: bytes, now: float | None = None) -> list[Action]:
        """Feed whole log lines, decide, publish the decisions; returns what was decided."""
        if data:
            self.feed(data)
        now = time.time() if now is None else now
        if now - self._activation_at > ACTIVATION_SECONDS:
            self._activation_at = now
            last = self.ledger.last_activation()
            if last is not None:
                self.detector.baseline.activation(datetime.fromisoformat(last.at).timestamp())
        actions = self.detector.evaluate(now)
        self._sync(now, force=bool(actions))
        for action in actions:
            self._record(action, now)
        if self.detector.attack and now - self._evidence_at > EVIDENCE_SECONDS:
            self._evidence(now)
        return actions

    def feed(self, data: bytes) -> None:
        observe = self.detector.observe
        loads = orjson.loads
        stamps = self._stamps
        n = 0
        for line in data.splitlines():
            try:
                row = loads(line)
                at = row["time"]
                stamp = at[:19] + at[23:]  # the second and the zone, without the milliseconds
                sec = stamps.get(stamp)
                if sec is None:
                    if len(stamps) > 4096:
                        stamps.clear()
                    sec = stamps[stamp] = _epoch_second(at)
                observe(sec, row["ip"], row["method"], row["path"], row["query"],
                        row["status"], row["user_agent"], row.get("duration_ms") or 0.0)
                n += 1
            except (ValueError, KeyError, TypeError):
                continue  # a line this version does not understand: skip it, keep going
        self.lines += n

    # -- the shared file ------------------------------------------------------------------------

    def _sync(self, now: float, *, force: bool) -> None:
        """Merge with the file: take the operator's changes, write ours when they changed."""
        det = self.detector
        if not force and not det.changed and _signature(self.path) == self._signature:
            return
        with edit(self.path) as d:
            if d.rev != self._rev:
                self._operator(d, now)
            self._merge(d, now)
        det.changed = False
        self._rev, self._signature = d.rev, _signature(self.path)
        self._written = {k for k, v in (*d.bans.items(), *d.throttles.items())
                         if v.get("by") == "auto"}
        blocks = [Block(k, e["until"], e.get("reason", "")) for k, e in d.bans.items()
                  if " " not in k]
        if blocks != self._blocks:
            self._blocks = blocks
            self._enforce(blocks, bool(d.attack.get("on")))

    def _operator(self, d: Decisions, now: float) -> None:
        """What someone else (the CLI) changed since we last wrote."""
        det = self.detector
        det.set_operator_allow(d.allow)
        for key in sorted(self._written - set(d.bans) - set(d.throttles)):
            if key in det.bans or key in det.throttles:
                det.forget(key)  # we wrote it, now it is gone: the operator unblocked it
                self.log(f"escudo: {key} liberado por el operador")
        attack = d.attack or {}
        if attack.get("by") == "operator" and bool(attack.get("on")) != det.attack:
            det.set_attack(bool(attack.get("on")), "operator", now)
            if det.attack:
                self._open_incident(now, "el operador activó el modo ataque")
            else:
                self._close_incident(now, "el operador desactivó el modo ataque")

    def _merge(self, d: Decisions, now: float) -> None:
        det = self.detector
        d.prune(now)
        keep = {k: v for k, v in d.bans.items() if v.get("by") == "operator"}
        for key, e in det.bans.items():
            if key not in keep:
                keep[key] = {"until": e.until, "since": e.since, "reason": e.reason, "by": "auto",
                             "kind": e.kind}
        d.bans = keep
        throttles = {k: v for k, v in d.throttles.items() if v.get("by") == "operator"}
        for key, e in det.throttles.items():
            throttles[key] = {"until": e.until, "since": e.since, "reason": e.reason,
                              "by": "auto", "kind": e.kind, "rate": e.rate, "per": e.per}
        d.throttles = throttles
        d.shared = sorted(det.shared)
        if det.attack_by == "auto" or d.attack.get("by") != "operator" or \
                bool(d.attack.get("on")) != det.attack:
            d.attack = {"on": det.attack, "since": det.attack_since if det.attack else None,
                        "by": det.attack_by}

    def _enforce(self, blocks: list[Block], attack: bool) -> None:
        for enforcer in self.enforcers:
            try:
                enforcer.apply(blocks, attack)
            except Exception as exc:  # an enforcement point failing never stops the shield
                message = exc.message if isinstance(exc, DifusorError) else str(exc)
                self.log(f"escudo: {enforcer.name} no aplicó los bloqueos: {message}")
                self.ledger.event("shield_enforcer_failed", f"{enforcer.name}: {message}",
                                  detail={"enforcer": enforcer.name, "error": message,
                                          "blocks": len(blocks)})

    # -- evidence ----------------------------------------------------------------------------------

    def _record(self, action: Action, now: float) -> None:
        if action.action == "attack_mode_on":
            self._open_incident(now, action.reason, action.rates)
        message = _message(action, self.zone)
        self.log(message)
        self.ledger.event("shield", message, detail=action.detail())
        if action.action == "attack_mode_off":
            self._close_incident(now, action.reason)

    def _open_incident(self, now: float, reason: str, rates: dict[str, Any] | None = None) -> None:
        target = self.cfg.site.url
        self._sources = {}
        existing = self.ledger.open_incident("attack", target)
        if existing is not None:
            self._incident = existing["id"]
        else:
            self._incident = self.ledger.incident_opened(
                kind="attack", severity="major", started_at=_iso(now), target=target,
                cause_suggested=f"ataque de denegación de servicio: {reason}",
                detail=self._evidence_detail(now, rates))
        self.ledger.event("attack", f"ataque en curso contra {target}: {reason}",
                          detail={"target": target, "incident": self._incident, **(rates or {})})
        self._evidence_at = now

    def _evidence_detail(self, now: float, rates: dict[str, Any] | None = None
                         ) -> dict[str, Any]:
        det = self.detector
        for row in det.sources(20):  # the busiest each source was while the attack lasted
            key = row["key"]
            self._sources[key] = max(self._sources.get(key, 0), row["requests"])
        top = sorted(self._sources.items(), key=lambda kv: kv[1], reverse=True)[:10]
        return {"label": "ataque", "peak_rps": max(det.peak, int(det.total_rate())),
                "sources": [{"key": k, "requests": n, "window": det.w} for k, n in top],
                "requests_refused": det.refused,
                "attack_mode_on": _iso(det.attack_since) if det.attack_since else None,
                "attack_mode_off": None if det.attack else _iso(now),
                "bans": len(det.bans), "throttles": len(det.throttles), **(rates or {})}

    def _evidence(self, now: float) -> None:
        self._evidence_at = now
        if self._incident is None:
            return
        incident = self.ledger.incident(self._incident)
        if incident is None:
            return
        detail = {**incident["detail"], **self._evidence_detail(now)}
        detail["peak_rps"] = max(detail["peak_rps"], incident["detail"].get("peak_rps", 0))
        self.ledger.incident_update(self._incident, detail=detail)

    def _close_incident(self, now: float, reason: str) -> None:
        target = self.cfg.site.url
        self._evidence(now)
        self.ledger.event("attack_over", f"terminó el ataque contra {target}: {reason}",
                          detail={"target": target, "incident": self._incident})
        if self._incident is not None:
            self.ledger.incident_update(self._incident, state="resolved", ended_at=_iso(now))
        self._incident = None


def _enforcers(cfg: Config, log: Callable[[str], None]) -> list[Enforcer]:
    from difusor.shield.enforce.base import build_enforcers

    try:
        return list(build_enforcers(cfg, log=log))
    except DifusorError as exc:  # misconfigured: the embedded server still enforces
        log(f"escudo: no pude preparar los puntos de bloqueo externos: {exc.message}")
        return []


def _signature(path: Path) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return st.st_ino, st.st_mtime_ns


def _message(a: Action, zone: ZoneInfo) -> str:
    if a.action == "throttle":
        return f"escudo: {a.key} limitado a {a.rate:g} pet/s ({a.reason})"
    if a.action == "ban":
        until = datetime.fromtimestamp(a.expiry or 0, zone).strftime("%H:%M:%S")
        return f"escudo: {a.key} bloqueado hasta las {until} ({a.reason})"
    if a.action == "unban":
        return f"escudo: {a.key} desbloqueado (venció el bloqueo)"
    if a.action == "unthrottle":
        return f"escudo: {a.key} sin límite (venció)"
    if a.action == "attack_mode_on":
        return f"escudo: MODO ATAQUE activado ({a.reason})"
    if a.action == "attack_mode_off":
        return f"escudo: modo ataque desactivado ({a.reason})"
    return f"escudo: {a.key} observado ({a.reason})"


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="microseconds")

