"""One probe of one target: is it *up* in the PREP sense, and if not, what failed.

Up means (ARCHITECTURE, "Availability"): ``main.json`` answers 200, carries exactly
``Cache-Control: no-cache, no-store, must-revalidate``, its bytes are the live release's (not an
older corte's: that is *stale*, not *integrity*) and so are a rotating sample of other files.

A result has ``ok`` (counts as up for uptime) and ``failure`` (the worst finding). The two are
not the same thing: a slow answer (``degraded``) or a certificate near expiry (``tls`` with
``detail["severity"] == "warning"``) are findings that open incidents while the site is still up,
so they come with ``ok=True``. Down findings: outage, stale, integrity, header, and ``tls`` when
the handshake itself fails. Uptime counts ``ok`` only.
"""

from __future__ import annotations

import datetime as dt
import errno
import hashlib
import ssl
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import httpx
from cryptography import x509

from difusor.headers import MAIN_JSON_CACHE_CONTROL
from difusor.monitor.expected import Expected

FAILURES = ("outage", "integrity", "stale", "header", "tls", "degraded", "authority_delay")
# Worst first: the failure a result is filed under when several are found.
_RANK = {name: i for i, name in enumerate(FAILURES)}
DOWN = frozenset({"outage", "integrity", "stale", "header"})


@dataclass
class ProbeResult:
    target: str
    ok: bool
    failure: str | None  # outage|degraded|stale|integrity|header|tls
    status: int | None
    latency_ms: float | None
    corte: str | None
    message: str
    detail: dict[str, Any] = field(default_factory=dict)

    def ledger_fields(self) -> dict[str, Any]:
        """Keyword arguments for ``Ledger.probe_recorded`` (besides vantage and interval)."""
        return {"target": self.target, "ok": self.ok, "failure": self.failure,
                "status": self.status, "latency_ms": self.latency_ms, "corte": self.corte,
                "message": self.message, "detail": self.detail}


class _Findings:
    def __init__(self) -> None:
        self.items: list[dict[str, Any]] = []

    def add(self, failure: str, message: str, *, down: bool | None = None) -> None:
        self.items.append({"failure": failure, "message": message,
                           "down": failure in DOWN if down is None else down})

    def worst(self) -> dict[str, Any] | None:
        # A down finding outranks any that leaves the site up.
        return min(self.items, key=lambda f: (not f["down"], _RANK[f["failure"]]), default=None)


def probe_target(name: str, url: str, expected: Expected, *, timeout: float, degraded_ms: float,
                 tls_warn_days: int, ca_file: str = "", host: str = "",
                 client: httpx.Client | None = None) -> ProbeResult:
    """Probe ``url`` (a site's base URL) against ``expected``; never raises for network trouble."""
    own = client is None
    if client is None:
        client = make_client(timeout, ca_file, host)
    try:
        return _probe(client, name, url.rstrip("/"), expected, timeout=timeout,
                      degraded_ms=degraded_ms, tls_warn_days=tls_warn_days)
    finally:
        if own:
            client.close()


def make_client(timeout: float, ca_file: str = "", host: str = "") -> httpx.Client:
    """A client that opens a fresh connection per probe (as a new visitor would) and trusts
    the system's CAs plus ``ca_file`` (a self-signed certificate, or a chain: the leaf is
    enough to anchor it). ``host``: the Host to ask for (one named site of a server that serves
    several), instead of the URL's."""
    context = ssl.create_default_context()
    if ca_file:
        context.load_verify_locations(cafile=ca_file)
        context.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
    return httpx.Client(verify=context, timeout=timeout, follow_redirects=False,
                        headers={"User-Agent": "difusor-monitor",
                                 "Accept-Encoding": "identity", **({"Host": host} if host else {})})


def _probe(client: httpx.Client, name: str, base: str, expected: Expected, *, timeout: float,
           degraded_ms: float, tls_warn_days: int) -> ProbeResult:
    findings = _Findings()
    detail: dict[str, Any] = {"expected_release": expected.release_id}
    main_url = f"{base}/{quote(expected.main_path)}"
    started = time.perf_counter()
    try:
        with client.stream("GET", main_url, headers={"Accept-Encoding": "identity"}) as resp:
            cert_der = _peer_certificate(resp)
            body = resp.read()
    except httpx.HTTPError as exc:
        kind, message = _network_error(exc, timeout)
        detail["error"] = kind
        detail["error_text"] = str(exc) or type(exc).__name__
        failure = "tls" if kind == "tls" else "outage"
        findings.add(failure, message, down=True)
        return _result(name, findings, None, None, None, detail)
    latency = (time.perf_counter() - started) * 1000
    served = resp.headers.get("x-difusor-corte")
    corte = served if served and served != "-" else None
    status = resp.status_code
    detail["served_release"] = corte

    if cert_der is not None:
        _check_certificate(cert_der, tls_warn_days, findings, detail)
    if status != 200:
        if status == 404 and expected.release_id is None:
            detail["note"] = "sin corte publicado"
        else:
            detail["error"] = "http_5xx" if status >= 500 else "http_status"
            findings.add("outage", f"{expected.main_path} respondió {status}")
            return _result(name, findings, status, latency, corte, detail)
    else:
        cache_control = resp.headers.get("cache-control")
        if cache_control != MAIN_JSON_CACHE_CONTROL:
            detail["cache_control"] = cache_control
            findings.add("header", f"Cache-Control de {expected.main_path} es "
                         f"«{cache_control or '(ninguno)'}», debe ser "
                         f"«{MAIN_JSON_CACHE_CONTROL}»")
        digest = hashlib.sha256(body).hexdigest()
        detail["main_sha256"] = digest
        stale = False
        if expected.main_sha256 and digest != expected.main_sha256:
            older = expected.older_main.get(digest)
            if older is None and corte and corte != expected.release_id and \
                    corte in expected.older_main.values():
                older = corte
            if older is not None:
                stale = True
                corte = corte or older
                detail["served_release"] = older
                findings.add("stale", f"sirve el corte anterior {older}, no el vigente "
                             f"{expected.release_id}")
            else:
                findings.add("integrity", f"{expected.main_path} no coincide con el corte "
                             f"{expected.release_id} (sha256 {digest[:12]}…, se esperaba "
                             f"{expected.main_sha256[:12]}…)")
        elif expected.main_sha256 and corte is None:
            corte = expected.release_id
        if not stale:
            _check_sample(client, base, expected, findings, detail, timeout)
    if latency > degraded_ms:
        findings.add("degraded", f"respuesta lenta: {latency:.0f} ms (umbral "
                     f"{degraded_ms:.0f} ms)")
    return _result(name, findings, status, latency, corte, detail)


