"""Alerts reach a real SMTP server and real webhook receivers, rate-limited, with the recovery."""

from __future__ import annotations

import json
import ssl
import threading
import time
from collections.abc import Iterator
from email import message_from_bytes, policy
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, Envelope, LoginPassword
from conftest import Site, free_port, make_site

from difusor.ledger import Ledger
from difusor.monitor import alerts
from difusor.monitor.alerts import Alerter

STARTED = "2024-12-09T02:30:00.000000+00:00"  # 20:30 in Mexico City
ENDED = "2024-12-09T02:34:10.000000+00:00"


class Mailbox:
    """An aiosmtpd handler that keeps what it receives."""

    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []
        self.envelopes: list[Envelope] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Envelope) -> str:
        self.envelopes.append(envelope)
        self.messages.append(message_from_bytes(envelope.content,  # type: ignore[arg-type]
                                                policy=policy.default))
        return "250 OK"


@pytest.fixture
def smtp() -> Iterator[tuple[Controller, Mailbox]]:
    box = Mailbox()

    def authenticator(server: Any, session: Any, envelope: Any, mechanism: str,
                      auth_data: Any) -> AuthResult:
        ok = isinstance(auth_data, LoginPassword) and auth_data.login == b"avisos" and \
            auth_data.password == b"clave-smtp"
        return AuthResult(success=ok, handled=False)  # handled=True would send no reply

    controller = Controller(box, hostname="127.0.0.1", port=free_port(),
                            authenticator=authenticator, auth_require_tls=False)
    controller.start()
    yield controller, box
    controller.stop()


class Receiver:
    """A webhook receiver: records (path, JSON body); /fail answers 500, /slow holds the
    request (``arrived`` set) until ``release`` is set."""

    def __init__(self) -> None:
        self.received: list[tuple[str, Any]] = []
        self.arrived, self.release = threading.Event(), threading.Event()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if self.path == "/slow":
                    outer.arrived.set()
                    outer.release.wait(10)
                outer.received.append((self.path, json.loads(body)))
                status = 500 if self.path == "/fail" else 200
                self.send_response(status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        # A short poll: shutdown() waits for it (the default 0.5 s, in every teardown).
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,),
                                       daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


def alert_site(tmp_path: Path, toml: str) -> Site:
    return make_site(tmp_path / "difusor", extra_toml=toml)


def open_incident(ledger: Ledger) -> dict[str, Any]:
    number = ledger.incident_opened(kind="outage", severity="critical", started_at=STARTED,
                                    target="sitio", cause_suggested="conexión rechazada")
    incident = ledger.incident(number)
    assert incident is not None
    return incident


def resolve(ledger: Ledger, incident: dict[str, Any]) -> dict[str, Any]:
    ledger.incident_update(incident["id"], state="resolved", ended_at=ENDED)
    resolved = ledger.incident(incident["id"])
    assert resolved is not None
    return resolved


def test_opened_and_recovery_emails_reach_a_real_smtp_server(
        tmp_path: Path, smtp: tuple[Controller, Mailbox]) -> None:
    controller, box = smtp
    site = alert_site(tmp_path, f"""
[alerts.email]
host = "127.0.0.1"
port = {controller.port}
user = "avisos"
password_env = "DIFUSOR_SMTP_PASSWORD"
sender = "difusor@prep.example.mx"
to = ["guardia@iem.example.mx", "ti@iem.example.mx"]
""")
    alerter = Alerter(site.cfg, site.ledger, env={"DIFUSOR_SMTP_PASSWORD": "clave-smtp"})
    incident = open_incident(site.ledger)
    assert alerter.incident(incident, "opened")
    assert alerter.flush(10)
    assert alerter.incident(resolve(site.ledger, incident), "resolved")
    assert alerter.flush(10)
    alerter.close()

    assert len(box.messages) == 2
    opened, recovered = box.messages
    assert opened["Subject"] == f"[PREP] Incidente n.º {incident['id']} abierto: caída de «sitio»"
    body = opened.get_content()
    assert "Severidad: crítica" in body
    assert "Estado: investigando" in body
    assert "Inicio: 08/12/2024 20:30:00 CST" in body
    assert "Causa probable: conexión rechazada" in body
    assert recovered["Subject"] == (f"[PREP] Resuelto: incidente n.º {incident['id']} "
                                    "(caída de «sitio»), duró 4 min 10 s")
    body = recovered.get_content()
    assert "Estado: resuelto" in body
    assert "Fin: 08/12/2024 20:34:10 CST" in body
    assert "Duración: 4 min 10 s" in body
    assert box.envelopes[0].rcpt_tos == ["guardia@iem.example.mx", "ti@iem.example.mx"]
    assert box.envelopes[0].mail_from == "difusor@prep.example.mx"
    sent = site.ledger.events("alert_sent")
    assert [e["detail"]["change"] for e in reversed(sent)] == ["opened", "resolved"]
    assert all(e["detail"]["channel"] == "correo" for e in sent)
    assert site.ledger.events("alert_failed") == []
    site.ledger.close()


