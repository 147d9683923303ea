"""The shield inside each web worker: refuse banned and throttled clients before any lookup.

A ``GateWatcher`` stats ``decisions.json`` from the worker's watcher thread every
``POLL_SECONDS`` and, when it changed, builds a ``Gate`` from it (or None when nothing is in
force), so the request path pays one attribute test while the shield is idle. A gate answers:

* banned address, network or address + user agent → 403 (tiny body, ``Retry-After``);
* throttled key → a token bucket per key in this worker at ``rate / workers`` → 429 +
  ``Retry-After``; an IPv4 network throttle gives each of its addresses its own bucket, an IPv6
  /64 one shared bucket; addresses known as shared (CGNAT) skip network throttles;
* allowlisted addresses (``[shield] allow`` and the operator's) always pass.
"""

from __future__ import annotations

import ipaddress
import math
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from difusor.serve.decisions import Decisions, load, ua_tag
from difusor.serve.table import SERVER

POLL_SECONDS = 0.15
BURST_SECONDS = 2.0  # a throttled key may send this many seconds' worth at once
ADDRESS_BURST_SECONDS = 10.0  # per-address limits in a hot network: room for a page load
BANNED = b"Acceso bloqueado temporalmente\n"
THROTTLED = b"Demasiadas peticiones; reintente en unos segundos\n"
BUSY = b"Servicio limitado por un ataque; reintente en unos segundos\n"
_TEXT = ("Content-Type", "text/plain; charset=utf-8")
_NO_STORE = ("Cache-Control", "no-store")
_CACHE_MAX = 100_000

Refusal = tuple[int, list[tuple[str, str]], bytes]


def refusal(status: int, retry_after: float, body: bytes) -> Refusal:
    seconds = str(max(1, min(3600, math.ceil(retry_after))))
    return status, [SERVER, _TEXT, _NO_STORE, ("Retry-After", seconds)], body