def _check_sample(client: httpx.Client, base: str, expected: Expected,
                  findings: _Findings, detail: dict[str, Any], timeout: float) -> None:
    bad: list[str] = []
    for path, want in expected.files.items():
        try:
            resp = client.get(f"{base}/{quote(path)}", headers={"Accept-Encoding": "identity"})
        except httpx.HTTPError as exc:
            kind, message = _network_error(exc, timeout)
            detail["error"] = kind
            findings.add("outage", f"/{path}: {message}")
            return
        if resp.status_code >= 500:
            detail["error"] = "http_5xx"
            findings.add("outage", f"/{path} respondió {resp.status_code}")
            return
        if resp.status_code != 200 or hashlib.sha256(resp.content).hexdigest() != want:
            bad.append(path)
    detail["sample"] = len(expected.files)
    if bad:
        detail["mismatched"] = bad
        shown = ", ".join(f"/{p}" for p in bad[:3]) + (" …" if len(bad) > 3 else "")
        findings.add("integrity", f"{len(bad)} de {len(expected.files)} archivos no coinciden "
                     f"con el manifiesto: {shown}")


def _peer_certificate(resp: httpx.Response) -> bytes | None:
    stream = resp.extensions.get("network_stream")
    ssl_object = stream.get_extra_info("ssl_object") if stream is not None else None
    if ssl_object is None:
        return None
    der = ssl_object.getpeercert(True)  # positional: the raw _ssl object has no keywords
    return bytes(der) if der else None


def _check_certificate(der: bytes, warn_days: int, findings: _Findings,
                       detail: dict[str, Any]) -> None:
    cert = x509.load_der_x509_certificate(der)
    expires = cert.not_valid_after_utc
    days = (expires - dt.datetime.now(dt.UTC)).total_seconds() / 86400
    detail["tls_expires"] = expires.isoformat()
    detail["tls_days_left"] = round(days, 2)
    if days < warn_days:
        detail["severity"] = "warning"
        findings.add("tls", f"el certificado TLS vence en {days:.1f} días "
                     f"({expires:%Y-%m-%d %H:%M} UTC)", down=False)


def _network_error(exc: httpx.HTTPError, timeout: float) -> tuple[str, str]:
    """(kind, Spanish message) for a failed request; kind feeds the suggested root cause."""
    chain: list[BaseException] = []
    cur: BaseException | None = exc
    while cur is not None and len(chain) < 10:
        chain.append(cur)
        cur = cur.__cause__ or cur.__context__
    text = " ".join(str(e) for e in chain).lower()
    if isinstance(exc, httpx.TimeoutException):
        return "timeout", f"no respondió en {timeout:g} s"
    if any(isinstance(e, ssl.SSLCertVerificationError) for e in chain) or \
            "certificate verify failed" in text:
        reason = "vencido" if "expired" in text else "no válido"
        return "tls", f"certificado TLS {reason}: {_short(chain)}"
    if any(isinstance(e, ssl.SSLError) for e in chain):
        return "tls", f"falló la negociación TLS: {_short(chain)}"
    if any(isinstance(e, ConnectionRefusedError) for e in chain) or "refused" in text or \
            f"[errno {errno.ECONNREFUSED}]" in text:
        return "refused", "conexión rechazada"
    if any(isinstance(e, ConnectionResetError) for e in chain) or "reset" in text:
        return "reset", "la conexión se cortó"
    if "name or service not known" in text or "nodename nor servname" in text or \
            "temporary failure in name resolution" in text:
        return "dns", "el nombre no se resuelve (DNS)"
    if isinstance(exc, httpx.RemoteProtocolError):
        return "protocol", "respuesta HTTP inválida o cortada"
    return "network", f"error de red: {_short(chain)}"


def _short(chain: list[BaseException]) -> str:
    last = chain[-1]
    return (str(last) or type(last).__name__)[:200]


def _result(name: str, findings: _Findings, status: int | None, latency: float | None,
            corte: str | None, detail: dict[str, Any]) -> ProbeResult:
    worst = findings.worst()
    if worst is None:
        return ProbeResult(name, True, None, status, latency, corte,
                           f"en línea: corte {corte or '-'}", detail)
    detail["findings"] = findings.items
    ok = not any(f["down"] for f in findings.items)
    message = "; ".join(f["message"] for f in sorted(
        findings.items, key=lambda f: (not f["down"], _RANK[f["failure"]])))
    if worst["failure"] == "tls" and not worst["down"]:
        detail.setdefault("severity", "warning")
    return ProbeResult(name, ok, worst["failure"], status, latency, corte, message, detail)
