"""Alerts: one message per incident change, to webhooks and e-mail, without blocking the monitor.

``Alerter.incident(incident, change)`` decides *now* whether a message goes (at most one per
incident every ``[alerts] min_interval`` seconds; the recovery always goes) and hands it to a
background thread, which sends it to every ``[[alerts.webhooks]]`` (generic JSON, Slack's
``{"text"}`` or Telegram's ``{"chat_id", "text"}``) and to ``[alerts.email]``. Every delivery is a
ledger event ``alert_sent``; every failure is logged and an ``alert_failed`` event, never an
exception. ``flush()`` waits until everything queued was tried (tests, shutdown).

Webhook URLs carry secrets (Slack's path, Telegram's bot token), so logs and the ledger name only
their host.
"""

from __future__ import annotations

import os
import queue
import smtplib
import ssl
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

import httpx

from difusor.config import Config, EmailSettings, WebhookSettings
from difusor.ledger import Ledger
from difusor.moments import duration, stored
from difusor.monitor.incidents import KINDS, SEVERITIES, STATES
from difusor.monitor.incidents.kinds import SEVERITY_RANK

WEBHOOK_TIMEOUT = 5.0  # seconds per attempt
SMTP_TIMEOUT = 10.0
_RETRY_PAUSE = 1.0  # one retry for a transient failure (network, 429, 5xx)

CHANGES = ("opened", "updated", "resolved")

_CHANGE_LABELS = {"opened": "abierto", "updated": "actualizado", "resolved": "resuelto"}


def _rank(severity: object) -> int:
    return SEVERITY_RANK.index(severity) if severity in SEVERITY_RANK else -1


@dataclass(frozen=True)
class Alert:
    """One message about one incident change, already rendered for every channel."""

    incident_id: int
    change: str
    subject: str
    text: str
    payload: dict[str, Any]  # the generic JSON body


