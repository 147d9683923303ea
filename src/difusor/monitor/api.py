"""The endpoint remote probe agents talk to (``[monitor] listen``), Bearer-token protected.

    GET  /expected   what a healthy target serves now (``Expected`` as JSON) plus ``targets``:
                     the ``[[monitor.targets]]`` an agent probes unless told otherwise
    POST /report     {"vantage": NAME, "interval_s": S, "results": [ProbeResult, ...]}
                     → each result is a ``probes`` row with ``vantage`` = NAME, at receipt time

The token comes from the environment variable ``[monitor] token_env`` and is compared in constant
time. 401 without it or with a wrong one, 400 for a request or body that is not exactly a valid
report (a ``Content-Length`` that is not plain ASCII digits, two of them, ``Transfer-Encoding``,
JSON nested deeper than ``MAX_DEPTH``, NaN, a number too long to read), 413 past ``MAX_BODY``.
The server (``apiserver.BoundedServer``) gives each connection a thread, at most
``max_connections`` at once, and closes one idle for ``idle_timeout`` s. It speaks plain HTTP:
across the Internet, put it behind the TLS of nginx or of a tunnel.
"""

from __future__ import annotations

import hmac
import itertools
import json
import os
import re
import threading
from collections.abc import Callable, Mapping
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StrictBool, ValidationError, field_validator

from difusor.config import Config, parse_address
from difusor.errors import ConfigError, DifusorError
from difusor.ledger import Ledger
from difusor.monitor.apiserver import BoundedServer, BoundedServerV6, printable
from difusor.monitor.expected import expected_state
from difusor.monitor.probe import FAILURES
from difusor.monitor.service import EMBEDDED
from difusor.monitor.service import LOCAL as LOCAL_VANTAGE  # an agent may not claim it

MAX_BODY = 256 * 1024  # bytes of one report
MAX_RESULTS = 100
MAX_DEPTH = 10  # objects/arrays inside each other: a report and its details need 6
MAX_CONNECTIONS = 16
IDLE_TIMEOUT = 10.0  # seconds a connection may send nothing
_LENGTH = re.compile(r"[0-9]{1,9}")  # ASCII only: str.isdigit() takes "²" too
_STRINGS = re.compile(rb'"(?:[^"\\]|\\.)*"')
_BRACKETS = re.compile(rb"[\[\]{}]")
VANTAGE_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"

_Text = Annotated[str, Field(max_length=2000)]


class _Result(BaseModel):
    model_config = ConfigDict(extra="ignore")

    target: Annotated[str, Field(min_length=1, max_length=100, pattern=r"^[^\x00-\x1f\x7f]+$")]
    ok: StrictBool
    failure: str | None = None
    status: Annotated[int, Field(ge=0, le=999)] | None = None
    latency_ms: Annotated[float, Field(ge=0, le=3_600_000)] | None = None
    corte: Annotated[str, Field(max_length=100)] | None = None
    message: _Text = ""
    detail: dict[str, Any] | None = None

    @field_validator("failure")
    @classmethod
    def _known(cls, v: str | None) -> str | None:
        if v is not None and v not in FAILURES:
            raise ValueError(f"falla desconocida «{v}»; se esperaba una de {', '.join(FAILURES)}")
        return v


class _Report(BaseModel):
    model_config = ConfigDict(extra="ignore")

    vantage: Annotated[str, Field(pattern=VANTAGE_PATTERN)]
    interval_s: Annotated[float, Field(gt=0, le=86_400)]
    results: Annotated[list[_Result], Field(min_length=1, max_length=MAX_RESULTS)]


class BadReport(ValueError):
    """A report body that is not JSON or not a valid report; the message is Spanish."""


def _depth(body: bytes) -> int:
    """How deep objects and arrays nest, counted without parsing (the parser would recurse)."""
    depth = deepest = 0
    for m in _BRACKETS.finditer(_STRINGS.sub(b'""', body)):
        depth += 1 if m.group() in b"[{" else -1
        deepest = max(deepest, depth)
    return deepest


def _no_constant(name: str) -> None:
    raise ValueError(f"{name} no es un número JSON")


def parse_report(body: bytes) -> _Report:
    if _depth(body) > MAX_DEPTH:
        raise BadReport(f"el reporte está anidado a más de {MAX_DEPTH} niveles")
    try:
        doc = json.loads(body, parse_constant=_no_constant)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, bad UTF-8, 5,000 digits
        raise BadReport(f"el cuerpo no es JSON válido: {printable(str(exc), 120)}") from None
    if not isinstance(doc, dict):
        raise BadReport("el reporte debe ser un objeto JSON")
    try:
        report = _Report.model_validate(doc)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(x) for x in first["loc"]) or "reporte"
        reason = first["ctx"]["error"] if first["type"] == "value_error" else first["msg"]
        raise BadReport(f"reporte inválido en «{where}»: {reason}") from None
    if report.vantage == LOCAL_VANTAGE:
        raise BadReport(f"el nombre «{LOCAL_VANTAGE}» está reservado para el monitor del servidor")
    return report


