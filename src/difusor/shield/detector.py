"""From access records to decisions: signals, graded response, attack mode.

``observe`` is called once per request (the hot loop: a few dict updates); ``evaluate`` several
times a second turns the keys that crossed a threshold into actions:

* **throttle** (429 + Retry-After at the key's limit) on the first offence, **ban** (403) when
  it persists or offends again (``sanctions``);
* **attack mode** when the total rate is far above what the baseline expects now and most of
  it comes from sources above the tight per-address limit (``attackmode``).

An address shared by many people (carrier-grade NAT) is told apart from one client by its
browsers' pace (``cgnat``) and is then limited per address + user agent as well. The allowlist
is checked before anything else.
"""

from __future__ import annotations

import ipaddress
import random
import re
from typing import Any
from zoneinfo import ZoneInfo

from difusor.config import ShieldSettings
from difusor.serve.decisions import ua_tag
from difusor.shield.asn import AsnLookup
from difusor.shield.attackmode import AttackMode
from difusor.shield.baseline import Baseline
from difusor.shield.cgnat import SharedAddresses
from difusor.shield.sanctions import Action, Entry, Sanctions
from difusor.shield.windows import AgentWindow, DistinctWindow, Window, network_of
from difusor.useragent import bot_marker

SLOW_MS = 10_000.0
SLOW_COUNT = 10
BEACON = "/_difusor/b"
STATUS = "/_difusor/status.json"  # a portal's CORS preflight (OPTIONS) is no scan
_BROWSER = re.compile(r"^Mozilla/5\.0 \(")
_STATIC = re.compile(r"\.(json|js|css|png|jpe?g|gif|svg|webp|ico|woff2?|ttf|csv|zip|pdf|map)$")


class Detector(Sanctions, SharedAddresses, AttackMode):
    """One per shield: ``observe`` every request, ``evaluate`` for the actions it calls for."""

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

    # -- the allowlist, browsers --------------------------------------------------------------

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
                and not (method == "OPTIONS" and path == STATUS) \
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

