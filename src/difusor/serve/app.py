"""The embedded server's request handler (RSGI, run by granian's workers).

The hot path is a dictionary lookup in the live table plus a few header reads: no file system
access per request, query strings ignored for lookup, no path ever joined onto a folder, so
``..`` and friends can only miss. Dynamic answers live under the reserved ``/_difusor/``.

The shield's gate (``difusor.serve.gate``) is consulted first, and only while a decision is in
force: idle, it costs one attribute test. Refused requests are logged like any other, so the
shield and the incident see them. In attack mode misses get a plain 404 (no normalisation, no
redirect) and files not held in memory a 503, so a flood cannot reach the disk.
"""

from __future__ import annotations

import asyncio
import re
import secrets
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from difusor import config as config_mod
from difusor.headers import BEACON, BEACON_SCRIPT, REVALIDATE, HeaderPolicy
from difusor.paths import StateLayout
from difusor.serve.accesslog import AccessLog
from difusor.serve.decisions import decisions_path
from difusor.serve.gate import BUSY, Gate, GateWatcher, refusal
from difusor.serve.lifeline import watch_parent
from difusor.serve.live import LiveRelease
from difusor.serve.negotiation import accepted_encodings, byte_range, etag_matches
from difusor.serve.table import SERVER, Representation, Resource, Table, TableBuilder
from difusor.store.layout import StoreLayout
from difusor.store.objects import ObjectStore

_ALLOW = [SERVER, ("Allow", "GET, HEAD"), ("Content-Type", "text/plain; charset=utf-8")]
_NOT_FOUND = (
    b"<!doctype html><meta charset=utf-8><title>404</title>"
    b"<h1>No encontrado</h1><p>Esta ruta no existe en el corte publicado.</p>\n"
)
_NOT_FOUND_HEADERS = [SERVER, ("Content-Type", "text/html; charset=utf-8"), *REVALIDATE]
_BEACON_HEADERS = [SERVER, *BEACON]
_BEACON_JS = (Path(__file__).with_name("beacon.js")).read_bytes()
_BEACON_JS_HEADERS = [SERVER, ("Content-Type", "text/javascript; charset=utf-8"), *BEACON_SCRIPT]
# The portal's corte widget (docs/portal.md), sent with the contract's no-cache rule.
_CORTE_JS = (Path(__file__).with_name("corte.js")).read_bytes()
_STATUS = "/_difusor/status.json"
# «difusor check» proves the CDN purges with a path here: cacheable on purpose (deploy/varnish).
CDN_PROBE = "/_difusor/sonda-cdn/"
_CDN_PROBE_NAME = re.compile(r"[0-9a-f]{16}\.txt")
# The public chain of cortes (integrity/published.py writes these files; nginx serves the same).
_CHAIN_FILES = re.compile(r"/_difusor/(cortes\.json|cortes/[0-9]{1,9}\.json|"
                          r"manifest/[A-Za-z0-9][A-Za-z0-9._-]{0,120}\.json)")
_CDN_PROBE_HEADERS = [SERVER, ("Cache-Control", "public, max-age=300"),
                      ("Content-Type", "text/plain; charset=utf-8")]
_PREFLIGHT_MAX_AGE = "7200"  # Chromium's ceiling: a browser asks again at most every 2 h
_SAFE_QUERY = re.compile(r"[!#-~]{1,1024}")  # what may be echoed in a Location header
# A beacon report: the page (p) and its visible milliseconds (v), at most 12 h (a screen left on
# all night); analytics/sessions.py MAX_VISIBLE_MS is the same. Per address and worker, a
# budget of BEACON_RATE reports/s with bursts of BEACON_BURST: one person reports when a page is
# hidden, and a CGNAT address holds hundreds of people.
BEACON_MAX_MS = 12 * 3600 * 1000
BEACON_RATE = 5.0
BEACON_BURST = 30
_BEACON_PAGE = re.compile(r"(?:^|&)p=[^&]")
_BEACON_TIME = re.compile(r"(?:^|&)v=([0-9]{1,12})(?:&|$)")
_BEACON_LATER = [*_BEACON_HEADERS, ("Retry-After", "1")]
_perf = time.perf_counter