def missing_token(cfg: Config) -> str:
    return (f"[monitor] listen está configurado pero la variable de entorno "
            f"{cfg.monitor.token_env} (el token de los sondeos remotos) está vacía: defínela, o "
            "deja listen vacío")


def check_token(cfg: Config, env: Mapping[str, str] | None = None) -> None:
    """Refuse to start when ``[monitor] listen`` is set without its token: the API could only
    fail, and under ``difusor run`` it would be restarted again and again."""
    environ = env if env is not None else os.environ
    if cfg.monitor.listen and not environ.get(cfg.monitor.token_env, ""):
        raise ConfigError(missing_token(cfg))


def default_targets(cfg: Config) -> list[dict[str, Any]]:
    """What an agent probes unless told otherwise: ``[[monitor.targets]]``; none configured, the
    embedded server under the name the local monitor gives it, at ``[site] url`` (its loopback
    address means nothing elsewhere), so uptime sees two views of one target."""
    if cfg.monitor.targets:
        return [{"name": t.name, "url": t.url, "public": t.public} for t in cfg.monitor.targets]
    return [{"name": EMBEDDED, "url": cfg.site.url, "public": True}]


class ProbeAPI:
    """The server; ``start()``/``stop()`` for tests, ``run(stop)`` for the supervisor."""

    def __init__(self, cfg: Config, ledger: Ledger, *, token: str, listen: str | None = None,
                 log: Callable[[str], None] | None = None,
                 max_connections: int = MAX_CONNECTIONS, idle_timeout: float = IDLE_TIMEOUT) -> None:
        if not token:
            raise ConfigError(missing_token(cfg))
        self.cfg = cfg
        self.ledger = ledger
        self.token = token.encode()
        self.listen = listen or cfg.monitor.listen
        self.log = log or (lambda _line: None)
        self.max_connections = max_connections
        self.idle_timeout = idle_timeout
        self._offsets = itertools.count()
        self._server: BoundedServer | None = None
        self._thread: threading.Thread | None = None

    @classmethod
    def from_config(cls, cfg: Config, ledger: Ledger, *, env: Mapping[str, str] | None = None,
                    log: Callable[[str], None] | None = None) -> ProbeAPI:
        environ = env if env is not None else os.environ
        return cls(cfg, ledger, token=environ.get(cfg.monitor.token_env, ""), log=log)

    @property
    def address(self) -> tuple[str, int]:
        if self._server is None:
            raise RuntimeError("el servidor de sondeos no está en marcha")
        host, port = self._server.server_address[:2]
        return str(host), int(port)

    @property
    def url(self) -> str:
        host, port = self.address
        return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"

    def start(self) -> ProbeAPI:
        try:
            host, port = parse_address(self.listen)
        except ValueError as exc:
            raise ConfigError(f"monitor.listen: {exc}") from None
        server_cls = BoundedServerV6 if ":" in host else BoundedServer
        try:
            self._server = server_cls((host, port), _Handler, log=self.log,
                                      max_connections=self.max_connections,
                                      idle_timeout=self.idle_timeout)
        except OSError as exc:
            raise DifusorError(f"no puedo escuchar en {self.listen} para los sondeos remotos: "
                               f"{exc.strerror or exc}") from None
        self._server.api = self  # type: ignore[attr-defined]
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={
            "poll_interval": 0.2}, name="api-sondeos", daemon=True)
        self._thread.start()
        self.log(f"sondeos remotos: escuchando en {self.url}")
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None

    def run(self, stop: threading.Event) -> None:
        self.start()
        try:
            stop.wait()
        finally:
            self.stop()

    def __enter__(self) -> ProbeAPI:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- what the handler calls ---------------------------------------------------------

    def authorized(self, header: str | None) -> bool:
        scheme, _, given = (header or "").partition(" ")
        if scheme.lower() != "bearer" or not given.strip():
            return False
        return hmac.compare_digest(given.strip().encode(), self.token)

    def expected(self) -> dict[str, Any]:
        state = expected_state(self.cfg, self.ledger, sample=self.cfg.monitor.sample,
                               offset=next(self._offsets) * max(1, self.cfg.monitor.sample))
        doc: dict[str, Any] = json.loads(state.to_json())
        doc["targets"] = default_targets(self.cfg)
        doc["interval_s"] = self.cfg.monitor.interval
        return doc

    def record(self, report: _Report) -> int:
        for r in report.results:
            self.ledger.probe_recorded(
                target=r.target, vantage=report.vantage, ok=r.ok, interval_s=report.interval_s,
                failure=r.failure, status=r.status, latency_ms=r.latency_ms, corte=r.corte,
                message=r.message, detail=r.detail)
        bad = [r for r in report.results if not r.ok]
        if bad:
            self.log(f"sondeo remoto «{report.vantage}»: "
                     + "; ".join(f"{r.target}: {r.message}" for r in bad))
        return len(report.results)


