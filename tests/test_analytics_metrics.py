"""The summary equals the truth of generated traffic (tests/visitlog.py), exactly.

First on rows written straight into the ``hits`` table (the metrics alone), then end to end
through the ingest (combined and difusor-JSON logs, re-ingest, rotation) and the CLI.
"""

from __future__ import annotations

import csv
import json
import re
import subprocess
import sys
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path

import duckdb
import pytest
import visitlog
from conftest import make_site
from rich.console import Console

from difusor.analytics import views
from difusor.analytics.geo import state_name
from difusor.analytics.ingest import ingest_files
from difusor.analytics.metrics import compute, summary
from difusor.analytics.schema import HITS_VIEW, STORE_DDL
from difusor.cli.analytics_tables import print_summary
from difusor.config import Config

ZONE = visitlog.ZONE
KEYS = {"hits", "bot_hits", "visits", "unique_visitors", "pageviews", "avg_visit_seconds",
        "median_visit_seconds", "top_pages", "top_views", "geo", "browsers", "devices",
        "referrers", "series", "bytes", "from", "to", "days", "beacon", "sources"}


@pytest.fixture(scope="module")
def traffic() -> visitlog.Traffic:
    t = visitlog.generate()
    assert visitlog.visit_count_agrees(t)  # the plan and the definition agree
    return t


def load(con: duckdb.DuckDBPyConnection, rows: list[tuple], folder: Path) -> None:
    # A flat table shaped like the ``hits`` view, so that known rows can be written directly.
    con.execute(STORE_DDL)
    con.execute(HITS_VIEW.replace("VIEW hits AS", "VIEW hits_shape AS"))
    con.execute("CREATE TABLE IF NOT EXISTS hits AS SELECT * FROM hits_shape LIMIT 0")
    (first,) = con.execute("SELECT count(*) FROM hits").fetchone()
    path = folder / f"rows-{len(list(folder.iterdir()))}.csv"
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        for seq, row in enumerate(rows, start=first):  # seq: the rows' order, as an ingest's
            writer.writerow(["\\N" if x is None else x for x in row] + [seq])
    con.execute(f"COPY hits FROM '{path}' (FORMAT csv, HEADER false, NULLSTR '\\N')")


@pytest.fixture
def con(traffic: visitlog.Traffic, tmp_path: Path) -> duckdb.DuckDBPyConnection:
    c = duckdb.connect()
    load(c, visitlog.hit_rows(traffic), tmp_path)
    yield c
    c.close()


def assert_matches(data: dict, truth: visitlog.Truth, state_name=lambda s: s) -> None:
    got = {k: data[k] for k in ("hits", "bot_hits", "bytes", "visits", "pageviews", "views",
                                "avg_visit_seconds", "median_visit_seconds")}
    assert got == {k: getattr(truth, k) for k in got}
    assert data["unique_visitors"] == truth.visitors
    assert {d["day"]: d["visitors"] for d in data["days"]} == truth.days
    assert {v["view"]: v["views"] for v in data["top_views"]} == truth.top_views
    assert {p["path"]: p["pageviews"] for p in data["top_pages"]} == truth.top_pages
    assert {s["state"]: s["visitors"] for s in data["geo"]["state"]} == {
        state_name(k): n for k, n in truth.states.items()}
    assert {c["country"]: c["visitors"] for c in data["geo"]["country"]
            if c["country"]} == truth.countries
    points = data["series"]["points"]
    assert sum(p["hits"] for p in points) == truth.hits
    assert sum(p["pageviews"] for p in points) == truth.pageviews


