"""The puller's HTTP client, and what the authority's server answers mean.

TLS verifies against the system's store (Mozilla's when there is none) plus ``pull.ca_file``;
network failures become one Spanish line the operator can act on.
"""

from __future__ import annotations

import email.message
import re
import ssl

import httpx

from difusor import __version__
from difusor.config import Config
from difusor.errors import ConfigError, DifusorError

DEFAULT_NAME = "paquete.zip"
CONNECT_TIMEOUT = 10.0
_CONTENT_RANGE = re.compile(r"bytes\s+(?:(\d+)-(\d+)|\*)/(\d+|\*)")


class StartOver(Exception):
    """The partial download cannot be continued: fetch the whole file instead."""


def http_client(cfg: Config) -> httpx.Client:
    timeout = cfg.pull.timeout
    return httpx.Client(
        verify=_tls(cfg), follow_redirects=True,
        timeout=httpx.Timeout(timeout, connect=min(timeout, CONNECT_TIMEOUT)),
        headers={"User-Agent": f"difusor/{__version__}", "Accept-Encoding": "identity"},
    )


def _tls(cfg: Config) -> ssl.SSLContext:
    context = ssl.create_default_context()
    paths = ssl.get_default_verify_paths()
    if not (paths.cafile or paths.capath):  # no system store: Mozilla's, as httpx would
        import certifi

        context.load_verify_locations(cafile=certifi.where())
    if cfg.pull.ca_file:
        ca = cfg.path(cfg.pull.ca_file)
        try:
            context.load_verify_locations(cafile=str(ca))
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"pull.ca_file: no puedo leer el certificado {ca} ({exc})") from None
    return context


def network_error(url: str, timeout: float, exc: httpx.HTTPError) -> DifusorError:
    host = httpx.URL(url).host
    if isinstance(exc, httpx.TimeoutException):
        return DifusorError(f"{host} no respondió en {timeout:g} s "
                            "(pull.timeout); se reintentará")
    cause: BaseException | None = exc
    while cause is not None and not isinstance(cause, ssl.SSLCertVerificationError):
        cause = cause.__cause__ or cause.__context__
    if cause is not None:
        return DifusorError(
            f"el certificado de {host} no es de confianza ({cause.verify_message}); si la "
            "autoridad usa una CA propia, indica su certificado en pull.ca_file")
    if isinstance(exc, httpx.ConnectError):
        return DifusorError(f"no se pudo conectar con {host} ({exc}); se reintentará")
    return DifusorError(f"falla de red con {host} ({exc}); se reintentará")


def response_name(response: httpx.Response) -> str:
    """Content-Disposition's filename, else the URL's last segment, else ``paquete.zip``."""
    disposition = response.headers.get("content-disposition")
    if disposition:
        msg = email.message.Message()
        msg["content-disposition"] = disposition
        name = _basename(msg.get_filename() or "")
        if name:
            return name
    return _basename(response.url.path) or DEFAULT_NAME


def _basename(value: str) -> str:
    name = value.replace("\\", "/").rsplit("/", 1)[-1].strip()
    return "" if name in (".", "..") else name


def content_range(response: httpx.Response) -> tuple[int | None, int | None, int | None]:
    """(start, end, total) of a ``Content-Range``; StartOver when it cannot be read."""
    m = _CONTENT_RANGE.fullmatch(response.headers.get("content-range", "").strip())
    if not m:
        raise StartOver
    start, end, total = m.groups()
    return (int(start) if start else None, int(end) if end else None,
            int(total) if total and total != "*" else None)
