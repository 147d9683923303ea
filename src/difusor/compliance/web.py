"""II.1.b, II.1.e and HTTPS: the site answers, ``/json/main.json`` carries the exact header
through the public URL and through each CDN, and the public URL's TLS is valid (days left,
version ≥ 1.2). The header is judged by the monitor's own probe, so check and uptime agree."""

from __future__ import annotations

import socket
import ssl
import warnings
from datetime import UTC, datetime
from urllib.parse import urlsplit

from cryptography import x509

from difusor.compliance.outcome import Outcome
from difusor.config import Config
from difusor.headers import MAIN_JSON_CACHE_CONTROL
from difusor.ledger import Ledger
from difusor.monitor.expected import expected_state
from difusor.monitor.probe import probe_target
from difusor.monitor.service import targets as monitor_targets

HEADER = ("header", "II.1.e", f"Cache-Control: {MAIN_JSON_CACHE_CONTROL} en /json/main.json")
HTTPS = ("https", "II.2.a", "HTTPS válido, TLS 1.2 o más")
WEB = ("webserver", "II.1.b", "Servidor web que publica el corte vigente")
TIMEOUT = 10.0
# OpenSSL's verify codes an operator meets, said in Spanish (x509_vfy.h).
_VERIFY_CODES = {
    9: "todavía no es válido (¿reloj del servidor?)",
    10: "vencido",
    18: "autofirmado y no es de confianza",
    19: "la cadena termina en una CA autofirmada que no es de confianza",
    20: "falta el certificado intermedio o la CA no es de confianza",
    62: "no corresponde al nombre del sitio",
}


def public_points(cfg: Config) -> list[tuple[str, str]]:
    """(label, base URL) a visitor reaches: the public URL, then each CDN's edge URL."""
    points = [("sitio público", str(cfg.site.url))]
    points += [(f"CDN «{c.label}»", c.edge_url) for c in cfg.cdn if c.edge_url]
    seen: set[str] = set()
    return [(n, u.rstrip("/")) for n, u in points if not (u.rstrip("/") in seen
                                                          or seen.add(u.rstrip("/")))]


def ca_file_for(cfg: Config, url: str) -> str:
    """The CA a monitor target with this URL trusts, or the embedded server's own certificate
    when the URL is the embedded server (a self-signed one in tests and small installs)."""
    for t in monitor_targets(cfg):
        if t.url.rstrip("/") == url.rstrip("/") and t.ca_file:
            return t.ca_file
    if cfg.web.tls_cert:
        return str(cfg.path(cfg.web.tls_cert))
    return ""


def header_and_web(cfg: Config, ledger: Ledger) -> list[Outcome]:
    expected = expected_state(cfg, ledger, sample=3)
    said, bad, served = [], [], []
    for label, url in public_points(cfg):
        r = probe_target(label, url, expected, timeout=TIMEOUT, degraded_ms=1e9,
                         tls_warn_days=0, ca_file=ca_file_for(cfg, url))
        cc = r.detail.get("cache_control", MAIN_JSON_CACHE_CONTROL if r.status == 200 else None)
        said.append(f"{label}: GET {url}/json/main.json → "
                    f"{r.status if r.status is not None else 'sin respuesta'}"
                    + (f", Cache-Control «{cc}»" if r.status == 200 else f" ({r.message})"))
        if r.status != 200 or cc != MAIN_JSON_CACHE_CONTROL:
            bad.append(label)
        if r.ok and r.failure not in ("integrity", "stale"):
            served.append(label)
    evidence = "; ".join(said)
    header = (Outcome.fail(*HEADER, evidence, failed=bad) if bad
              else Outcome.ok(*HEADER, evidence))
    if expected.release_id is None:
        web = Outcome.fail(*WEB, "no hay corte publicado todavía: publica uno de prueba")
    elif len(served) == len(public_points(cfg)):
        web = Outcome.ok(*WEB, f"sirve el corte vigente {expected.release_id} en "
                         + ", ".join(served), corte=expected.release_id)
    else:
        web = Outcome.fail(*WEB, f"el corte vigente es {expected.release_id}; {evidence}",
                           corte=expected.release_id)
    return [web, header]


def https(cfg: Config) -> Outcome:
    url = str(cfg.site.url)
    parts = urlsplit(url)
    if parts.scheme != "https":
        return Outcome.fail(*HTTPS, f"el sitio público {url} no usa https://")
    host, port = parts.hostname or "", parts.port or 443
    context = ssl.create_default_context()
    ca = ca_file_for(cfg, url)
    if ca:
        context.load_verify_locations(cafile=ca)
        context.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
    try:
        version, der = _handshake(context, host, port)
    except ssl.SSLCertVerificationError as exc:
        why = _VERIFY_CODES.get(exc.verify_code, exc.verify_message or str(exc.reason))
        return Outcome.fail(*HTTPS, f"{host}:{port}: certificado no válido: {why}",
                            verify_code=exc.verify_code)
    except (OSError, ssl.SSLError) as exc:
        return Outcome.fail(*HTTPS, f"{host}:{port}: no se pudo negociar TLS: {exc}")
    cert = x509.load_der_x509_certificate(der)
    expires = cert.not_valid_after_utc
    days = (expires - datetime.now(UTC)).total_seconds() / 86400
    old = _accepts_old_tls(host, port)
    data = {"version": version, "expires": expires.isoformat(), "days_left": round(days, 1),
            "accepts_tls_1_1": old}
    evidence = (f"{host}:{port}: {version}, certificado válido hasta "
                f"{expires:%d/%m/%Y} ({days:.0f} días)")
    if version not in ("TLSv1.2", "TLSv1.3") or old:
        return Outcome.fail(*HTTPS, evidence + "; acepta TLS anterior a 1.2", **data)
    return Outcome.ok(*HTTPS, evidence + "; rechaza TLS 1.1", **data)


def _handshake(context: ssl.SSLContext, host: str, port: int) -> tuple[str, bytes]:
    with socket.create_connection((host, port), timeout=TIMEOUT) as sock, \
            context.wrap_socket(sock, server_hostname=host) as tls:
        return tls.version() or "?", tls.getpeercert(True) or b""


def _accepts_old_tls(host: str, port: int) -> bool:
    """Whether the server completes a handshake capped at TLS 1.1 (our OpenSSL may refuse to
    even offer it: then nobody using a current client can get it either)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        with warnings.catch_warnings():  # asking for the deprecated protocols is the point
            warnings.simplefilter("ignore", DeprecationWarning)
            context.minimum_version = ssl.TLSVersion.TLSv1
            context.maximum_version = ssl.TLSVersion.TLSv1_1
        context.set_ciphers("ALL:@SECLEVEL=0")
        with socket.create_connection((host, port), timeout=TIMEOUT) as sock, \
                context.wrap_socket(sock, server_hostname=host):
            return True
    except (OSError, ssl.SSLError, ValueError):
        return False
