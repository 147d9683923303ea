"""Proof at the edge: fetch purged URLs through the CDN until it serves the new bytes.

An API that answered 200 proves nothing to a visitor; the edge serving bytes whose sha256 equals
the manifest's does. URLs are fetched as a browser would (plain GET, compressed encodings
accepted and decoded), main.json first, round after round until each is fresh or the time is up.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field

import httpx

from difusor.providers import http_client
from difusor.publish.cdn.plan import quote_path

INTERVAL = 0.05


@dataclass
class EdgeReport:
    edge_url: str
    ok: bool  # every checked URL served the new bytes (or is gone, for a removed file)
    ms: float  # until the last of them was fresh (or the time ran out)
    main_ms: float | None  # until the first URL (main.json) was fresh
    checked: int
    fetches: int
    stale: list[str] = field(default_factory=list)
    last_error: str = ""

    def detail(self) -> dict[str, object]:
        return {"edge_url": self.edge_url, "ms": self.ms, "main_ms": self.main_ms,
                "checked": self.checked, "fetches": self.fetches, "stale": self.stale[:20],
                "error": self.last_error}


def verify_edge(edge_url: str, expected: dict[str, str | None], *, timeout: float,
                interval: float = INTERVAL, client: httpx.Client | None = None) -> EdgeReport:
    """Poll ``edge_url`` + each path until it serves ``expected`` (sha256, or None for 404)."""
    base = edge_url.rstrip("/")
    own = client is None
    http = client or http_client(min(10.0, max(timeout, 1.0)), follow_redirects=False)
    pending = list(expected)
    fresh: dict[str, float] = {}
    fetches = 0
    error = ""
    start = time.monotonic()
    deadline = start + timeout
    try:
        while pending:
            for path in list(pending):
                fetches += 1
                served, error = _fetch(http, base + quote_path(path), error)
                if served == expected[path]:
                    fresh[path] = round((time.monotonic() - start) * 1000, 1)
                    pending.remove(path)
            if not pending or time.monotonic() >= deadline:
                break
            time.sleep(interval)
    finally:
        if own:
            http.close()
    first = next(iter(expected), None)
    elapsed = round((time.monotonic() - start) * 1000, 1)
    return EdgeReport(
        edge_url=base, ok=not pending, ms=max(fresh.values(), default=0.0) if not pending
        else elapsed, main_ms=fresh.get(first) if first else None, checked=len(expected),
        fetches=fetches, stale=pending, last_error=error if pending else "",
    )


def _fetch(http: httpx.Client, url: str, error: str) -> tuple[str | None, str]:
    """(sha256 of the body for a 200, None for a 404/410, "" for anything else), last error."""
    try:
        r = http.get(url)
    except httpx.HTTPError as exc:
        return "", f"{type(exc).__name__}: {exc}"
    if r.status_code == 200:
        return hashlib.sha256(r.content).hexdigest(), error
    if r.status_code in (404, 410):
        return None, error
    return "", f"{url}: HTTP {r.status_code}"
