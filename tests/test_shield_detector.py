"""The shield's detector on synthetic request streams: who gets limited, banned, or left alone."""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterable
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from difusor.config import ShieldSettings
from difusor.shield.detector import Action, Detector
from difusor.shield.drill_plan import browser_agents
from difusor.shield.sanctions import PERSIST
from difusor.shield.windows import RECENT

ZONE = ZoneInfo("America/Mexico_City")
CURL = "curl/8.5.0"
NOON = datetime(2024, 12, 8, 12, 0, tzinfo=ZONE).timestamp()
EIGHT_PM = datetime(2024, 12, 8, 20, 0, tzinfo=ZONE).timestamp()
BROWSERS = [
    f"Mozilla/5.0 (Linux; Android {v}; SM-A{m}) AppleWebKit/537.36 (KHTML, like Gecko) "
    f"Chrome/{c}.0.0.0 Mobile Safari/537.36"
    for v, m, c in [(10, 105, 120), (11, 125, 121), (12, 135, 122), (13, 145, 123), (14, 155, 124),
                    (13, 235, 120), (12, 325, 121), (11, 515, 122), (14, 546, 123), (10, 715, 124)]
] + [
    f"Mozilla/5.0 (iPhone; CPU iPhone OS {v}_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like "
    f"Gecko) Version/{v}.0 Mobile/15E148 Safari/604.1" for v in (15, 16, 17, 18)
]
PAGE = ["/", "/index.html", "/assets/app.js", "/assets/app.css", "/json/main.json",
        "/json/casillas/1000B1.json", "/img/logo.svg", "/favicon.ico"]


def detector(**overrides: object) -> Detector:
    return Detector(ShieldSettings(**overrides), ZONE, rng=random.Random(7))


class Sim:
    """Drives a detector: events (t, ip, method, path, query, status, ua) and an evaluation
    every 0.2 s of simulated time, as the service does; keeps every action."""

    def __init__(self, det: Detector, start: float) -> None:
        self.det = det
        self.now = start
        self.actions: list[tuple[float, Action]] = []

    def run(self, events: Iterable[tuple], until: float) -> None:
        for ev in sorted(events, key=lambda e: e[0]):
            while ev[0] >= self.now + 0.2:
                self.tick()
            t, ip, method, path, query, status, ua = ev
            # what the gate would have answered
            if status == 200 and ip in self.det.bans:
                status = 403
            elif status == 200 and ip in self.det.throttles:
                status = 429
            self.det.observe(t, ip, method, path, query, status, ua)
        while self.now < until:
            self.tick()

    def tick(self) -> None:
        self.now += 0.2
        for a in self.det.evaluate(self.now):
            self.actions.append((self.now, a))

    def of(self, key: str, action: str | None = None) -> list[tuple[float, Action]]:
        return [(t, a) for t, a in self.actions if a.key == key and
                (action is None or a.action == action)]


def flood(ip: str, start: float, seconds: float, rate: float, ua: str = CURL,
          path: str = "/json/main.json", query: str = "") -> list[tuple]:
    n = int(seconds * rate)
    return [(start + i / rate, ip, "GET", path, query, 200, ua) for i in range(n)]


def human(ip: str, ua: str, start: float, seconds: float, rng: random.Random,
          page_every: float = 120.0, poll_every: float = 60.0) -> list[tuple]:
    """One person: a page load now and then (its assets within a second), main.json polled."""
    out = []
    t = start + rng.uniform(0, page_every)
    while t < start + seconds:
        for j, path in enumerate(PAGE):
            out.append((t + j * 0.08, ip, "GET", path, "", 404 if "favicon" in path else 200, ua))
        t += rng.expovariate(1 / page_every)
    t = start + rng.uniform(0, poll_every)
    while t < start + seconds:
        out.append((t, ip, "GET", "/json/main.json", f"t={int(t * 1000)}", 200, ua))
        t += poll_every
    return out


def test_single_address_flood_is_throttled_then_banned() -> None:
    sim = Sim(detector(), NOON)
    sim.run(flood("203.0.113.7", NOON, 20, 300), until=NOON + 21)
    (t_throttle, throttle), = sim.of("203.0.113.7", "throttle")
    assert t_throttle - NOON < 1.5 and throttle.rate == 20.0 and throttle.key_kind == "ip"
    assert "pet/s" in throttle.reason
    bans = sim.of("203.0.113.7", "ban")
    assert len(bans) == 1
    t_ban, ban = bans[0]
    assert 3 <= t_ban - t_throttle <= 5  # it ignored its 429s for PERSIST seconds
    assert ban.rates["strike"] == 1 and 108 <= ban.rates["seconds"] <= 132  # 120 s ± 10 %
    assert abs(ban.expiry - (t_ban + ban.rates["seconds"])) < 0.1
    detail = ban.detail()
    assert {"key", "key_kind", "rates", "window", "action", "expiry", "reason"} <= set(detail)