class DifusorApp:
    def __init__(self, live: LiveRelease, policy: HeaderPolicy, log: AccessLog | None,
                 shield: GateWatcher | None = None, portal_origins: Iterable[str] = (),
                 cdn_probes: Path | None = None, integrity: Path | None = None) -> None:
        self.live = live
        self.cdn_probes = cdn_probes
        self.integrity = integrity
        self.log = log
        self.gate: Gate | None = None  # set by the shield's watcher; None while idle
        self.shield = shield
        if shield is not None:
            shield.set_gate = self._set_gate
            shield.poll()
        self.worker = secrets.token_hex(3)  # tells workers apart in /_difusor/health
        dynamic = [SERVER, *policy.main_headers()]
        self._json_headers = [*dynamic, ("Content-Type", "application/json")]
        self._text_headers = [*dynamic, ("Content-Type", "text/plain; charset=utf-8")]
        self._corte_js_headers = [*dynamic, ("Content-Type", "text/javascript; charset=utf-8")]
        # CORS on status.json for the portal's widget: its answer depends on Origin only when
        # some origin is allowed. Headers made here, one set per origin, none per request.
        allowed = sorted({self._origin(o) for o in portal_origins})
        self._status_headers = ([*self._json_headers, ("Vary", "Origin")] if allowed
                                else self._json_headers)
        self._cors = {o: [*self._status_headers, ("Access-Control-Allow-Origin", o)]
                      for o in allowed}
        self._preflight_allowed = {
            o: [SERVER, ("Access-Control-Allow-Origin", o), ("Access-Control-Allow-Methods", "GET"),
                ("Access-Control-Max-Age", _PREFLIGHT_MAX_AGE), ("Vary", "Origin"), *dynamic[1:]]
            for o in allowed}
        self._options = [SERVER, ("Allow", "GET, HEAD, OPTIONS"), *dynamic[1:]]
        self._loop: asyncio.AbstractEventLoop | None = None
        self._beacons: dict[str, list[float]] = {}  # address → [tokens, when] (this worker's)

    # -- lifecycle (granian calls these in each worker) --------------------------------

    def __rsgi_init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self.live.start(tick=self._tick_threadsafe if self.log else None,
                        watch=self.shield.poll if self.shield else None)

    def __rsgi_del__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.live.stop()
        if self.log:
            self.log.close()

    @staticmethod
    def _origin(origin: str) -> str:
        """An origin as browsers send it in ``Origin``: scheme and host in lower case, no
        default port (``https://WWW.Medio.mx:443`` → ``https://www.medio.mx``)."""
        origin = origin.strip().rstrip("/").lower()
        for scheme, port in (("https://", ":443"), ("http://", ":80")):
            if origin.startswith(scheme) and origin.endswith(port):
                return origin[: -len(port)]
        return origin

    def _set_gate(self, gate: Gate | None) -> None:
        self.gate = gate  # one reference swap: a request sees the old gate or the new one

    def _tick_threadsafe(self) -> None:
        if self._loop is not None and self.log is not None:
            self._loop.call_soon_threadsafe(self.log.tick)

    # -- requests ----------------------------------------------------------------------

    async def __rsgi__(self, scope: Any, proto: Any) -> None:
        start = _perf()  # websockets are off: every call is an HTTP request
        live = self.live
        if live.stale():  # another corte went live: switch before answering
            live.refresh()
        table = live.table
        method = scope.method
        path = scope.path
        headers = scope.headers
        gate = self.gate
        refused = gate.check(scope.client, headers.get("user-agent")) if gate is not None else None
        if refused is not None:
            status, out, body = refused
            proto.response_bytes(status, out, body)
            sent = len(body)
        elif method == "GET" or method == "HEAD":
            res = table.resources.get(path)
            if res is not None:
                if gate is not None and gate.attack and res.identity.body is None:
                    status, out, body = refusal(503, 30, BUSY)  # attack mode: memory only
                    proto.response_bytes(status, out, body)
                    sent = len(body)
                else:
                    status, sent = self._file(table, res, headers, proto)
            elif gate is not None and gate.attack and not path.startswith("/_difusor/"):
                proto.response_bytes(404, _NOT_FOUND_HEADERS, _NOT_FOUND)
                status, sent = 404, len(_NOT_FOUND)
            else:
                status, sent = self._miss(table, path, scope.query_string, headers, proto)
        elif method == "OPTIONS" and path == _STATUS:  # a portal's CORS preflight
            proto.response_empty(204, self._preflight_allowed.get(headers.get("origin"),
                                                                  self._options))
            status, sent = 204, 0
        elif method == "POST" and path == "/_difusor/b":
            # The beacon: nothing to read, nothing to store here (the access log has p and v).
            status, sent = self._beacon(scope.client, scope.query_string), 0
            proto.response_empty(status, _BEACON_HEADERS if status != 429 else _BEACON_LATER)
        else:
            proto.response_bytes(405, _ALLOW, b"Metodo no permitido\n")
            status, sent = 405, 20
        if method == "HEAD":
            sent = 0
        log = self.log
        if log is not None:
            log.record(
                scope.client, method, path, scope.query_string, status, sent,
                headers.get("referer"), headers.get("user-agent"), _perf() - start,
                table.corte_header[1],
            )

    def _beacon(self, client: str, query: str) -> int:
        """204 for a plausible report; 400 for an implausible one (no page, a time that is not
        1..BEACON_MAX_MS); 429 past this address's budget. The analytics count only 204s."""
        if not _BEACON_PAGE.search(query):
            return 400
        v = _BEACON_TIME.search(query)
        if v is None or not 0 < int(v.group(1)) <= BEACON_MAX_MS:
            return 400
        cut = client.rfind(":")
        ip = client[:cut].strip("[]") if cut > 0 else client
        now = time.monotonic()
        bucket = self._beacons.get(ip)
        if bucket is None:
            if len(self._beacons) > 100_000:
                self._beacons.clear()
            bucket = self._beacons[ip] = [BEACON_BURST, now]
        bucket[0] = min(BEACON_BURST, bucket[0] + (now - bucket[1]) * BEACON_RATE)
        bucket[1] = now
        if bucket[0] < 1:
            return 429
        bucket[0] -= 1
        return 204

    def _file(self, table: Table, res: Resource, headers: Any, proto: Any) -> tuple[int, int]:
        rep = res.identity
        rng = headers.get("range")
        if res.encoded and rng is None:
            accept = headers.get("accept-encoding")
            if accept:
                for enc in accepted_encodings(accept):
                    candidate = res.encoded.get(enc)
                    if candidate is not None:
                        rep = candidate
                        break
        inm = headers.get("if-none-match")
        if inm is not None and etag_matches(inm, rep.etag):
            proto.response_empty(304, [*rep.not_modified, table.corte_header])
            return 304, 0
        if rng is not None:
            return self._range(table, res.identity, rng, headers.get("if-range"), proto)
        return self._whole(table, rep, proto)

    @staticmethod
    def _whole(table: Table, rep: Representation, proto: Any) -> tuple[int, int]:
        if rep.body is not None:
            proto.response_bytes(200, [*rep.headers, table.corte_header], rep.body)
        else:  # granian would stream a file chunked; the length is known, so say it
            proto.response_file(
                200, [*rep.headers, ("Content-Length", str(rep.size)), table.corte_header], rep.file
            )
        return 200, rep.size

    def _range(
        self, table: Table, rep: Representation, rng: str, if_range: str | None, proto: Any
    ) -> tuple[int, int]:
        span = byte_range(rng, rep.size)
        if if_range is not None and if_range.strip() != rep.etag:
            span = None  # the client's copy is outdated: send the whole file
        if span is False:
            proto.response_empty(
                416, [SERVER, ("Content-Range", f"bytes */{rep.size}"), table.corte_header]
            )
            return 416, 0
        if span is None:
            return self._whole(table, rep, proto)
        first, last = span
        out = [*rep.headers, ("Content-Range", f"bytes {first}-{last}/{rep.size}"),
               table.corte_header]
        if rep.body is not None:
            proto.response_bytes(206, out, rep.body[first:last + 1])
        else:
            out.append(("Content-Length", str(last + 1 - first)))
            proto.response_file_range(206, out, rep.file, first, last + 1)
        return 206, last + 1 - first

    def _miss(self, table: Table, path: str, query: str, headers: Any, proto: Any
              ) -> tuple[int, int]:
        if path.startswith("/_difusor/"):
            return self._internal(table, path, headers, proto)
        if "//" in path:
            # Never served under a second name (a CDN would cache it apart): sent, in one hop,
            # to the canonical path, or to the folder's slash form.
            while "//" in path:
                path = path.replace("//", "/")
            target = path if path in table.resources else table.redirects.get(path)
            if target is not None:
                if query and _SAFE_QUERY.fullmatch(query):
                    target += "?" + query
                proto.response_empty(301, [SERVER, ("Location", target), table.corte_header])
                return 301, 0
        target = table.redirects.get(path)
        if target is not None:
            proto.response_empty(301, [SERVER, ("Location", target), table.corte_header])
            return 301, 0
        proto.response_bytes(404, _NOT_FOUND_HEADERS, _NOT_FOUND)
        return 404, len(_NOT_FOUND)

    def _internal(self, table: Table, path: str, headers: Any, proto: Any) -> tuple[int, int]:
        if path == _STATUS:
            out = self._status_headers
            if self._cors:  # the portal's widget reads it (docs/portal.md)
                out = self._cors.get(headers.get("origin"), out)
            proto.response_bytes(200, out, table.status_body)
            return 200, len(table.status_body)
        if path == "/_difusor/health":
            if table.release_id is None:
                body = b"sin corte publicado\n"
                proto.response_bytes(503, self._text_headers, body)
                return 503, len(body)
            if self.live.problem is not None:  # still serving from memory, but say so
                body = f"degradado {table.release_id} w{self.worker}: {self.live.problem}\n".encode()
                proto.response_bytes(503, self._text_headers, body)
                return 503, len(body)
            body = f"ok {table.release_id} w{self.worker}\n".encode()
            proto.response_bytes(200, self._text_headers, body)
            return 200, len(body)
        if path == "/_difusor/beacon.js":
            proto.response_bytes(200, _BEACON_JS_HEADERS, _BEACON_JS)
            return 200, len(_BEACON_JS)
        if path == "/_difusor/corte.js":
            proto.response_bytes(200, self._corte_js_headers, _CORTE_JS)
            return 200, len(_CORTE_JS)
        chain = _CHAIN_FILES.fullmatch(path) if self.integrity is not None else None
        if chain is not None and self.integrity is not None:
            try:  # small files, rarely asked for: read each time, never stale
                body = (self.integrity / chain.group(1)).read_bytes()
            except OSError:
                body = None
            if body is not None:
                proto.response_bytes(200, self._json_headers, body)
                return 200, len(body)
        name = path[len(CDN_PROBE):]
        if self.cdn_probes is not None and path.startswith(CDN_PROBE) and \
                _CDN_PROBE_NAME.fullmatch(name):
            try:  # read per request: it exists only while «difusor check» runs
                body = (self.cdn_probes / name).read_bytes()
            except OSError:
                body = None
            if body is not None:
                proto.response_bytes(200, _CDN_PROBE_HEADERS, body)
                return 200, len(body)
        proto.response_bytes(404, _NOT_FOUND_HEADERS, _NOT_FOUND)
        return 404, len(_NOT_FOUND)