def test_starttls_then_auth(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_ctx)
    ca_pem = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_pem))
    monkeypatch.setenv("SSL_CERT_FILE", str(ca_pem))  # what ssl.create_default_context trusts
    box = Mailbox()
    controller = Controller(
        box, hostname="127.0.0.1", port=free_port(), tls_context=server_ctx,
        require_starttls=True,  # auth_require_tls stays on: AUTH only after STARTTLS
        authenticator=lambda *a: AuthResult(success=a[4].password == b"clave-smtp",
                                            handled=False))
    controller.start()
    try:
        site = alert_site(tmp_path, f"""
[alerts.email]
host = "127.0.0.1"
port = {controller.port}
starttls = true
user = "avisos"
password_env = "DIFUSOR_SMTP_PASSWORD"
to = ["guardia@iem.example.mx"]
""")
        alerter = Alerter(site.cfg, site.ledger, env={"DIFUSOR_SMTP_PASSWORD": "clave-smtp"})
        alerter.incident(open_incident(site.ledger), "opened")
        assert alerter.flush(10)
    finally:
        controller.stop()
    assert site.ledger.events("alert_failed") == []
    assert len(box.messages) == 1
    site.ledger.close()


def test_wrong_smtp_password_is_an_alert_failed_event(
        tmp_path: Path, smtp: tuple[Controller, Mailbox]) -> None:
    controller, box = smtp
    site = alert_site(tmp_path, f"""
[alerts.email]
host = "127.0.0.1"
port = {controller.port}
user = "avisos"
password_env = "DIFUSOR_SMTP_PASSWORD"
to = ["guardia@iem.example.mx"]
""")
    alerter = Alerter(site.cfg, site.ledger, env={"DIFUSOR_SMTP_PASSWORD": "otra"})
    alerter.incident(open_incident(site.ledger), "opened")
    assert alerter.flush(10)
    assert box.messages == []
    (failed,) = site.ledger.events("alert_failed")
    assert "DIFUSOR_SMTP_PASSWORD" in failed["message"]
    assert "clave" not in failed["message"] and "otra" not in failed["message"]
    site.ledger.close()


@pytest.mark.slow
def test_webhooks_receive_json_slack_and_telegram_bodies(tmp_path: Path,
                                                         receiver: Receiver) -> None:
    site = alert_site(tmp_path, f"""
[[alerts.webhooks]]
url = "{receiver.url}/generico"

[[alerts.webhooks]]
url = "{receiver.url}/services/T000/B000/SECRETO"
format = "slack"

[[alerts.webhooks]]
url = "{receiver.url}/bot123456:SECRETO/sendMessage"
format = "telegram"
chat_id = "-100200300"
""")
    alerter = Alerter(site.cfg, site.ledger)
    incident = open_incident(site.ledger)
    alerter.incident(incident, "opened")
    alerter.incident(resolve(site.ledger, incident), "resolved")
    assert alerter.flush(10)

    by_path: dict[str, list[Any]] = {}
    for path, body in receiver.received:
        by_path.setdefault(path, []).append(body)
    generic = by_path["/generico"]
    assert generic[0] == {
        "incidente": incident["id"], "cambio": "opened", "sitio": "PREP", "tipo": "outage",
        "severidad": "critical", "estado": "investigating", "inicio": "2024-12-08T20:30:00-06:00",
        "fin": None, "duracion_s": generic[0]["duracion_s"], "causa": "conexión rechazada",
        "objetivo": "sitio",
        "mensaje": f"Incidente n.º {incident['id']} abierto: caída de «sitio»",
    }
    assert generic[1]["estado"] == "resolved"
    assert generic[1]["fin"] == "2024-12-08T20:34:10-06:00"
    assert generic[1]["duracion_s"] == 250
    slack = by_path["/services/T000/B000/SECRETO"]
    assert [set(b) for b in slack] == [{"text"}, {"text"}]
    assert slack[0]["text"].startswith(f"Incidente n.º {incident['id']} abierto")
    assert "Resuelto" in slack[1]["text"]
    telegram = by_path["/bot123456:SECRETO/sendMessage"]
    assert telegram[0]["chat_id"] == "-100200300"
    assert "caída de «sitio»" in telegram[0]["text"]
    assert "duró 4 min 10 s" in telegram[1]["text"]

    sent = site.ledger.events("alert_sent")
    assert len(sent) == 6
    assert not any("SECRETO" in e["message"] or "SECRETO" in json.dumps(e["detail"])
                   for e in sent)
    site.ledger.close()


