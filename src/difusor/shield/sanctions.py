"""Throttles and bans: the graded response to a key over its limit.

A key is throttled (429 + Retry-After at its limit) on its first offence; it is banned (403)
when it keeps sending at twice its limit for ``PERSIST`` seconds, or at once on a repeat offence
within ``STRIKE_MEMORY``. Each ban doubles the last (± 10 % jitter), up to ``ban_max_seconds``.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

from difusor.config import ShieldSettings
from difusor.shield.windows import Window

PERSIST = 3  # seconds a throttled key may ignore its 429s before it is banned
STRIKE_MEMORY = 24 * 3600.0  # a ban counts as a previous offence for a day


@dataclass
class Action:
    action: str  # throttle | ban | unban | unthrottle | attack_mode_on | attack_mode_off | observe
    key: str
    key_kind: str  # ip | ipua | net | asn | path
    reason: str
    rates: dict[str, Any] = field(default_factory=dict)
    window: float = 0.0
    expiry: float | None = None
    rate: float | None = None  # a throttle's requests/s

    def detail(self) -> dict[str, Any]:
        return {"key": self.key, "key_kind": self.key_kind, "rates": self.rates,
                "window": self.window, "action": self.action, "expiry": self.expiry,
                "reason": self.reason, "rate": self.rate}


@dataclass
class Entry:
    kind: str
    reason: str
    since: float
    until: float
    rate: float = 0.0
    per: str = "key"  # a throttle shared by the key, or "address": each address of a network


class Sanctions:
    """The throttling and banning part of the ``Detector`` (a mixin: same state, one object,
    so the hot loop reads plain attributes)."""

    s: ShieldSettings
    w: int
    rng: random.Random
    ip: Window
    ipua: Window
    bans: dict[str, Entry]
    throttles: dict[str, Entry]
    strikes: dict[str, tuple[int, float]]
    changed: bool

    def _respond(self, key: str, kind: str, now: float, rate: float, rates: dict[str, Any],
                 reason: str, *, per: str = "key", escalate: bool = True) -> list[Action]:
        if key in self.bans:
            return []
        held = self.throttles.get(key)
        if held is not None:
            if rate < 0.9 * held.rate:  # its tolerance shrank (a CGNAT that was not one)
                held.rate, held.reason, held.since = rate, reason, now
                held.until = now + self.s.throttle_seconds
                self.changed = True
                return [Action("throttle", key, kind, reason, rates, self.w, held.until, rate)]
            if rate > 1.1 * held.rate:  # more people behind it now: let their pace through
                held.rate = rate
                self.changed = True
            if now + self.s.throttle_seconds - held.until > self.s.throttle_seconds / 4:
                held.until = now + self.s.throttle_seconds
                self.changed = True  # still over its limit: the throttle is renewed
            return []
        strikes = self.strikes.get(key)
        if escalate and strikes is not None and now - strikes[1] < STRIKE_MEMORY:
            return [self._ban(key, kind, now, rates, f"reincidencia: {reason}")]
        until = now + self.s.throttle_seconds
        self.throttles[key] = Entry(kind, reason, now, until, rate, per)
        return [Action("throttle", key, kind, reason, rates, self.w, until, rate)]

    def _ban(self, key: str, kind: str, now: float, rates: dict[str, Any], reason: str) -> Action:
        n = self.strikes.get(key, (0, 0.0))[0] + 1
        seconds = self.s.ban_seconds * 2 ** (n - 1) * self.rng.uniform(0.9, 1.1)
        seconds = min(seconds, self.s.ban_max_seconds)
        until = now + seconds
        self.strikes[key] = (n, now)
        self.throttles.pop(key, None)
        self.bans[key] = Entry(kind, reason, now, until)
        return Action("ban", key, kind, reason, {**rates, "strike": n, "seconds": round(seconds, 1)},
                      self.w, until)

    def _persisting(self, now: float) -> list[Action]:
        out = []
        for key, e in list(self.throttles.items()):
            if e.per != "key" or e.kind not in ("ip", "ipua") or now - e.since < PERSIST:
                continue
            window = self.ip if e.kind == "ip" else self.ipua
            recent = window.recent(key, PERSIST) / PERSIST
            if recent > 2 * e.rate:
                out.append(self._ban(key, e.kind, now, {"rate": recent, "limit": e.rate},
                                     f"siguió a {recent:.0f} pet/s pese al límite de "
                                     f"{e.rate:g} pet/s ({e.reason})"))
        return out