def test_summary_equals_truth(con: duckdb.DuckDBPyConnection, traffic: visitlog.Traffic) -> None:
    data = compute(con, ZONE, None, None)
    truth = traffic.truth()
    assert_matches(data, truth)
    assert {r["host"]: r["visits"] for r in data["referrers"]} == truth.referrers
    assert data["basis"] == "origen" and data["bot_hits"] == 253
    # Sessions through midnight are two visits on two days: both days have visitors.
    assert list(truth.days) == ["2024-12-08", "2024-12-09"]
    # Per bucket too: the night spans > 6 h, so 10-minute buckets, in local time.
    assert data["series"]["granularity"] == "10 minutos"
    per_bucket = Counter()
    for r in traffic.requests:
        if not r.bot:
            local = r.ts.astimezone(ZONE)
            per_bucket[local.replace(minute=local.minute // 10 * 10, second=0).isoformat()] += 1
    assert {p["t"]: p["hits"] for p in data["series"]["points"] if p["hits"]} == per_bucket
    assert data["series"]["points"][0]["t"].endswith("-06:00")
    assert set(data) >= KEYS
    json.dumps(data)  # JSON-ready as it is


def test_the_full_summary_cut_to_the_top_is_the_summary(con: duckdb.DuckDBPyConnection,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """The memoria computes the summary once with every row (annexes) and cuts it for the
    document: the cut must be exactly what ``analytics summary --json`` prints."""
    from difusor.analytics import metrics
    from difusor.analytics.metrics import top_only

    # Lists of two rows, so this traffic's lists (ties included) really are cut.
    monkeypatch.setattr(metrics, "LIMITS", tuple((p, 2) for p, _n in metrics.LIMITS))
    full = compute(con, ZONE, None, None, full=True)
    sizes = {p: len(full[p[0]] if len(p) == 1 else full[p[0]][p[1]]) for p, _n in metrics.LIMITS}
    assert sum(n > 2 for n in sizes.values()) >= 3, sizes
    assert top_only(full) == compute(con, ZONE, None, None)
    assert full == compute(con, ZONE, None, None, full=True)  # the cut copied, never changed


def test_from_to_slices_the_range(con: duckdb.DuckDBPyConnection,
                                  traffic: visitlog.Traffic) -> None:
    start, end = visitlog.ts("2024-12-08 22:00"), visitlog.ts("2024-12-09 00:30")
    data = compute(con, ZONE, start, end)
    truth = traffic.truth(start, end)
    assert_matches(data, truth)
    assert truth.visits < traffic.truth().visits
    assert data["from"] == "2024-12-08T22:00:00-06:00" and data["to"] == "2024-12-09T00:30:00-06:00"
    # 2.5 h → one point a minute, empty minutes included.
    assert data["series"]["granularity"] == "minuto" and len(data["series"]["points"]) == 150


def test_include_bots_counts_them_in(con: duckdb.DuckDBPyConnection,
                                     traffic: visitlog.Traffic) -> None:
    data = compute(con, ZONE, None, None, include_bots=True)
    truth = traffic.truth(include_bots=True)
    assert_matches(data, truth)
    assert data["unique_visitors"] == traffic.truth().visitors + 4  # 2 crawlers, scraper, robots


def test_bots_by_behaviour(tmp_path: Path) -> None:
    """robots.txt or dozens of distinct files a minute, for minutes: a bot, whatever its UA says;
    polling the same file every second is not."""
    base = visitlog.ts("2024-12-08 21:00")
    reqs = []
    ua = visitlog.BROWSERS[5]
    for s in range(600):  # an eager poller: main.json every second for 10 minutes
        reqs.append(visitlog.Request(base + timedelta(seconds=s), "187.176.96.10", ua,
                                     "/json/main.json", view="Resumen"))
    for minute in range(3):  # a crawler: 41 distinct files in each of 3 minutes
        for k in range(41):
            reqs.append(visitlog.Request(base + timedelta(minutes=minute, seconds=k),
                                         "187.176.96.11", ua, f"/json/casillas/{minute}-{k}.json"))
    for minute in range(2):  # 2 minutes of that is still a person (a heavy page, twice)
        for k in range(60):
            reqs.append(visitlog.Request(base + timedelta(minutes=minute, seconds=k),
                                         "187.176.96.12", ua, f"/img/{minute}-{k}.svg"))
    reqs.append(visitlog.Request(base, "187.176.96.13", ua, "/robots.txt"))
    reqs.append(visitlog.Request(base + timedelta(hours=2), "187.176.96.13", ua, "/"))
    traffic = visitlog.Traffic(sorted(reqs, key=lambda r: r.ts), {}, 0, "127.0.0.1")
    c = duckdb.connect()
    load(c, visitlog.hit_rows(traffic), tmp_path)
    data = compute(c, ZONE, None, None)
    assert data["unique_visitors"] == 2
    assert data["bot_hits"] == 3 * 41 + 2
    # Slicing to the hour after robots.txt still knows that visitor-day is a bot.
    later = compute(c, ZONE, base + timedelta(hours=1), None)
    assert later["unique_visitors"] == 0 and later["bot_hits"] == 1


def test_edge_rows_replace_origin_misses(traffic: visitlog.Traffic, tmp_path: Path) -> None:
    """Behind a CDN the origin sees misses only: with edge rows, visitors come from the edge."""
    c = duckdb.connect()
    edge = visitlog.hit_rows(traffic, source="borde", edge=True)
    misses = [r for r in visitlog.hit_rows(traffic, source="origen") if r[7] != "/json/main.json"
              or r[0].second % 10 == 0]
    load(c, edge + misses, tmp_path)
    data = compute(c, ZONE, None, None)
    assert_matches(data, traffic.truth())
    assert data["basis"] == "borde"
    assert [(s["source"], s["edge"], s["used"]) for s in data["sources"]] == [
        ("borde", True, True), ("origen", False, False)]
    assert data["sources"][1]["hits"] == len(misses)


def people(con: duckdb.DuckDBPyConnection, day: str, n: int) -> list[int]:
    """``n`` visitors of ``day`` that are people (they fetched something, no robot by agent or
    by behaviour: the scraper fetches hundreds of distinct files, a person a handful)."""
    rows = con.execute("""SELECT visitor FROM hits WHERE day = ? GROUP BY visitor
                          HAVING NOT bool_or(bot) AND NOT bool_or(lower(path) = '/robots.txt')
                             AND count(DISTINCT path) < 50
                          ORDER BY visitor LIMIT ?""", [day, n]).fetchall()
    assert len(rows) == n
    return [v for (v,) in rows]


def beacon(con: duckdb.DuckDBPyConnection, at: datetime, visitor: int, page: str,
           ms: int | None, status: int = 204, bot: bool = False) -> None:
    con.execute("INSERT INTO hits (ts, day, visitor, method, path, query, status, bytes, bot, "
                "page, visible_ms, source, edge) VALUES (?, ?, ?, 'BEACON', ?, '', ?, 0, "
                "?, FALSE, ?, 'difusor', FALSE)", [at, at.date(), visitor, page, status, bot, ms])


def test_beacon_rows_are_reported_apart(con: duckdb.DuckDBPyConnection) -> None:
    before = compute(con, ZONE, None, None)
    at = visitlog.ts("2024-12-08 21:00")
    a, b, c = people(con, "2024-12-08", 3)
    # Visitor a hid the tab once and came back: two reports, one view of 30 + 20 s.
    for visitor, page, ms in [(a, "/elecciones/prep", 30_000), (a, "/elecciones/prep", 20_000),
                              (b, "/elecciones/prep", 90_000), (c, "/", 12_000)]:
        beacon(con, at, visitor, page, ms)
    data = compute(con, ZONE, None, None)
    assert data["beacon"] == {"views": 3, "reports": 4, "avg_visible_seconds": 50.667, "pages": [
        {"page": "/elecciones/prep", "views": 2, "avg_visible_seconds": 70.0},
        {"page": "/", "views": 1, "avg_visible_seconds": 12.0}]}
    assert (data["hits"], data["unique_visitors"]) == (before["hits"], before["unique_visitors"])


@pytest.mark.slow
def test_forged_and_refused_beacons_are_not_views(con: duckdb.DuckDBPyConnection) -> None:
    """1,000 POSTs from one address, each with a new user agent (a new visitor key) and the
    largest time the field holds: none is a view. Nor is a report over the plausible maximum,
    one the server refused (rate limit, shield), or one from a robot by behaviour."""
    from difusor.analytics.sessions import MAX_VISIBLE_MS

    at = visitlog.ts("2024-12-08 21:00")
    a, b = people(con, "2024-12-08", 2)
    robot = 2**40 + 7  # asked for /robots.txt, then reported
    con.execute("INSERT INTO hits (ts, day, visitor, method, path, query, status, bytes, bot, "
                "page, source, edge) VALUES (?, ?, ?, 'GET', '/robots.txt', '', 200, 10, FALSE, "
                "FALSE, 'difusor', FALSE)", [at, at.date(), robot])
    for i in range(1000):
        beacon(con, at + timedelta(milliseconds=i), 2**41 + i, "/portal", 4_294_967_295)
    beacon(con, at, a, "/portal", MAX_VISIBLE_MS + 1)
    beacon(con, at, a, "/portal", 0)
    beacon(con, at, a, "/portal", 30_000, status=429)
    beacon(con, at, robot, "/portal", 30_000)
    beacon(con, at, b, "/portal", MAX_VISIBLE_MS)  # the most a report may say: counted
    got = compute(con, ZONE, None, None)["beacon"]
    assert got == {"views": 1, "reports": 1, "avg_visible_seconds": MAX_VISIBLE_MS / 1000,
                   "pages": [{"page": "/portal", "views": 1,
                              "avg_visible_seconds": MAX_VISIBLE_MS / 1000}]}


def test_the_beacon_cap_is_the_servers() -> None:
    from difusor.analytics.sessions import MAX_VISIBLE_MS
    from difusor.serve.app import BEACON_MAX_MS

    assert MAX_VISIBLE_MS == BEACON_MAX_MS == 12 * 3600 * 1000


MARKUP = ["[/x]", "[bold red]rojo[/bold red]", "[link=https://ataque.example]x[/link]", "\\[b]"]


def test_user_supplied_strings_are_printed_as_they_are(con: duckdb.DuckDBPyConnection) -> None:
    """Paths, views, pages, hosts, agents' families and sources come from the logs: rich
    markup in any of them is text (no MarkupError, no styling, no link)."""
    data = compute(con, ZONE, None, None)
    m = iter(MARKUP * 10)
    for row in data["top_pages"][:2]:
        row["path"] = next(m)
    for row in data["top_views"][:2]:
        row["view"] = next(m)
    for key, field in (("browsers", "browser"), ("devices", "device"), ("referrers", "host")):
        data[key][0][field] = next(m)
    data["geo"]["state"][0]["state"] = next(m)
    data["geo"]["country"][0]["country"] = next(m)
    data["beacon"] = {"views": 1, "reports": 1, "avg_visible_seconds": 1.0,
                      "pages": [{"page": "[/x]", "views": 1, "avg_visible_seconds": 1.0}]}
    data["sources"] = [{"source": "[bold]borde[/bold]", "edge": True, "hits": 1, "bytes": 1,
                        "used": True}]
    out, err = Console(record=True, width=200), Console(record=True, width=200)
    print_summary(data, out=out, err=err)
    text = out.export_text()
    for raw in [*MARKUP, "[bold]borde[/bold]"]:
        assert raw in text, raw  # printed literally: not read as markup


def test_view_rules_defaults_and_configured() -> None:
    cfg = Config()
    match = views.view_matcher(views.view_rules(cfg))
    assert match("/json/main.json") == "Resumen"
    assert match("/json/casillas/1000B1.json") == "Casilla"
    assert match("/prep/assets/JSON/PRESIDENTE/NACIONAL/Presidente_NACIONAL.json") == "Nacional"
    assert match("/assets/JSON/PRESIDENTE/ENTIDAD/Presidente_ENTIDAD_16.json") == "Entidad"
    assert match("/json/DIP_FED/DISTRITO/dip_DISTRITO_16_08.json") == "Distrito"
    assert match("/json/seccion/1234.json") == "Sección"
    assert match("/descargas/20190603_0915_PREP_GUB_PUE.zip") == "Base de datos"
    assert match("/app.js") is None and match("/index.html") is None
    page = views.page_matcher(views.page_rules(cfg))
    assert page("/") and page("/ayuda.html") and page("/entidad/") and not page("/json/main.json")
    own = Config.model_validate({"analytics": {"views": {"*/datos/*.json": "Datos"}}})
    assert views.view_rules(own) == [("*/datos/*.json", "Datos")]
    assert views.view_matcher(views.view_rules(own))("/json/main.json") is None


def test_no_database_yet_gives_zeros(tmp_path: Path) -> None:
    s = make_site(tmp_path / "d")
    try:
        data = summary(s.cfg, None, None)
    finally:
        s.ledger.close()
    assert set(data) >= KEYS and data["unique_visitors"] == 0 and data["series"]["points"] == []


def test_print_summary_in_spanish(con: duckdb.DuckDBPyConnection) -> None:
    out, err = Console(record=True, width=120), Console(record=True, width=120)
    print_summary(compute(con, ZONE, None, None), out=out, err=err)
    text = out.export_text()
    for words in ("Visitantes únicos", "Visitas", "Páginas vistas", "Tiempo promedio en el sitio",
                  "Tiempo mediano en el sitio", "Páginas más consultadas",
                  "Vistas más consultadas", "Entidades", "Países", "Navegadores", "Dispositivos",
                  "Referencias", "Michoacán", "Resumen", "www.google.com", "18 min 02 s"):
        assert words in text, words
    assert err.export_text() == ""


def test_summary_dates_are_spanish_not_raw_iso(con: duckdb.DuckDBPyConnection) -> None:
    """The title, the peak and the days read as the CLI prints dates elsewhere (dd/mm/aaaa, the
    zone named), never ISO with microseconds."""
    data = compute(con, ZONE, None, None)
    data["from"], data["to"] = "2024-12-08T18:00:00.123456-06:00", "2024-12-09T12:00:00+00:00"
    out, err = Console(record=True, width=200), Console(record=True, width=200)
    print_summary(data, out=out, err=err, zone=ZONE)
    text = out.export_text()
    assert "Visitas del 08/12/2024 18:00:00 CST al 09/12/2024 06:00:00 CST" in text
    assert re.search(r"Momento de más visitantes .*: \d\d/\d\d/2024 \d\d:\d0:00 CST,", text)
    assert "08/12/2024" in text.split("Por día")[1]
    assert not re.search(r"\d{4}-\d\d-\d\d", text), text  # no ISO left anywhere


# -- end to end: logs → ingest → summary ------------------------------------------------------

def canonical(dbip_name: str) -> str:
    return state_name({"names": {"en": dbip_name}}) or dbip_name


def tonight() -> datetime:
    """Today's election night: salts of days still running are kept between ingests."""
    return datetime.now(ZONE).replace(hour=19, minute=30, second=0, microsecond=0)


@pytest.mark.parametrize("fmt", ["combined", "difusor"])
@pytest.mark.slow
def test_ingested_logs_summarise_to_the_truth(tmp_path: Path, fmt: str) -> None:
    s = make_site(tmp_path / "d")
    try:
        traffic = visitlog.generate(site_url=s.cfg.site.url)
        visitlog.check_geo(traffic)
        log = (traffic.write_combined(tmp_path / "access.log") if fmt == "combined"
               else traffic.write_difusor_json(tmp_path / "access.jsonl"))
        result = ingest_files(s.cfg, [log])
        assert result.rows == len(traffic.requests) and result.bad == 0
        data = summary(s.cfg, None, None)
        assert_matches(data, traffic.truth(), canonical)
        assert {r["host"]: r["visits"] for r in data["referrers"]} == traffic.truth().referrers
        both = summary(s.cfg, None, None, include_bots=True)
        assert_matches(both, traffic.truth(include_bots=True), canonical)
        assert {b["browser"] for b in data["browsers"]} >= {"Chrome Mobile", "Mobile Safari",
                                                             "Firefox"}
        assert {d["device"] for d in data["devices"]} == {"móvil", "escritorio", "tableta"}
    finally:
        s.ledger.close()


@pytest.mark.slow
def test_reingest_and_rotation_never_count_twice(tmp_path: Path) -> None:
    s = make_site(tmp_path / "d")
    try:
        traffic = visitlog.generate(seed=3, site_url=s.cfg.site.url, start=tonight())
        truth = traffic.truth()
        full = traffic.write_combined(tmp_path / "all.log").read_bytes()
        lines = full.splitlines(keepends=True)
        live = tmp_path / "access.log"
        live.write_bytes(b"".join(lines[:4000]) + lines[4000][:30])  # a line half written
        ingest_files(s.cfg, [live])
        assert summary(s.cfg, None, None)["hits"] < truth.hits
        ingest_files(s.cfg, [live])  # the same file again: nothing new
        # logrotate: the file moves to access.log.1 (its line completed first), a new one starts
        with live.open("ab") as f:
            f.write(lines[4000][30:] + b"".join(lines[4001:7000]))
        live.rename(tmp_path / "access.log.1")
        live.write_bytes(b"".join(lines[7000:]))
        ingest_files(s.cfg, [tmp_path / "access.log.1", live])
        ingest_files(s.cfg, [tmp_path / "access.log.1", live])  # and both once more
        data = summary(s.cfg, None, None)
        assert_matches(data, truth, canonical)
    finally:
        s.ledger.close()


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "difusor", "analytics", *args],
                          capture_output=True, text=True, timeout=120)


@pytest.mark.slow
def test_cli_summary_json_and_slicing(tmp_path: Path) -> None:
    s = make_site(tmp_path / "d")
    s.ledger.close()
    traffic = visitlog.generate(seed=5, people=120, site_url=s.cfg.site.url)
    log = traffic.write_combined(tmp_path / "access.log")
    cfg = str(s.config_path)
    done = run_cli("ingest", str(log), "--config", cfg)
    assert done.returncode == 0, done.stderr
    done = run_cli("summary", "--json", "--config", cfg)
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert set(data) >= KEYS
    assert data["unique_visitors"] == traffic.truth().visitors
    assert set(data["geo"]) >= {"country", "state", "visitors"}
    done = run_cli("summary", "--json", "--from", "2024-12-08T21:00", "--to",
                   "2024-12-08T23:00", "--include-bots", "--config", cfg)
    sliced = json.loads(done.stdout)
    truth = traffic.truth(visitlog.ts("2024-12-08 21:00"), visitlog.ts("2024-12-08 23:00"),
                          include_bots=True)
    assert (sliced["hits"], sliced["visits"], sliced["pageviews"]) == (
        truth.hits, truth.visits, truth.pageviews)
    assert sliced["from"] == "2024-12-08T21:00:00-06:00"
    printed = run_cli("summary", "--json", "--from", "08/12/2024 21:00", "--to",
                      "08/12/2024 23:00:00 CST", "--include-bots", "--config", cfg)
    assert printed.returncode == 0, printed.stderr  # the dates the summary prints are accepted
    assert json.loads(printed.stdout)["hits"] == sliced["hits"]
    text = run_cli("summary", "--config", cfg)
    assert text.returncode == 0, text.stderr
    assert "Visitantes únicos" in text.stdout and "Entidades" in text.stdout
    bad = run_cli("summary", "--from", "ayer", "--config", cfg)
    assert bad.returncode != 0 and "--from" in bad.stderr