class Gate:
    def __init__(self, d: Decisions, config_allow: list[str], workers: int) -> None:
        self.attack = bool(d.attack.get("on"))
        self.workers = max(1, workers)
        self.allow = [_net(n) for n in [*config_allow, *d.allow]]
        self.allow = [n for n in self.allow if n is not None]
        self.bans: dict[str, float] = {}
        self.ban_nets: list[tuple[Any, float]] = []
        for key, e in d.bans.items():
            if "/" in key and " " not in key:
                net = _net(key)
                if net is not None:
                    self.ban_nets.append((net, float(e["until"])))
            else:
                self.bans[key] = float(e["until"])
        self.throttles: dict[str, tuple[float, float, float]] = {}  # key → rate, burst, until
        self.throttle_nets: list[tuple[Any, str, float, float, float, bool]] = []
        for key, e in d.throttles.items():
            rate = max(float(e.get("rate") or 1.0), 0.01) / self.workers
            until = float(e["until"])
            if "/" in key and " " not in key:
                net = _net(key)
                per_address = e.get("per") == "address"
                burst = rate * (ADDRESS_BURST_SECONDS if per_address else BURST_SECONDS)
                if net is not None:
                    self.throttle_nets.append((net, key, rate, max(burst, 1.0), until,
                                               per_address))
            else:
                self.throttles[key] = (rate, max(rate * BURST_SECONDS, 1.0), until)
        self.shared = set(d.shared)
        self.by_agent = any(" ua:" in k for k in (*self.bans, *self.throttles))
        untils = [u for u in self.bans.values()] + [u for _n, u in self.ban_nets] + \
                 [t[2] for t in self.throttles.values()] + [t[4] for t in self.throttle_nets]
        self.expires = max(untils, default=0.0)
        self._buckets: dict[str, list[float]] = {}
        self._where: dict[str, tuple[bool, list[float], list[tuple]]] = {}
        self._tags: dict[str | None, str] = {}

    def idle(self, now: float) -> bool:
        """Nothing left to enforce (every decision lapsed, no attack mode)."""
        return not self.attack and self.expires <= now

    def _locate(self, ip: str) -> tuple[bool, list[float], list[tuple]]:
        where = self._where.get(ip)
        if where is None:
            try:
                addr = ipaddress.ip_address(ip)
            except ValueError:
                addr = None
            allowed = addr is not None and any(addr in n for n in self.allow)
            bans = [u for n, u in self.ban_nets if addr is not None and addr in n]
            nets = [t for t in self.throttle_nets if addr is not None and addr in t[0]]
            if ip in self.shared:
                nets = []
            if len(self._where) > _CACHE_MAX:
                self._where.clear()
            where = self._where[ip] = (allowed, bans, nets)
        return where

    def check(self, client: str, user_agent: str | None) -> Refusal | None:
        """A refusal for this request, or None to serve it."""
        cut = client.rfind(":")
        ip = client[:cut].strip("[]") if cut > 0 else client
        allowed, net_bans, nets = self._locate(ip)
        if allowed:
            return None
        now = time.time()
        until = self.bans.get(ip, 0.0)
        for u in net_bans:
            until = max(until, u)
        if self.by_agent:
            tag = self._tags.get(user_agent)
            if tag is None:
                if len(self._tags) > _CACHE_MAX:
                    self._tags.clear()
                tag = self._tags[user_agent] = ua_tag(user_agent)
            key = ip + " ua:" + tag
            until = max(until, self.bans.get(key, 0.0))
            held = self.throttles.get(key)
            if held is not None and until <= now:
                wait = self._take(key, held[0], held[1], held[2], now)
                if wait:
                    return refusal(429, wait, THROTTLED)
        if until > now:
            return refusal(403, until - now, BANNED)
        held = self.throttles.get(ip)
        if held is not None:
            wait = self._take(ip, held[0], held[1], held[2], now)
            if wait:
                return refusal(429, wait, THROTTLED)
        for _net_obj, key, rate, burst, t_until, per_address in nets:
            wait = self._take(ip + "@" + key if per_address else key, rate, burst, t_until, now)
            if wait:
                return refusal(429, wait, THROTTLED)
        return None

    def _take(self, key: str, rate: float, burst: float, until: float, now: float) -> float:
        """Spend a token from ``key``'s bucket: 0 when allowed, else seconds to wait."""
        if until <= now:
            return 0.0
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) > _CACHE_MAX:
                self._buckets.clear()
            bucket = self._buckets[key] = [burst, now]
        tokens = min(burst, bucket[0] + (now - bucket[1]) * rate)
        bucket[1] = now
        if tokens >= 1.0:
            bucket[0] = tokens - 1.0
            return 0.0
        bucket[0] = tokens
        return (1.0 - tokens) / rate


class GateWatcher:
    """Keeps ``set_gate`` told of the current gate (None while idle); call ``poll`` often."""

    def __init__(self, path: Path, config_allow: list[str], workers: int,
                 set_gate: Callable[[Gate | None], None]) -> None:
        self.path = path
        self.config_allow = list(config_allow)
        self.workers = workers
        self.set_gate = set_gate
        self.gate: Gate | None = None
        self._seen: tuple[int, int, int] | None = None

    def poll(self) -> None:
        try:
            st = os.stat(self.path)
            seen = (st.st_ino, st.st_mtime_ns, st.st_size)
        except FileNotFoundError:
            seen = None
        now = time.time()
        if seen != self._seen:
            self._seen = seen
            gate = Gate(load(self.path), self.config_allow, self.workers) if seen else None
            self._install(gate if gate is not None and not gate.idle(now) else None)
        elif self.gate is not None and self.gate.idle(now):
            self._install(None)

    def _install(self, gate: Gate | None) -> None:
        self.gate = gate
        self.set_gate(gate)


def _net(value: str) -> Any:
    try:
        return ipaddress.ip_network(value, strict=False)
    except ValueError:
        return None
