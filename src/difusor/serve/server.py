"""Running the embedded server: granian workers over the RSGI app, one shared socket."""

from __future__ import annotations

import logging
import ssl
import sys
from functools import partial
from pathlib import Path

from granian import Granian
from granian.constants import Interfaces, Loops, SSLProtocols, TaskImpl
from granian.http import HTTP1Settings
from granian.log import LogLevels

from difusor.config import Config, parse_address
from difusor.errors import ConfigError
from difusor.serve.app import load_app
from difusor.serve.lifeline import claim_port, die_with_parent

HEADER_TIMEOUT_MS = 5000  # a client that takes longer to send its headers is cut (slowloris)


def tls_files(cfg: Config) -> tuple[Path, Path] | None:
    """``[web] tls_cert`` and ``tls_key`` as paths, checked; None when the server speaks HTTP."""
    web = cfg.web
    if not web.tls_cert and not web.tls_key:
        return None
    if not (web.tls_cert and web.tls_key):
        raise ConfigError("[web] tls_cert y tls_key van juntos: define los dos o ninguno")
    cert, key = cfg.path(web.tls_cert), cfg.path(web.tls_key)
    for name, path in (("tls_cert", cert), ("tls_key", key)):
        if not path.is_file():
            raise ConfigError(f"web.{name} apunta a {path}, que no existe")
    try:
        ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(cert, key)
    except (ssl.SSLError, OSError) as exc:
        raise ConfigError(f"no puedo usar el certificado {cert} con la llave {key}: {exc}") from None
    return cert, key


def serve(cfg: Config, config_path: Path) -> None:
    """Serve the live corte (and each new one as it is activated) until SIGINT/SIGTERM."""
    die_with_parent()
    host, port = parse_address(cfg.web.listen)
    claim_port(host, port)
    tls = tls_files(cfg)
    server = Granian(
        "difusor.serve.app:load_app",
        address=host,
        port=port,
        interface=Interfaces.RSGI,
        workers=cfg.web.workers,
        # Rust-side task scheduling measured ≈ 40 % more requests/s here; granian itself falls
        # back to asyncio on Python ≥ 3.12, where it is unavailable.
        task_impl=TaskImpl.rust if sys.version_info < (3, 12) else TaskImpl.asyncio,
        loop=Loops(cfg.web.event_loop),
        websockets=False,
        http1_settings=HTTP1Settings(header_read_timeout=HEADER_TIMEOUT_MS),
        backlog=4096,
        log_level=LogLevels.warning,
        respawn_failed_workers=True,
        # A worker told to stop while still starting can miss the signal (granian 2.8): kill it
        # after a few seconds rather than hang the stop (the contract: stopped within 10 s).
        workers_kill_timeout=4,
        # HTTPS when [web] tls_cert and tls_key are set; TLS 1.2 too (granian defaults to 1.3).
        ssl_cert=tls[0] if tls else None,
        ssl_key=tls[1] if tls else None,
        ssl_protocol_min=SSLProtocols.tls12,
    )
    logging.getLogger("_granian").setLevel(logging.ERROR)
    server.serve(target_loader=partial(load_app, str(config_path.resolve())), wrap_loader=False)
