"""From access records to decisions: signals, graded response, attack mode.

``observe`` is called once per request (the hot loop: a few dict updates); ``evaluate`` several
times a second turns the keys that crossed a threshold into actions:

* **throttle** (429 + Retry-After at the key's limit) on the first offence;
* **ban** (403) when a throttled key keeps sending at twice its limit for ``PERSIST`` seconds,
  or at once on a repeat offence; each ban doubles the last (± 10 % jitter), up to
  ``ban_max_seconds``, and lapses by itself;
* **attack mode** when the total rate is ``attack_factor`` times what the baseline expects now
  (never below ``attack_rate``) *and* most of it comes from sources above the tight per-address
  limit; limits become ``× attack_limit_factor``; it ends after ``attack_quiet`` calm seconds.

Carrier-grade NAT: an address showing ``cgnat_agents`` or more browser user agents that are
human-paced (silent seconds between bursts; a bot dealing its requests over many agents keeps
each busy every second), repeat (people, not a bot changing agent per request), are most of its
agents and send most of its browser requests is *shared*; once that stops being true it is not,
at once, so rotating agents buys a few seconds at most. A shared address's browsers may send up
to ``ip_rate × cgnat_factor`` in all; what is not a browser's (scripts, tools) still gets one
address's ``ip_rate``. It is limited per address + user agent as well; network-wide limits skip
it. The allowlist is checked before anything else.
"""

from __future__ import annotations

import ipaddress
import random
import re
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

from difusor.config import ShieldSettings
from difusor.serve.decisions import ua_tag
from difusor.shield.asn import AsnLookup
from difusor.shield.baseline import Baseline
from difusor.shield.windows import AgentWindow, DistinctWindow, Window, machine_paced, network_of
from difusor.useragent import bot_marker

PERSIST = 3  # seconds a throttled key may ignore its 429s before it is banned
SHARED_MEMORY = 600.0  # seconds an address stays known as shared (CGNAT) after last seen so
STRIKE_MEMORY = 24 * 3600.0  # a ban counts as a previous offence for a day
# An agent busy in ≥ 90 % of its seconds, 4 or more, is machine-paced: a person's page load
# takes a second or two, then they read; even a few people sharing one agent leave gaps.
MACHINE_ACTIVE = 4
MACHINE_SHARE = 0.9
SLOW_MS = 10_000.0
SLOW_COUNT = 10
BEACON = "/_difusor/b"
_BROWSER = re.compile(r"^Mozilla/5\.0 \(")
_STATIC = re.compile(r"\.(json|js|css|png|jpe?g|gif|svg|webp|ico|woff2?|ttf|csv|zip|pdf|map)$")


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


