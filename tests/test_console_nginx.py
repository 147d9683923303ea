"""The console published by nginx (``[console] server_name``): HTTPS only, the operator's real
address and scheme passed on, ``Secure`` ``__Host-`` cookies, and the event stream unbuffered
through a real nginx."""

from __future__ import annotations

import http.client
import os
import re
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from conftest import free_port, listens, stop_group
from test_nginx_sites import NGINX, _PinnedHTTPS, nginx_argv

from difusor import config as config_mod
from difusor.console.users import UserStore
from difusor.ledger import Ledger
from difusor.paths import StateLayout
from difusor.serve.nginxconf import NginxConfig
from difusor.serve.selfsigned import write_self_signed

NAME = "consola.prep.test"
PASSWORD = "una contraseña larga de verdad"


class _FromElsewhere(_PinnedHTTPS):
    """From 127.0.0.5: what nginx sees, and passes on, is not what the console sees (nginx)."""

    def connect(self) -> None:
        sock = socket.create_connection(("127.0.0.1", self.port), self.timeout,
                                        source_address=("127.0.0.5", 0))
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)  # type: ignore[attr-defined]


def config(root: Path, *, tls: bool, console_port: int = 8081, port: int = 443,
           http_port: int = 80) -> Path:
    text = config_mod.render_default(web_listen=f"127.0.0.1:{free_port()}")
    text += f'\n[console]\nlisten = "127.0.0.1:{console_port}"\nserver_name = "{NAME}"\n'
    text += f"[nginx]\nlisten = {http_port}\nlisten_tls = {port}\n"
    if tls:
        write_self_signed(root / "keys" / "tls.crt", root / "keys" / "tls.key",
                          ["prep.test", NAME])
        text += 'tls_cert = "keys/tls.crt"\ntls_key = "keys/tls.key"\n'
    (root / "keys").mkdir(exist_ok=True)
    (root / "keys" / "authorized_keys").write_text("")
    (root / "difusor.toml").write_text(text)
    return root / "difusor.toml"


def test_without_tls_the_console_is_not_published(tmp_path: Path) -> None:
    path = config(tmp_path, tls=False)
    done = subprocess.run([sys.executable, "-m", "difusor", "nginx-config", "--config",
                           str(path)], capture_output=True, text=True)
    assert done.returncode != 0
    assert "solo con TLS" in done.stderr and "Traceback" not in done.stderr


@pytest.mark.slow
@pytest.mark.skipif(not os.path.exists(NGINX), reason="nginx no está instalado")
def test_through_nginx_login_gives_secure_cookies_and_the_stream_flows() -> None:
    root = Path(tempfile.mkdtemp(prefix="difusor-consola-"))
    if os.geteuid() == 0:
        root.chmod(0o755)
    console_port, port = free_port(), free_port()
    path = config(root, tls=True, console_port=console_port, port=port, http_port=free_port())
    cfg = config_mod.load(path)
    StateLayout(cfg.state_dir).create()
    UserStore(StateLayout(cfg.state_dir).console_users).add("ana", PASSWORD)
    include = root / "nginx" / "difusor.conf"
    include.parent.mkdir()
    include.write_text(NginxConfig.from_config(cfg).render())
    argv = nginx_argv(include, root / "nginx")
    check = subprocess.run([*argv, "-t"], capture_output=True, text=True, timeout=20)
    assert check.returncode == 0, check.stderr
    procs = [subprocess.Popen([sys.executable, "-m", "difusor", "console", "serve", "--config",
                               str(path)], start_new_session=True),
             subprocess.Popen([*argv, "-g", "daemon off;"], start_new_session=True)]
    ctx = ssl.create_default_context(cafile=str(root / "keys" / "tls.crt"))
    opened: list[http.client.HTTPConnection] = []

    def request(method: str, target: str, body: str | None = None,
                headers: dict[str, str] | None = None) -> http.client.HTTPResponse:
        conn = _FromElsewhere(NAME, port, timeout=10, context=ctx)
        opened.append(conn)
        conn.request(method, target, body=body, headers=headers or {})
        return conn.getresponse()

    try:
        deadline = time.monotonic() + 30
        while not (listens(console_port) and listens(port)):
            assert time.monotonic() < deadline, "la consola o nginx no escuchan"
            time.sleep(0.05)
        page = request("GET", "/acceso")
        assert page.status == 200
        login_cookie = page.headers["set-cookie"]
        assert login_cookie.startswith("__Host-difusor_consola_login=") and "Secure" in login_cookie
        token = re.search(r'name="csrf" value="([^"]+)"', page.read().decode())[1]  # type: ignore[index]
        form = f"usuario=ana&contrasena={PASSWORD.replace(' ', '+')}&csrf={token}"
        done = request("POST", "/acceso", form, {
            "Content-Type": "application/x-www-form-urlencoded",
            "Cookie": login_cookie.split(";")[0], "Origin": f"https://{NAME}:{port}"})
        assert done.status == 303, done.read()
        session = done.headers["set-cookie"]
        assert session.startswith("__Host-difusor_consola=") and "Secure" in session
        assert "HttpOnly" in session
        assert done.headers["strict-transport-security"].startswith("max-age=")
        events = request("GET", "/eventos", headers={"Cookie": session.split(";")[0]})
        assert events.status == 200
        first = events.readline()  # arrives at once: nginx does not hold it in a buffer
        assert first.startswith(b"event: "), first
        # The login's address is the operator's as nginx saw it (X-Real-IP from loopback).
        with Ledger(StateLayout(cfg.state_dir).ledger) as ledger:
            assert ledger.events("console_login", limit=1)[0]["detail"]["ip"] == "127.0.0.5"
    finally:
        for conn in opened:
            conn.close()
        for proc in procs:
            stop_group(proc)
