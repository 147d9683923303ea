"""The remote probe agent: the same probes, from another vantage point, reported to the server.

Each round asks the server's probe API what is expected now (``GET /expected``), probes every
target with ``probe_target`` (the targets given, or those the server names) and posts the results
(``POST /report``), which the server records with ``vantage`` = the agent's name. The agent needs
neither the ledger nor the store, only the URL of the API and its token.
"""

from __future__ import annotations

import ssl
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from difusor.errors import DifusorError
from difusor.monitor.chaincheck import ChainCheck
from difusor.monitor.expected import Expected
from difusor.monitor.probe import ProbeResult, make_client, probe_target

API_TIMEOUT = 15.0


class ReportRejected(DifusorError):
    """The server refused the agent (wrong token, invalid report): retrying will not help."""


@dataclass(frozen=True)
class Target:
    name: str
    url: str

    @classmethod
    def parse(cls, spec: str) -> Target:
        """``NOMBRE=URL``."""
        name, sep, url = spec.partition("=")
        name, url = name.strip(), url.strip().rstrip("/")
        if not sep or not name or not url.startswith(("http://", "https://")):
            raise DifusorError(f"objetivo «{spec}» inválido: usa NOMBRE=URL, p. ej. "
                               "sitio=https://prep.example.mx")
        return cls(name, url)


@dataclass
class Round:
    """One round: what was probed, and what the server answered."""

    results: list[ProbeResult]
    recorded: int


class ProbeAgent:
    def __init__(self, report_to: str, token: str, *, name: str,
                 targets: Sequence[Target] = (), interval: float = 30.0, timeout: float = 10.0,
                 degraded_ms: float = 2000.0, tls_warn_days: int = 14, ca_file: str = "",
                 sample: int = 5, log: Callable[[str], None] | None = None) -> None:
        base = report_to.rstrip("/")
        for suffix in ("/report", "/expected"):
            base = base.removesuffix(suffix)
        if not base.startswith(("http://", "https://")):
            raise DifusorError(f"--report-to «{report_to}» no es una URL http:// o https://")
        if not token:
            raise DifusorError("falta el token (--token o la variable DIFUSOR_PROBE_TOKEN)")
        self.base = base
        self.name = name
        self.targets = list(targets)
        self.interval = interval
        self.timeout = timeout
        self.degraded_ms = degraded_ms
        self.tls_warn_days = tls_warn_days
        self.ca_file = ca_file
        self.log = log or (lambda _line: None)
        self.chain = ChainCheck(sample)
        self._api = httpx.Client(
            verify=ssl.create_default_context(cafile=ca_file or None), timeout=API_TIMEOUT,
            headers={"Authorization": f"Bearer {token}", "User-Agent": "difusor-sondeo"})

    def close(self) -> None:
        self._api.close()

    def __enter__(self) -> ProbeAgent:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def run_once(self) -> Round:
        doc = self._call("GET", "/expected")
        expected = Expected.from_json(doc)
        targets = self.targets or [Target(str(t["name"]), str(t["url"]).rstrip("/"))
                                   for t in doc.get("targets") or []
                                   if isinstance(t, dict) and t.get("name") and t.get("url")]
        if not targets:
            raise DifusorError("no hay objetivos: el servidor no indicó ninguno; usa "
                               "--target NOMBRE=URL")
        results = []
        for t in targets:
            result = probe_target(t.name, t.url, expected, timeout=self.timeout,
                                  degraded_ms=self.degraded_ms,
                                  tls_warn_days=self.tls_warn_days, ca_file=self.ca_file)
            with make_client(self.timeout, self.ca_file) as client:  # verify's check, from here
                results.append(self.chain.apply(result, t.url, client))
        answer = self._call("POST", "/report", json={
            "vantage": self.name, "interval_s": self.interval,
            "results": [r.ledger_fields() for r in results]})
        return Round(results, int(answer.get("registrados", 0)))

    def run(self, stop: threading.Event, on_round: Callable[[Round], None] | None = None) -> None:
        """A round every ``interval`` seconds until ``stop``; network trouble and server errors
        are logged and retried next round, a refusal (401, 400) ends the loop with the error."""
        while not stop.is_set():
            started = time.monotonic()
            try:
                done = self.run_once()
            except ReportRejected:
                raise
            except DifusorError as exc:
                self.log(f"ronda fallida: {exc.message}; se reintenta en {self.interval:g} s")
            else:
                if on_round is not None:
                    on_round(done)
            stop.wait(max(0.0, self.interval - (time.monotonic() - started)))

    def _call(self, method: str, path: str, json: Any = None) -> dict[str, Any]:
        url = self.base + path
        try:
            resp = self._api.request(method, url, json=json)
        except httpx.HTTPError as exc:
            raise DifusorError(f"no puedo hablar con {url}: {type(exc).__name__}"
                               + (f" ({exc})" if str(exc) else "")) from None
        if resp.status_code == 401:
            raise ReportRejected(f"{url} rechazó el token (401): revisa --token y la variable "
                                 "de entorno del servidor")
        reason = _error_of(resp)
        if resp.status_code in (400, 404, 405, 411, 413):
            raise ReportRejected(f"{url} respondió {resp.status_code}: {reason}")
        if not resp.is_success:
            raise DifusorError(f"{url} respondió {resp.status_code}: {reason}")
        try:
            doc = resp.json()
        except ValueError:
            doc = None
        if not isinstance(doc, dict):
            raise DifusorError(f"{url} no respondió JSON: ¿es la API de sondeos ([monitor] "
                               "listen) del difusor?")
        return doc


def _error_of(resp: httpx.Response) -> str:
    try:
        doc = resp.json()
    except ValueError:
        return resp.text[:200] or resp.reason_phrase
    if isinstance(doc, dict) and doc.get("error"):
        return str(doc["error"])
    return resp.reason_phrase