class Detector:
    def __init__(self, settings: ShieldSettings, zone: ZoneInfo, *, asn: AsnLookup | None = None,
                 rng: random.Random | None = None) -> None:
        self.s = settings
        self.w = int(settings.window)
        w = self.w
        self.ip, self.ipua, self.net, self.asn_w = Window(w), Window(w), Window(w), Window(w)
        self.path = Window(w)
        self.notfound, self.busting = DistinctWindow(w), DistinctWindow(w)
        self.methods, self.slow = Window(w), Window(w)
        self.agents = AgentWindow()
        self.baseline = Baseline(zone)
        self.asn = asn
        self.rng = rng or random.Random()
        self.shared: dict[str, float] = {}
        self.bans: dict[str, Entry] = {}
        self.throttles: dict[str, Entry] = {}
        self.strikes: dict[str, tuple[int, float]] = {}
        self.candidates: set[tuple[str, str]] = set()
        self.changed = False  # entries renewed without an action: the file needs rewriting
        self._allow = [ipaddress.ip_network(n, strict=False) for n in settings.allow]
        self._operator_allow: list[Any] = []
        self._any_allow = bool(self._allow)
        self._checked = -1  # the second attack mode was last considered
        self._allowed: dict[str, bool] = {}
        self._browser: dict[str | None, bool] = {}
        self._tags: dict[str | None, str] = {}
        self.observed: dict[str, float] = {}  # ASNs over their limit (evidence) → until
        self._nets: dict[str, str] = {}
        self._sec = -1
        self._count = 0
        self._seconds: list[int] = []  # per-second totals, newest last, at most ``w``
        self.attack = False
        self.attack_by: str | None = None
        self.attack_since: float | None = None
        self._calm_since: float | None = None
        self._hold_until = 0.0
        self.peak = 0  # the busiest second during the current attack
        self.refused = 0  # 403/429/503 answers seen during the current attack
        self._limits()

    # -- configuration --------------------------------------------------------------------

    def _limits(self) -> None:
        f = self.s.attack_limit_factor if self.attack else 1.0
        w = self.w
        self.lim_ip = self.s.ip_rate * f
        self.lim_ipua = self.s.ipua_rate * f
        self.lim_net = self.s.net_rate * f
        self.lim_asn = self.s.asn_rate * f
        self.tight = self.s.ip_rate * self.s.attack_limit_factor
        self._n_ip, self._n_ipua = self.lim_ip * w, self.lim_ipua * w
        self._n_net, self._n_asn = self.lim_net * w, self.lim_asn * w

    def set_operator_allow(self, networks: list[str]) -> None:
        self._operator_allow = [ipaddress.ip_network(n, strict=False) for n in networks]
        self._any_allow = bool(self._allow or self._operator_allow)
        self._allowed.clear()
        for key in [k for k in self.bans if self.allowed(k.split(" ")[0].split("/")[0])]:
            del self.bans[key]
        for key in [k for k in self.throttles if self.allowed(k.split(" ")[0].split("/")[0])]:
            del self.throttles[key]

    def allowed(self, ip: str) -> bool:
        if not self._any_allow:
            return False
        hit = self._allowed.get(ip)
        if hit is None:
            try:
                addr = ipaddress.ip_address(ip)
                hit = any(addr in n for n in self._allow) or any(
                    addr in n for n in self._operator_allow)
            except ValueError:
                hit = False
            if len(self._allowed) > 100_000:
                self._allowed.clear()
            self._allowed[ip] = hit
        return hit

    def is_browser(self, ua: str | None) -> bool:
        hit = self._browser.get(ua)
        if hit is None:
            hit = bool(ua and _BROWSER.match(ua) and not bot_marker(ua))
            if len(self._browser) > 50_000:
                self._browser.clear()
            self._browser[ua] = hit
        return hit

    # -- the hot loop -------------------------------------------------------------------------

    def observe(self, t: float, ip: str, method: str, path: str, query: str, status: int,
                ua: str | None, duration_ms: float = 0.0) -> None:
        sec = int(t)
        if sec > self._sec:
            self._roll(sec)
        self._count += 1
        if self.attack and (status == 403 or status == 429 or status == 503):
            self.refused += 1
        if self.allowed(ip):
            return
        cand = self.candidates
        if self.ip.add(ip) > self._n_ip:
            cand.add(("ip", ip))
        tag = self._tags.get(ua)
        if tag is None:
            if len(self._tags) > 50_000:
                self._tags.clear()
            tag = self._tags[ua] = ua_tag(ua)
        key = ip + " ua:" + tag
        if self.ipua.add(key) > self._n_ipua:
            cand.add(("ipua", key))
        if self.is_browser(ua):
            self.agents.add(ip, tag, sec)
        shared = ip in self.shared
        if not shared:
            net = self._nets.get(ip)
            if net is None:
                if len(self._nets) > 200_000:
                    self._nets.clear()
                net = self._nets[ip] = network_of(ip)
            if self.net.add(net) > self._n_net:
                cand.add(("net", net))
            if self.asn is not None:
                name = self.asn.of(ip, net)
                if name is not None and self.asn_w.add(name) > self._n_asn:
                    cand.add(("asn", name))
        self.path.add(path)
        who = key if shared else ip
        if status == 404 and self.notfound.add(who, path) >= self.s.scan_404:
            cand.add(("scan", who))
        if query and _STATIC.search(path) and self.busting.add(who, query) >= \
                self.s.cachebust_queries:
            cand.add(("cachebust", who))
        if method != "GET" and method != "HEAD" and not (method == "POST" and path == BEACON) \
                and self.methods.add(who) >= self.s.scan_404:
            cand.add(("method", who))
        if duration_ms > SLOW_MS and self.slow.add(who) >= SLOW_COUNT:
            cand.add(("slow", who))

    def _roll(self, sec: int) -> None:
        if self._sec >= 0:
            gap = min(sec - self._sec, self.w)
            done = [self._count] + [0] * (gap - 1)
            for n in done:
                self.baseline.record(n, attack=self.attack)
                if self.attack:
                    self.peak = max(self.peak, n)
            self._seconds = (self._seconds + done)[-self.w:]
        self._sec, self._count = sec, 0
        for win in (self.ip, self.ipua, self.net, self.asn_w, self.path, self.methods, self.slow):
            win.advance(sec)
        self.notfound.advance(sec)
        self.busting.advance(sec)
        self.agents.advance(sec)

    def total_rate(self) -> float:
        return sum(self._seconds) / self.w if self._seconds else 0.0

    # -- deciding -------------------------------------------------------------------------------

    def evaluate(self, now: float) -> list[Action]:
        if int(now) > self._sec:
            self._roll(int(now))
        out: list[Action] = []
        for table, verb in ((self.bans, "unban"), (self.throttles, "unthrottle")):
            for key in [k for k, e in table.items() if e.until <= now]:
                e = table.pop(key)
                out.append(Action(verb, key, e.kind, "vencido", window=self.w))
        self.shared = {ip: until for ip, until in self.shared.items() if until > now}
        self.observed = {k: until for k, until in self.observed.items() if until > now}
        if int(now) != self._checked:  # once a second is plenty, and it walks every address
            self._checked = int(now)
            out += self._attack_mode(now)
        cand, self.candidates = self.candidates, set()
        # Agents first: a bot limited on its own no longer counts against its shared address.
        for signal, key in sorted(cand, key=lambda c: (c[0] != "ipua", c)):
            out += self._signal(signal, key, now)
        out += self._persisting(now)
        return out

    def _signal(self, signal: str, key: str, now: float) -> list[Action]:
        w = self.w
        if signal == "ip":
            return self._address(key, now)
        if signal == "ipua":
            ip = key.split(" ")[0]
            n = self.ipua.get(key)
            if n <= self._n_ipua or self._crowd(ip, now) is None:
                return []  # a single-user address is limited as a whole
            return self._respond(key, "ipua", now, self.lim_ipua,
                                 {"rate": n / w, "limit": self.lim_ipua},
                                 f"{n / w:.0f} pet/s de un navegador en una dirección compartida "
                                 f"(CGNAT) en {w} s; límite {self.lim_ipua:g}")
        if signal == "net":
            n = self.net.get(key)
            if n <= self._n_net:
                return []
            # An IPv6 /64 is one customer: one bucket. An IPv4 /24 holds many: each address
            # of it gets the tight limit instead, so its honest neighbours keep browsing.
            per = "key" if ":" in key else "address"
            rate = self.lim_net if per == "key" else self.tight
            return self._respond(key, "net", now, rate, {"rate": n / w, "limit": self.lim_net},
                                 f"red {key}: {n / w:.0f} pet/s en {w} s; límite "
                                 f"{self.lim_net:g}", per=per, escalate=False)
        if signal == "asn":
            n = self.asn_w.get(key)
            if n <= self._n_asn or self.observed.get(key, 0.0) > now:
                return []
            # Enforced through its addresses and networks; the ASN itself is evidence.
            self.observed[key] = now + self.s.throttle_seconds
            return [Action("observe", key, "asn", f"sistema autónomo «{key}»: {n / w:.0f} pet/s "
                           f"en {w} s; límite {self.lim_asn:g}", {"rate": n / w}, w)]
        kind = "ipua" if " ua:" in key else "ip"
        if kind == "ip" and self._crowd(key, now) is not None:
            return []  # many people: from now on these signals are counted per user agent
        reasons = {"scan": (self.notfound, "rutas inexistentes (404) distintas: escaneo"),
                   "cachebust": (self.busting, "cadenas de consulta distintas en archivos "
                                 "estáticos: intento de saltar la caché"),
                   "method": (self.methods, "peticiones con métodos anómalos"),
                   "slow": (self.slow, f"peticiones lentas (> {SLOW_MS / 1000:.0f} s)")}
        counter, text = reasons[signal]
        n = counter.get(key)
        return self._respond(key, kind, now, self.tight, {"count": n, "signal": signal},
                             f"{n} {text} en {w} s")

    def _address(self, ip: str, now: float) -> list[Action]:
        """One address over ``ip_rate``: limited, unless it is shared and its browsers explain
        the excess. Even then the total is capped, and what is not a browser's (scripts,
        tools) still gets one address's ``ip_rate``."""
        w = self.w
        n = self.ip.get(ip)
        if n <= self._n_ip:
            return []
        people = self._crowd(ip, now)
        if people is None:
            return self._respond(ip, "ip", now, self.lim_ip, {"rate": n / w, "limit": self.lim_ip},
                                 f"{n / w:.0f} pet/s en {w} s; límite {self.lim_ip:g}")
        cap = self.lim_ip * self.s.cgnat_factor
        own = n - people - self._limited_agents(ip)
        if n <= cap * w and own <= self._n_ip:
            return []
        # The throttle lets the people's pace through plus one address's worth.
        rate = min(cap, self.lim_ip + people / w)
        if n > cap * w:
            reason = f"dirección compartida (CGNAT): {n / w:.0f} pet/s en {w} s; tope {cap:g}"
        else:
            reason = (f"dirección compartida (CGNAT): {own / w:.0f} pet/s en {w} s que no son de "
                      f"navegadores; límite {self.lim_ip:g}")
        return self._respond(ip, "ip", now, rate, {"rate": n / w, "people_rate": people / w,
                                                   "limit": rate}, reason)

    def _limited_agents(self, ip: str) -> int:
        """Requests in the window of this address's agents already limited on their own."""
        prefix = ip + " ua:"
        return sum(self.ipua.get(k) for table in (self.throttles, self.bans) for k in table
                   if k.startswith(prefix))

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

    def _crowd(self, ip: str, now: float) -> int | None:
        """The browsers' requests in the window when ``ip`` is a shared address (CGNAT), else
        None. Shared: ``cgnat_agents`` or more human-paced browser agents that are most of its
        agents and send most of its browser requests, each agent repeating (a person fetches
        several things; a bot changing agent per request does not). Remembered for
        SHARED_MEMORY while people come and go, dropped at once when that stops being true.
        A single agent may be misjudged (a popular one shared by dozens of people is busy
        most seconds), so pace decides the whole address, never one agent's budget."""
        agents = self.agents.of(ip)
        if len(agents) >= self.s.cgnat_agents:
            counts = {t: self.ipua.get(ipua_key_tag(ip, t)) for t in agents}
            human = [t for t, pace in agents.items()
                     if not machine_paced(pace, MACHINE_ACTIVE, MACHINE_SHARE)]
            requests = sum(pace[0] for pace in agents.values())
            if len(human) >= self.s.cgnat_agents and 2 * len(human) >= len(agents) \
                    and 2 * sum(counts[t] for t in human) >= sum(counts.values()) \
                    and requests >= 1.5 * len(agents):
                self.shared[ip] = now + SHARED_MEMORY
                return sum(counts.values())
            self.shared.pop(ip, None)
            return None
        if self.shared.get(ip, 0.0) <= now:
            return None
        return sum(self.ipua.get(ipua_key_tag(ip, t)) for t in agents)

    # -- attack mode -------------------------------------------------------------------------

    def _attack_mode(self, now: float) -> list[Action]:
        total = self.total_rate()
        expected = self.baseline.expected(now)
        threshold = max(self.s.attack_rate, self.s.attack_factor * expected)
        rates = {"total": round(total, 1), "expected": round(expected, 1),
                 "threshold": round(threshold, 1), "surge": self.baseline.surging(now)}
        if not self.attack:
            if total <= threshold or now < self._hold_until:
                return []
            share = self._suspicious_share()
            if share < 0.5:
                return []
            rates["suspicious_share"] = round(share, 3)
            self.set_attack(True, "auto", now)
            return [Action("attack_mode_on", "*", "ip", f"{total:.0f} pet/s, {threshold:.0f} "
                           f"esperadas como máximo; {share:.0%} de fuentes sospechosas",
                           rates, self.w)]
        if self.attack_by != "auto" or total > threshold:
            self._calm_since = None
            return []
        self._calm_since = self._calm_since or now
        if now - self._calm_since < self.s.attack_quiet:
            return []
        self.set_attack(False, "auto", now)
        return [Action("attack_mode_off", "*", "ip", f"{self.s.attack_quiet:.0f} s de calma "
                       f"({total:.0f} pet/s)", rates, self.w)]

    def _suspicious_share(self) -> float:
        tight = self.tight * self.w
        bad = total = 0
        for ip, n in self.ip.totals.items():
            total += n
            if ip in self.bans or ip in self.throttles or (n > tight and ip not in self.shared):
                bad += n
        return bad / total if total else 0.0

    def set_attack(self, on: bool, by: str, now: float) -> None:
        if on and not self.attack:
            self.attack_since, self.peak, self.refused = now, 0, 0
        if not on and self.attack and by == "operator":
            self._hold_until = now + self.s.attack_quiet  # the operator said no: respect it
        self.attack, self.attack_by = on, (by if on else None)
        self._calm_since = None
        self._limits()

    # -- operator ---------------------------------------------------------------------------------

    def forget(self, key: str) -> None:
        """An operator lifted a decision: drop it with the key's history and strikes."""
        self.bans.pop(key, None)
        self.throttles.pop(key, None)
        self.strikes.pop(key, None)
        for win in (self.ip, self.ipua, self.net):
            win.forget(key)

    def sources(self, n: int = 10) -> list[dict[str, Any]]:
        return [{"key": k, "requests": c} for k, c in self.ip.top(n)]


def ipua_key_tag(ip: str, tag: str) -> str:
    return f"{ip} ua:{tag}"