@pytest.mark.slow
def test_rate_limit_one_message_per_interval_but_recovery_always(tmp_path: Path,
                                                                 receiver: Receiver) -> None:
    site = alert_site(tmp_path, f"""
[alerts]
min_interval = 300

[[alerts.webhooks]]
url = "{receiver.url}/hook"
""")
    alerter = Alerter(site.cfg, site.ledger)
    incident = open_incident(site.ledger)
    other = open_incident(site.ledger)
    assert alerter.incident(incident, "opened") is True
    assert alerter.incident(incident, "opened") is False
    assert alerter.incident(incident, "updated") is False
    assert alerter.incident(other, "opened") is True  # per incident, not global
    assert alerter.incident(resolve(site.ledger, incident), "resolved") is True
    assert alerter.flush(10)
    changes = [(b["incidente"], b["cambio"]) for _path, b in receiver.received]
    assert sorted(changes) == sorted([(incident["id"], "opened"), (other["id"], "opened"),
                                      (incident["id"], "resolved")])
    assert len(site.ledger.events("alert_sent")) == 3
    site.ledger.close()


class Clock:
    """The alerter's monotonic clock, moved forward by the test instead of sleeping."""

    def __init__(self) -> None:
        self.ahead = 0.0

    def monotonic(self) -> float:
        return time.monotonic() + self.ahead

    sleep = staticmethod(time.sleep)


@pytest.mark.slow
def test_updates_go_again_once_the_interval_passed(tmp_path: Path, receiver: Receiver,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    site = alert_site(tmp_path, f"""
[alerts]
min_interval = 300

[[alerts.webhooks]]
url = "{receiver.url}/hook"
""")
    clock = Clock()
    monkeypatch.setattr(alerts, "time", clock)  # the module's own name: no one else's clock
    alerter = Alerter(site.cfg, site.ledger)
    incident = open_incident(site.ledger)
    assert alerter.incident(incident, "opened")
    clock.ahead = 299.0
    assert not alerter.incident(incident, "updated")
    clock.ahead = 301.0
    site.ledger.incident_update(incident["id"], state="identified", cause="el proveedor cayó")
    assert alerter.incident(site.ledger.incident(incident["id"]) or {}, "updated")
    assert alerter.flush(10)
    assert [b["cambio"] for _p, b in receiver.received] == ["opened", "updated"]
    assert receiver.received[1][1]["causa"] == "el proveedor cayó"
    site.ledger.close()


@pytest.mark.slow
def test_failing_webhooks_are_ledger_events_not_exceptions(
        tmp_path: Path, receiver: Receiver, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(alerts, "_RETRY_PAUSE", 0.0)
    closed = free_port()
    site = alert_site(tmp_path, f"""
[[alerts.webhooks]]
url = "{receiver.url}/fail"

[[alerts.webhooks]]
url = "http://127.0.0.1:{closed}/nadie"

[[alerts.webhooks]]
url = "{receiver.url}/bien"
""")
    lines: list[str] = []
    alerter = Alerter(site.cfg, site.ledger, log=lines.append)
    assert alerter.incident(open_incident(site.ledger), "opened")
    assert alerter.flush(20)
    failed = site.ledger.events("alert_failed")
    assert len(failed) == 2
    reasons = sorted(e["detail"]["reason"] for e in failed)
    assert reasons[0].startswith("error de red: ConnectError")
    assert reasons[1] == "respondió 500"
    assert [p for p, _b in receiver.received].count("/fail") == 2  # a 5xx is retried once
    assert [p for p, _b in receiver.received].count("/bien") == 1  # the others still go
    (sent,) = site.ledger.events("alert_sent")
    assert sent["detail"]["dest"] == receiver.url
    assert len(lines) == 2 and all("no se pudo enviar el aviso" in line for line in lines)
    site.ledger.close()


@pytest.mark.slow
def test_sending_does_not_block_the_caller(tmp_path: Path, receiver: Receiver) -> None:
    site = alert_site(tmp_path, f"""
[[alerts.webhooks]]
url = "{receiver.url}/slow"
""")
    alerter = Alerter(site.cfg, site.ledger)
    assert alerter.incident(open_incident(site.ledger), "opened")
    # The caller is back while the receiver still holds the request: a blocking send would
    # only have returned after the receiver answered (it waits up to 10 s for ``release``).
    assert receiver.arrived.wait(10) and receiver.received == []
    assert not alerter.flush(0.2)  # still in flight
    receiver.release.set()
    assert alerter.flush(10)
    assert len(receiver.received) == 1
    alerter.close()
    site.ledger.close()


def test_nothing_configured_sends_nothing(site: Site) -> None:
    alerter = Alerter(site.cfg, site.ledger)
    assert alerter.incident(open_incident(site.ledger), "opened") is False
    with pytest.raises(ValueError):
        alerter.incident(open_incident(site.ledger), "reopened")