class _Handler(BaseHTTPRequestHandler):
    server_version = "difusor-sondeos"
    sys_version = ""
    protocol_version = "HTTP/1.1"

    def setup(self) -> None:
        self.timeout = self.server.idle_timeout  # type: ignore[attr-defined]
        super().setup()

    @property
    def api(self) -> ProbeAPI:
        return self.server.api  # type: ignore[attr-defined,no-any-return]

    def log_message(self, format: str, *args: Any) -> None:
        pass  # requests are not worth a log line; refusals are logged below

    def send_error(self, code: int, message: str | None = None,
                   explain: str | None = None) -> None:
        # What the stdlib refuses itself (a bad request line, headers too long): JSON in Spanish.
        self._json(HTTPStatus(code), {"error": f"petición HTTP inválida ({code})"}, close=True)

    def do_GET(self) -> None:
        if self.path.split("?", 1)[0] != "/expected":
            self._refuse_unknown("GET")
            return
        if not self._auth():
            return
        try:
            doc = self.api.expected()
        except Exception as exc:  # the store mid-change, say: the agent retries next round
            self.api.log(f"sondeos remotos: no pude preparar /expected: {exc}")
            self._json(HTTPStatus.SERVICE_UNAVAILABLE, {"error": "estado no disponible; reintenta"})
            return
        self._json(HTTPStatus.OK, doc)

    def do_POST(self) -> None:
        if self.path.split("?", 1)[0] != "/report":
            self._refuse_unknown("POST")
            return
        if not self._auth():
            return
        if self.headers.get("Transfer-Encoding") is not None:
            self._bad("Transfer-Encoding no admitido: envía el reporte con Content-Length")
            return
        lengths = self.headers.get_all("Content-Length") or []
        if not lengths:
            self._json(HTTPStatus.LENGTH_REQUIRED, {"error": "falta Content-Length"}, close=True)
            return
        length = lengths[0].strip(" \t")
        if len(lengths) > 1 or not _LENGTH.fullmatch(length):
            self._bad("Content-Length inválido: debe ser uno solo, en dígitos ASCII")
            return
        if int(length) > MAX_BODY:
            self._json(HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                       {"error": f"el reporte pasa de {MAX_BODY} bytes"}, close=True)
            return
        body = self.rfile.read(int(length))
        try:
            report = parse_report(body)
        except BadReport as exc:
            self._json(HTTPStatus.BAD_REQUEST, {"error": str(exc)})
            return
        except Exception as exc:  # a bug, not the agent's fault: one line, and an answer
            self.api.log(f"sondeos remotos: reporte no procesado: {exc!r}")
            self._json(HTTPStatus.INTERNAL_SERVER_ERROR, {"error": "error interno; reintenta"},
                       close=True)
            return
        count = self.api.record(report)
        self._json(HTTPStatus.OK, {"registrados": count, "vantage": report.vantage})

    def do_PUT(self) -> None:
        self._refuse_unknown("PUT")

    def do_DELETE(self) -> None:
        self._refuse_unknown("DELETE")

    def _refuse_unknown(self, method: str) -> None:
        path = self.path.split("?", 1)[0]
        if path in ("/expected", "/report"):
            allow = "GET" if path == "/expected" else "POST"
            self._json(HTTPStatus.METHOD_NOT_ALLOWED, {"error": f"usa {allow}"}, close=True,
                       headers={"Allow": allow})
        else:
            self._json(HTTPStatus.NOT_FOUND, {"error": "no existe; usa /expected o /report"},
                       close=True)

    def _bad(self, reason: str) -> None:
        self._json(HTTPStatus.BAD_REQUEST, {"error": reason}, close=True)

    def _auth(self) -> bool:
        if self.api.authorized(self.headers.get("Authorization")):
            return True
        self.api.log(f"sondeos remotos: {self.command} {printable(self.path)} de "
                     f"{self.client_address[0]} rechazado: token ausente o incorrecto")
        self._json(HTTPStatus.UNAUTHORIZED, {"error": "token ausente o incorrecto"}, close=True,
                   headers={"WWW-Authenticate": 'Bearer realm="difusor"'})
        return False

    def _json(self, status: HTTPStatus, doc: dict[str, Any], *, close: bool = False,
              headers: dict[str, str] | None = None) -> None:
        data = json.dumps(doc, ensure_ascii=False).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        if close:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        self.wfile.write(data)