def test_bans_expire_and_double_on_repeat_with_jitter() -> None:
    det = detector(ban_seconds=10, ban_max_seconds=35)
    sim = Sim(det, NOON)
    durations = []
    start = NOON
    for _round in range(4):
        sim.run(flood("198.51.100.23", start, 6, 100), until=start + 6)
        (_t, ban), = [x for x in sim.of("198.51.100.23", "ban") if x[0] >= start]
        durations.append(ban.rates["seconds"])
        # silence until the ban lapses by itself
        sim.run([], until=ban.expiry + 0.5)
        assert sim.of("198.51.100.23", "unban")[-1][0] >= ban.expiry
        assert "198.51.100.23" not in det.bans
        start = sim.now
    assert 9 <= durations[0] <= 11
    for a, b in itertools.pairwise(durations[:3]):
        assert 2 * 0.9 / 1.1 <= b / a <= 2 * 1.1 / 0.9  # doubled, ± 10 % jitter each
    assert durations[1] != 2 * durations[0]  # the jitter is there
    assert durations[3] == 35  # capped
    # a repeat offender is banned straight away, no throttle first
    assert len(sim.of("198.51.100.23", "throttle")) == 1


def test_the_allowlist_always_wins() -> None:
    det = detector(allow=["200.23.8.0/24"])
    sim = Sim(det, NOON)
    sim.run(flood("200.23.8.10", NOON, 10, 500) + flood("203.0.113.9", NOON, 10, 500),
            until=NOON + 11)
    assert not sim.of("200.23.8.10") and not sim.of("200.23.8.0/24")
    assert sim.of("203.0.113.9", "ban")
    det.set_operator_allow(["203.0.113.9/32"])  # the operator's allow lifts a running ban
    assert "203.0.113.9" not in det.bans


def test_cgnat_pool_of_500_people_is_never_limited_but_a_bot_behind_it_is() -> None:
    rng = random.Random(1)
    cgnat = "187.190.10.1"
    events: list[tuple] = []
    for i in range(500):
        events += human(cgnat, BROWSERS[i % len(BROWSERS)], NOON, 300, rng)
    bot = "python-requests/2.31"
    events += flood(cgnat, NOON + 120, 60, 40, ua=bot)
    det = detector()
    sim = Sim(det, NOON)
    sim.run(events, until=NOON + 300)
    total_rate = len(events) / 300
    assert total_rate > 40  # well over the plain per-address limit of 20 req/s
    assert not sim.of(cgnat), [a for _t, a in sim.of(cgnat)]
    assert cgnat in det.shared
    limited = {a.key for _t, a in sim.actions if a.action in ("throttle", "ban")}
    assert limited and all(k.startswith(cgnat + " ua:") for k in limited)  # only the bot
    assert not det.attack


@pytest.mark.slow
def test_evening_surge_of_new_people_is_not_an_attack() -> None:
    rng = random.Random(2)
    events: list[tuple] = []
    # a quiet evening: 200 regular visitors for ten minutes before 20:00
    start = EIGHT_PM - 600
    for i in range(200):
        events += human(f"10.1.{i // 200}.{i % 200 + 1}", BROWSERS[i % 14], start, 600, rng)
    # 20:00: 4,000 new people arrive within a minute, each loading the page and polling
    for i in range(4000):
        t0 = EIGHT_PM + rng.uniform(0, 60)
        events += human(f"189.{140 + i // 60000}.{(i // 250) % 250}.{i % 250 + 1}",
                        BROWSERS[i % 14], t0, 120, rng, page_every=40)
    det = detector(attack_rate=300)  # low on purpose: the surge is far over it
    sim = Sim(det, start)
    sim.run(events, until=EIGHT_PM + 120)
    peak = max(det.baseline._seconds)  # the busiest second seen
    assert peak > 3 * 300
    assert not any(a.action == "attack_mode_on" for _t, a in sim.actions)
    assert not any(a.action in ("throttle", "ban") for _t, a in sim.actions)


def test_distributed_flood_from_200_addresses_turns_on_attack_mode_then_off() -> None:
    rng = random.Random(3)
    events: list[tuple] = []
    for i in range(100):
        events += human(f"10.2.0.{i + 1}", BROWSERS[i % 14], NOON, 400, rng)
    for i in range(200):
        events += flood(f"45.{10 + i // 100}.{i % 100}.9", NOON + 60, 30, 12, ua=BROWSERS[i % 14])
    det = detector(attack_rate=1000, attack_quiet=30)
    sim = Sim(det, NOON)
    sim.run(events, until=NOON + 200)
    on = [t for t, a in sim.actions if a.action == "attack_mode_on"]
    off = [t for t, a in sim.actions if a.action == "attack_mode_off"]
    assert len(on) == 1 and NOON + 60 < on[0] < NOON + 75
    # under attack the limits tighten: the 12 req/s sources (under the normal 20) are limited
    limited = {a.key for _t, a in sim.actions if a.action in ("throttle", "ban")}
    assert sum(k.startswith("45.") for k in limited) >= 190
    assert not any(k.startswith("10.2.") for k in limited)
    assert len(off) == 1 and off[0] > NOON + 90 + 30  # after the flood and the quiet period
    assert det.peak >= 2000 and not det.attack


