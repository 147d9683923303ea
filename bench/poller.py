"""Watches a URL until it serves given bytes: the "it is live" clock of publish_latency.py.

A separate process, so its polling neither holds the publisher's GIL nor waits behind it. It
speaks JSON lines on stdin/stdout:

    → {"url": "http://127.0.0.1:8080/json/main.json", "sha256": "…", "timeout": 60}
    ← {"ready": true}                       after a first poll that still sees the old bytes
    ← {"t_ns": 123…, "polls": 57, "errors": 0}   when the new bytes came back (t_ns null: timeout)

Times are ``time.monotonic_ns()``: CLOCK_MONOTONIC, the same clock in every process of the
machine, so the caller can subtract its own readings. ``http.client`` over one keep-alive
connection costs a fraction of httpx's per-request CPU, which keeps a 2 ms poll cheap.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import sys
import time
from urllib.parse import urlsplit

INTERVAL = 0.002


class Fetcher:
    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self.path = parts.path
        self.conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=2)

    def digest(self) -> str | None:
        """sha256 of a 200 body, or None (error, other status: the caller just polls again)."""
        try:
            self.conn.request("GET", self.path, headers={"Accept-Encoding": "identity"})
            r = self.conn.getresponse()
            body = r.read()
        except (OSError, http.client.HTTPException):
            self.conn.close()  # reopened by the next request
            return None
        return hashlib.sha256(body).hexdigest() if r.status == 200 else None


def watch(fetcher: Fetcher, wanted: str, timeout: float) -> dict[str, object]:
    if fetcher.digest() == wanted:
        return {"ready": False, "error": "the new bytes were already served before the package"}
    _send({"ready": True})
    polls = errors = 0
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        time.sleep(INTERVAL)
        got = fetcher.digest()
        polls += 1
        if got == wanted:
            return {"t_ns": time.monotonic_ns(), "polls": polls, "errors": errors}
        errors += got is None
    return {"t_ns": None, "polls": polls, "errors": errors}


def _send(doc: dict[str, object]) -> None:
    sys.stdout.write(json.dumps(doc) + "\n")
    sys.stdout.flush()


def main() -> None:
    fetchers: dict[str, Fetcher] = {}
    for line in sys.stdin:
        order = json.loads(line)
        fetcher = fetchers.setdefault(order["url"], Fetcher(order["url"]))
        _send(watch(fetcher, order["sha256"], float(order["timeout"])))


if __name__ == "__main__":
    main()