class Alerter:
    def __init__(self, cfg: Config, ledger: Ledger, *, log: Callable[[str], None] | None = None,
                 env: Mapping[str, str] | None = None) -> None:
        self.settings = cfg.alerts
        self.site = cfg.site.name
        self.zone = ZoneInfo(cfg.site.timezone)
        self.ledger = ledger
        self.log = log or (lambda _line: None)
        email = cfg.alerts.email
        self._password = (env if env is not None else os.environ).get(email.password_env, "") \
            if email.password_env else ""
        self._last_sent: dict[int, float] = {}
        self._rank_sent: dict[int, int] = {}
        self._lock = threading.Lock()
        self._queue: queue.Queue[Alert | None] = queue.Queue()
        self._worker: threading.Thread | None = None

    @property
    def configured(self) -> bool:
        return bool(self.settings.webhooks) or self._email_on

    @property
    def _email_on(self) -> bool:
        return bool(self.settings.email.host and self.settings.email.to)

    # -- deciding -----------------------------------------------------------------------

    def incident(self, incident: dict[str, Any], change: str) -> bool:
        """Queue a message about ``incident`` (a ledger incident row) if the rate limit allows;
        returns whether one was queued. Never raises for delivery trouble."""
        if change not in CHANGES:
            raise ValueError(f"cambio desconocido «{change}»; usa {', '.join(CHANGES)}")
        if not self.configured:
            return False
        key = int(incident["id"])
        now = time.monotonic()
        rank = _rank(incident.get("severity"))
        with self._lock:
            last = self._last_sent.get(key)
            # A raised severity (a disk from warning to critical) is news: it is not held back.
            worse = rank > self._rank_sent.get(key, rank)
            if change != "resolved" and last is not None and not worse and \
                    now - last < self.settings.min_interval:
                return False
            self._last_sent[key] = now
            self._rank_sent[key] = rank
            if change == "resolved":
                self._last_sent.pop(key, None)
                self._rank_sent.pop(key, None)
        self._enqueue(self.render(incident, change))
        return True

    def render(self, incident: dict[str, Any], change: str) -> Alert:
        kind = KINDS[incident["kind"]][0] if incident["kind"] in KINDS else incident["kind"]
        target = incident.get("target")
        what = f"{kind} de «{target}»" if target else kind
        number = f"incidente n.º {incident['id']}"
        started = stored(incident["started_at"])
        ended = stored(incident["ended_at"]) if incident.get("ended_at") else None
        seconds = ((ended or datetime.now(UTC)) - started).total_seconds()
        state = STATES.get(incident["state"], incident["state"])
        severity = SEVERITIES.get(incident["severity"], incident["severity"])
        cause = incident.get("cause") or incident.get("cause_suggested") or ""
        if change == "opened":
            headline = f"Incidente n.º {incident['id']} abierto: {what}"
        elif change == "resolved":
            headline = f"Resuelto: {number} ({what}), duró {duration(seconds)}"
        else:
            headline = f"Incidente n.º {incident['id']} actualizado: {what} ({state})"
        lines = [
            f"{headline}.",
            "",
            f"Sitio: {self.site}",
            f"Tipo: {kind}",
            f"Severidad: {severity}",
            f"Estado: {state}",
            f"Inicio: {self._local(started)}",
        ]
        if ended is not None:
            lines.append(f"Fin: {self._local(ended)}")
            lines.append(f"Duración: {duration(seconds)}")
        else:
            lines.append(f"En curso desde hace {duration(seconds)}")
        if target:
            lines.append(f"Objetivo: {target}")
        if cause:
            lines.append(f"Causa{'' if incident.get('cause') else ' probable'}: {cause}")
        if incident.get("impact"):
            lines.append(f"Impacto: {incident['impact']}")
        measures = incident.get("measures") or []
        if measures:
            lines.append("Medidas:")
            lines.extend(f"  - {_measure(m)}" for m in measures)
        text = "\n".join(lines)
        payload = {
            "incidente": incident["id"],
            "cambio": change,
            "sitio": self.site,
            "tipo": incident["kind"],
            "severidad": incident["severity"],
            "estado": incident["state"],
            "inicio": started.astimezone(self.zone).isoformat(),
            "fin": ended.astimezone(self.zone).isoformat() if ended else None,
            "duracion_s": round(seconds),
            "causa": cause or None,
            "objetivo": target,
            "mensaje": headline,
        }
        return Alert(int(incident["id"]), change, f"[{self.site}] {headline}", text, payload)

    def _local(self, when: datetime) -> str:
        return when.astimezone(self.zone).strftime("%d/%m/%Y %H:%M:%S %Z")

    # -- sending (background thread) ----------------------------------------------------

    def _enqueue(self, alert: Alert) -> None:
        with self._lock:
            if self._worker is None or not self._worker.is_alive():
                self._worker = threading.Thread(target=self._work, name="avisos", daemon=True)
                self._worker.start()
        self._queue.put(alert)

    def flush(self, timeout: float = 60.0) -> bool:
        """Wait until every queued alert was tried; False if that took longer than
        ``timeout``."""
        deadline = time.monotonic() + timeout
        while self._queue.unfinished_tasks:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.01)
        return True

    def close(self, timeout: float = 5.0) -> None:
        """Try what is queued (within ``timeout``), then stop the thread."""
        if self._worker is not None and self._worker.is_alive():
            self._queue.put(None)
            self._worker.join(timeout)

    def _work(self) -> None:
        while True:
            alert = self._queue.get()
            try:
                if alert is None:
                    return
                self.send(alert)
            except Exception as exc:  # a bug here must not kill the thread nor the monitor
                self._failed(alert, "interno", "-", f"{type(exc).__name__}: {exc}")
            finally:
                self._queue.task_done()

    def send(self, alert: Alert) -> None:
        """Deliver ``alert`` to every channel now (in the calling thread)."""
        for hook in self.settings.webhooks:
            self._deliver(alert, f"webhook {hook.format}", _host(hook.url),
                          lambda hook=hook: self._post(hook, alert))
        if self._email_on:
            email = self.settings.email
            self._deliver(alert, "correo", ", ".join(email.to),
                          lambda: self._mail(email, alert))

    def _deliver(self, alert: Alert, channel: str, dest: str, call: Callable[[], None]) -> None:
        try:
            call()
        except _SendError as exc:
            self._failed(alert, channel, dest, str(exc))
            return
        self.ledger.event(
            "alert_sent", f"aviso del incidente n.º {alert.incident_id} "
            f"({_CHANGE_LABELS[alert.change]}) enviado por {channel} a {dest}",
            detail={"incident": alert.incident_id, "change": alert.change, "channel": channel,
                    "dest": dest})

    def _failed(self, alert: Alert, channel: str, dest: str, reason: str) -> None:
        message = (f"no se pudo enviar el aviso del incidente n.º {alert.incident_id} por "
                   f"{channel} a {dest}: {reason}")
        self.log(message)
        try:
            self.ledger.event("alert_failed", message,
                              detail={"incident": alert.incident_id, "change": alert.change,
                                      "channel": channel, "dest": dest, "reason": reason})
        except Exception as exc:  # the ledger itself failing: the log line is all we have
            self.log(f"no se pudo registrar la falla del aviso en la bitácora: {exc}")

    # -- channels -------------------------------------------------------------------------

    def _post(self, hook: WebhookSettings, alert: Alert) -> None:
        body: dict[str, Any]
        if hook.format == "slack":
            body = {"text": _slack_escape(alert.text)}
        elif hook.format == "telegram":
            body = {"chat_id": hook.chat_id, "text": alert.text,
                    "disable_web_page_preview": True}
        else:
            body = alert.payload
        for attempt in (1, 2):
            try:
                resp = httpx.post(hook.url, json=body, timeout=WEBHOOK_TIMEOUT,
                                  headers={"User-Agent": "difusor-avisos"})
            except httpx.HTTPError as exc:
                reason = f"error de red: {type(exc).__name__}"
                if str(exc):
                    reason += f" ({_strip(str(exc), hook.url)})"
            else:
                if resp.is_success:
                    return
                reason = f"respondió {resp.status_code}"
                if resp.status_code < 500 and resp.status_code != 429:
                    break
            if attempt == 1:
                time.sleep(_RETRY_PAUSE)
        raise _SendError(reason)

    def _mail(self, email: EmailSettings, alert: Alert) -> None:
        msg = EmailMessage()
        msg["Subject"] = alert.subject
        msg["From"] = email.sender
        msg["To"] = ", ".join(email.to)
        msg["Date"] = formatdate(localtime=False, usegmt=True)
        msg["Message-ID"] = make_msgid(domain=email.sender.rpartition("@")[2] or None)
        msg.set_content(alert.text + "\n\n— difusor\n")
        try:
            with smtplib.SMTP(email.host, email.port, timeout=SMTP_TIMEOUT) as smtp:
                if email.starttls:
                    smtp.starttls(context=ssl.create_default_context())
                if email.user:
                    smtp.login(email.user, self._password)
                smtp.send_message(msg)
        except smtplib.SMTPAuthenticationError:
            raise _SendError(f"el servidor SMTP rechazó al usuario «{email.user}» "
                             f"(¿está la contraseña en ${email.password_env}?)") from None
        except (smtplib.SMTPException, OSError) as exc:
            raise _SendError(f"SMTP {email.host}:{email.port}: {type(exc).__name__}: {exc}") \
                from None


class _SendError(Exception):
    """A channel failed; the message is the reason, in Spanish, without secrets."""




def _measure(item: Any) -> str:
    if isinstance(item, dict):
        return str(item.get("text") or item.get("measure") or item.get("message") or item)
    return str(item)


def _host(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname or '?'}" + (f":{parts.port}" if parts.port else "")


def _strip(text: str, url: str) -> str:
    """``text`` without ``url``'s path (where webhook secrets live)."""
    path = urlsplit(url).path
    return text.replace(url, _host(url)).replace(path, "/…") if path not in ("", "/") else text


def _slack_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