def test_a_404_scan_is_limited() -> None:
    det = detector()
    sim = Sim(det, NOON)
    scan = [(NOON + i * 0.2, "192.0.2.66", "GET", f"/wp-admin/{i}.php", "", 404, CURL)
            for i in range(40)]
    sim.run(scan, until=NOON + 9)
    (_t, a), = sim.of("192.0.2.66", "throttle")
    assert a.rates["signal"] == "scan" and "404" in a.reason and a.rate == 5.0


def test_cache_busting_queries_are_limited_but_one_query_repeated_is_not() -> None:
    det = detector()
    sim = Sim(det, NOON)
    bust = [(NOON + i * 0.3, "192.0.2.77", "GET", "/json/main.json", f"r={i}", 200, CURL)
            for i in range(30)]
    same = [(NOON + i * 0.3, "192.0.2.78", "GET", "/json/main.json", "v=1", 200, CURL)
            for i in range(30)]
    sim.run(bust + same, until=NOON + 10)
    (_t, a), = sim.of("192.0.2.77", "throttle")
    assert a.rates["signal"] == "cachebust"
    assert not sim.of("192.0.2.78")


def test_abnormal_methods_are_limited_but_the_beacon_is_not() -> None:
    det = detector()
    sim = Sim(det, NOON)
    odd = [(NOON + i * 0.2, "192.0.2.88", "PROPFIND", "/", "", 405, CURL) for i in range(35)]
    beacon = [(NOON + i * 0.2, "192.0.2.89", "POST", "/_difusor/b", "p=/&v=10", 204,
               BROWSERS[0]) for i in range(35)]
    sim.run(odd + beacon, until=NOON + 9)
    assert sim.of("192.0.2.88", "throttle")[0][1].rates["signal"] == "method"
    assert not sim.of("192.0.2.89")


def test_throttles_lapse_when_the_source_calms_down() -> None:
    det = detector(throttle_seconds=20)
    sim = Sim(det, NOON)
    # 30 req/s for 3 s: throttled, then it obeys (silence) and is never banned
    sim.run(flood("203.0.113.50", NOON, 8, 30), until=NOON + 40)
    assert sim.of("203.0.113.50", "throttle") and sim.of("203.0.113.50", "unthrottle")
    assert not sim.of("203.0.113.50", "ban")


def rotating(ip: str, start: float, seconds: float, rate: float, agents: list[str],
             path: str = "/json/main.json") -> list[tuple]:
    """One address dealing its requests over ``agents`` in turn (evading per-agent limits)."""
    n = int(seconds * rate)
    return [(start + i / rate, ip, "GET", path, "", 200, agents[i % len(agents)])
            for i in range(n)]


def test_one_address_rotating_40_browser_agents_is_no_cgnat_and_is_contained() -> None:
    ip = "198.51.100.40"
    agents = browser_agents(40, random.Random(5))
    det = detector()
    sim = Sim(det, NOON)
    sim.run(rotating(ip, NOON, 20, 150, agents), until=NOON + 21)
    bans = sim.of(ip, "ban")
    # Banned soon enough that a live run (log flush, reload) contains it within 10 s.
    assert bans and bans[0][0] - NOON <= 8, [(t - NOON, a.action, a.rate) for t, a in sim.of(ip)]
    assert ip not in det.shared
    assert not any(a.key.startswith(ip + " ua:") for _t, a in sim.actions)  # the address, whole


def test_a_bot_that_first_looks_like_a_cgnat_is_still_capped_when_it_floods() -> None:
    """Two calm minutes of 40 'people' (shared address earned), then the same 40 agents at
    150 req/s: being remembered as shared does not lift the cap. Their pace is judged on their
    last RECENT seconds, so this takes longer than a fresh rotation, but not much."""
    rng = random.Random(6)
    ip = "198.51.100.41"
    agents = browser_agents(40, random.Random(7))
    events: list[tuple] = []
    for ua in agents:
        events += human(ip, ua, NOON, 120, rng, page_every=30)
    flood_at = NOON + 120
    events += rotating(ip, flood_at, 20, 150, agents)
    det = detector()
    sim = Sim(det, NOON)
    sim.run(events, until=flood_at + 21)
    assert not [a for t, a in sim.of(ip) if t < flood_at]  # calm: left alone
    bans = [t for t, _a in sim.of(ip, "ban")]
    assert bans and bans[0] - flood_at <= RECENT + PERSIST + 2


@pytest.mark.slow
def test_cgnat_pool_of_500_users_each_its_own_browser_is_never_limited() -> None:
    """The drill's pool: one address, 500 distinct browsers, a page load now and then and
    main.json once a minute each."""
    rng = random.Random(8)
    ip = "187.190.10.2"
    events: list[tuple] = []
    for ua in browser_agents(500, random.Random(9)):
        events += human(ip, ua, NOON, 300, rng, page_every=150)
    det = detector()
    sim = Sim(det, NOON)
    sim.run(events, until=NOON + 300)
    assert len(events) / 300 > 20  # over the plain per-address limit
    assert not sim.actions, [(t - NOON, a.action, a.key) for t, a in sim.actions][:5]
    assert ip in det.shared
