"""Fetching a corte's files as a visitor gets them, and the SHA-256 of what came back.

A whole national corte is 20,000 small requests: per-request overhead is the cost. Measured on
20,012 files over loopback (bench/verify.py), against ``wget -r`` of the same files: httpx's
client 2.5× (1.1–1.4 ms of Python per file), urllib3's pool 2.0×; the standard library's
``http.client`` on two persistent connections does them at the pace of the plain download.
So: ``http.client`` per thread, the body decoded as a browser would (br, gzip, deflate); any
answer it does not take as is (a redirect, an error, an encoding it does not know) goes through
httpx, which also serves a proxy from the environment and a caller's own client (the monitor's,
with its CA and Host).
"""

from __future__ import annotations

import gzip
import hashlib
import http.client
import ssl
import threading
import urllib.request
import zlib
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any
from urllib.parse import quote, urlsplit

import brotli
import certifi
import httpx

POOL = 2  # persistent connections; more only adds Python thread switching on 2 cores
HEADERS = {"User-Agent": "difusor-verify", "Accept-Encoding": "gzip, deflate, br"}

Served = tuple[str, str, str] | None  # (path, expected, what was served) when they differ


def _compare(path: str, want: str, status: int | None, body: bytes, error: str) -> Served:
    if status is None:
        return path, want, f"sin respuesta ({error})"
    if status != 200:
        return path, want, f"HTTP {status}"
    got = hashlib.sha256(body).hexdigest()
    return None if got == want else (path, want, got)


@contextmanager
def fetcher(base: str, client: httpx.Client, own: bool, timeout: float
            ) -> Iterator[Callable[[list[Any]], Served]]:
    """A function (path, sha256, …) → mismatch or None, for threads: over kept-alive
    ``http.client`` connections when ``own`` and no proxy applies, else over ``http``."""
    if not own or urllib.request.getproxies():
        yield lambda f: _with_httpx(client, base, f)
        return
    parts = urlsplit(base)
    local = threading.local()
    opened: list[http.client.HTTPConnection] = []

    def connection() -> http.client.HTTPConnection:
        conn = getattr(local, "conn", None)
        if conn is None:
            if parts.scheme == "https":
                context = ssl.create_default_context(cafile=certifi.where())
                conn = http.client.HTTPSConnection(parts.netloc, timeout=timeout,
                                                   context=context)
            else:
                conn = http.client.HTTPConnection(parts.netloc, timeout=timeout)
            local.conn = conn
            opened.append(conn)
        return conn

    def one(f: list[Any]) -> Served:
        path, want = str(f[0]), str(f[1])
        target = f"{parts.path.rstrip('/')}/{quote(path)}"
        for attempt in (1, 2):  # a kept-alive connection the server closed: once more, fresh
            conn = connection()
            try:
                conn.request("GET", target, headers=HEADERS)
                r = conn.getresponse()
                body = r.read()
                break
            except (OSError, http.client.HTTPException):
                conn.close()
                local.conn = None
                if attempt == 2:
                    return _with_httpx(client, base, f)
        decode = _DECODERS.get((r.getheader("Content-Encoding") or "").strip().lower())
        if r.status != 200 or decode is None:
            return _with_httpx(client, base, f)
        try:
            return _compare(path, want, 200, decode(body), "")
        except (OSError, ValueError, zlib.error, brotli.error):
            return _with_httpx(client, base, f)

    try:
        yield one
    finally:
        for conn in opened:
            conn.close()


_DECODERS: dict[str, Callable[[bytes], bytes]] = {
    "": lambda b: b, "identity": lambda b: b, "br": brotli.decompress, "gzip": gzip.decompress,
    "deflate": zlib.decompress}


def _with_httpx(client: httpx.Client, base: str, f: list[Any]) -> Served:
    path, want = str(f[0]), str(f[1])
    try:
        r = client.get(f"{base}/{quote(path)}")
    except httpx.HTTPError as exc:
        return _compare(path, want, None, b"", type(exc).__name__)
    return _compare(path, want, r.status_code, r.content, "")


def fetch_all(base: str, client: httpx.Client, own: bool, timeout: float,
              files: list[list[Any]]) -> list[tuple[str, str, str]]:
    """Every file's mismatch (path, expected, served), in ``files``' order."""
    with fetcher(base, client, own, timeout) as one, ThreadPoolExecutor(POOL) as threads:
        return [m for m in threads.map(one, files) if m is not None]