def build_app(cfg: config_mod.Config) -> Any:
    """The worker's RSGI app: one ``DifusorApp``, or with ``[sites]`` one per site behind a
    ``HostRouter`` (serve/hosts.py)."""
    if cfg.sites:
        from difusor.serve.hosts import HostRouter
        from difusor.sites.catalog import default_site, host_map, site_configs

        apps = {name: _site_app(site) for name, site in site_configs(cfg).items()}
        return HostRouter(apps, host_map(cfg), default_site(cfg))
    return _site_app(cfg)


def _site_app(cfg: config_mod.Config) -> DifusorApp:
    state = StateLayout(cfg.state_dir)
    state.create()
    layout = StoreLayout(state.store)
    layout.create()
    policy = HeaderPolicy.from_config(cfg)
    builder = TableBuilder(ObjectStore(layout.objects, packs=layout.packs), policy,
                           cfg.web.memory_max_file, cfg.store.compress_min_bytes,
                           ZoneInfo(cfg.site.timezone))
    live = LiveRelease(layout, builder)
    log = (AccessLog(state.access_log, cfg.web.access_log_max_mb * 1024 * 1024)
           if cfg.web.access_log else None)
    shield = GateWatcher(decisions_path(cfg.state_dir), cfg.shield.allow, cfg.web.workers,
                         lambda _g: None)
    return DifusorApp(live, policy, log, shield, portal_origins=cfg.site.portal_origins,
                      cdn_probes=state.cdn_probes, integrity=state.integrity)


def load_app(config_path: str, _target: str = "") -> Any:
    """Granian's loader: each worker builds its own app from the config file."""
    watch_parent()  # a worker never outlives its server process (SIGKILL included)
    return build_app(config_mod.load(Path(config_path)))
