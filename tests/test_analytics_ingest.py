"""Access logs into DuckDB: every format, idempotence, rotation, privacy, geo, agents, CLI, live."""

from __future__ import annotations

import functools
import gzip
import json
import random
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import duckdb
import pytest
from conftest import Site, make_site

from difusor.analytics import agents, formats, logfile
from difusor.analytics import ingestor as ingest_mod
from difusor.analytics.db import connect, database_path
from difusor.analytics.ingest import Ingestor, ingest_files
from difusor.analytics.live import LiveIngest
from difusor.analytics.lookups import Lookups
from difusor.analytics.metrics import summary
from difusor.analytics.schema import HITS_VIEW
from difusor.errors import BusyError, LogFormatError

CHROME = ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
          "Chrome/120.0.0.0 Safari/537.36")
IPHONE = ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 "
          "(KHTML, like Gecko) Version/17.0 Mobile/15E148 Safari/604.1")
ANDROID = ("Mozilla/5.0 (Linux; Android 13; SM-A135F) AppleWebKit/537.36 (KHTML, like Gecko) "
           "Chrome/120.0.0.0 Mobile Safari/537.36")
IPAD = ("Mozilla/5.0 (iPad; CPU OS 16_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
        "Version/16.6 Mobile/15E148 Safari/604.1")
GOOGLEBOT = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"

# Public addresses looked up in DB-IP City Lite (and their ASN in geoip2fast's database).
TELMEX_CDMX = "189.130.0.1"      # UNINET (Telmex) → Ciudad de México
TOTALPLAY_CDMX = "187.190.40.1"  # Total Play → Ciudad de México
AXTEL_NL = "200.52.1.1"          # Axtel → Nuevo León
MICH = "148.216.0.1"             # Alestra → Michoacán
US = "8.8.8.8"


def combined(ip: str, path: str, ua: str = CHROME, when: str = "08/Dec/2024:20:30:00 -0600",
             status: int = 200, ref: str = "-", method: str = "GET") -> str:
    return f'{ip} - - [{when}] "{method} {path} HTTP/1.1" {status} 5120 "{ref}" "{ua}"\n'


def difusor_line(ip: str, path: str, ua: str | None = CHROME, *, query: str = "",
                 when: str = "2024-12-09T02:30:00.123Z", method: str = "GET",
                 referer: str | None = None, status: int = 200) -> str:
    return json.dumps({"time": when, "ip": ip, "method": method, "path": path, "query": query,
                       "status": status, "bytes": 812, "referer": referer, "user_agent": ua,
                       "corte": "20241208_2030", "duration_ms": 0.412}) + "\n"


def rows(site: Site, sql: str = "SELECT * FROM hits ORDER BY ts") -> list[dict]:
    con = connect(site.cfg, read_only=True)
    try:
        cur = con.execute(sql)
        names = [d[0] for d in cur.description]
        return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]
    finally:
        con.close()


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


# -- formats --------------------------------------------------------------------------

CF_FIELDS = ("date time x-edge-location sc-bytes c-ip cs-method cs(Host) cs-uri-stem sc-status "
             "cs(Referer) cs(User-Agent) cs-uri-query cs(Cookie) x-edge-result-type "
             "x-edge-request-id x-host-header cs-protocol cs-bytes time-taken x-forwarded-for "
             "ssl-protocol ssl-cipher x-edge-response-result-type cs-protocol-version fle-status "
             "fle-encrypted-fields c-port time-to-first-byte x-edge-detailed-result-type "
             "sc-content-type sc-content-len sc-range-start sc-range-end")


def _cloudfront_line(ip: str, uri: str, query: str, ua: str, ref: str = "-") -> str:
    enc = ua.replace(" ", "%20")
    return "\t".join([
        "2024-12-09", "02:30:02", "MEX50-C1", "5400", ip, "GET", "d111111abcdef8.cloudfront.net",
        uri, "200", ref, enc, query, "-", "Hit", "SOX4xwn4XV6Q4rgb7XiVGOHms_BGlTAC4KyHmureZmBNrjGdRLiNIQ==",
        "prep.example.mx", "https", "120", "0.001", "-", "TLSv1.3", "TLS_AES_128_GCM_SHA256", "Hit",
        "HTTP/2.0", "-", "-", "54321", "0.001", "Hit", "application/json", "5120", "-", "-"]) + "\n"


SAMPLES: dict[str, tuple[str, dict]] = {
    "difusor": (
        difusor_line(TELMEX_CDMX, "/json/main.json", IPHONE, query="t=1",
                     referer="https://www.google.com/search?q=prep")
        + difusor_line(US, "/index.html", CHROME, when="2024-12-09T02:31:00.000Z"),
        {"path": "/json/main.json", "query": "t=1", "country": "MX", "state": "Ciudad de México",
         "referer_host": "www.google.com", "device": "móvil", "edge": False,
         "ts": datetime(2024, 12, 9, 2, 30, 0, 123000, tzinfo=UTC)}),
    "nginx-json": (
        '{"time":"2024-12-08T20:30:00.123-06:00","ip":"' + AXTEL_NL + '","method":"GET",'
        '"path":"/json/main.json","query":"","status":200,"bytes":5120,"referer":"",'
        '"user_agent":"' + ANDROID + '","corte":"20241208_2030","duration_ms":1}\n'
        '{"time":"2024-12-08T20:31:00.000-06:00","ip":"' + US + '","method":"GET",'
        '"path":"/","query":"","status":304,"bytes":0,"referer":"-","user_agent":"' + CHROME
        + '","corte":"-","duration_ms":0}\n',
        {"path": "/json/main.json", "query": "", "country": "MX", "state": "Nuevo León",
         "referer_host": None, "device": "móvil", "edge": False, "bytes": 5120,
         "ts": datetime(2024, 12, 9, 2, 30, 0, 123000, tzinfo=UTC)}),
    "combined": (
        combined(MICH, "/json/main.json?x=1", IPAD, ref="https://t.co/abc")
        + combined(US, "/", CHROME, when="08/Dec/2024:20:31:00 -0600"),
        {"path": "/json/main.json", "query": "x=1", "country": "MX", "state": "Michoacán",
         "referer_host": "t.co", "device": "tableta", "edge": False, "status": 200,
         "ts": datetime(2024, 12, 9, 2, 30, tzinfo=UTC)}),
    "varnishncsa": (
        combined(TOTALPLAY_CDMX, "http://prep.example.mx/json/main.json?v=2", ANDROID)
        + combined(US, "http://prep.example.mx/", CHROME, when="08/Dec/2024:20:31:00 -0600"),
        {"path": "/json/main.json", "query": "v=2", "country": "MX", "state": "Ciudad de México",
         "device": "móvil", "edge": True, "ts": datetime(2024, 12, 9, 2, 30, tzinfo=UTC)}),
    "cloudfront": (
        "#Version: 1.0\n#Fields: " + CF_FIELDS + "\n"
        + _cloudfront_line(TELMEX_CDMX, "/json/main.json", "a=1", CHROME,
                           "https://www.facebook.com/")
        + _cloudfront_line(US, "/index.html", "-", IPHONE),
        {"path": "/json/main.json", "query": "a=1", "country": "MX", "browser": "Chrome",
         "device": "escritorio", "referer_host": "www.facebook.com", "edge": True, "bytes": 5400,
         "ts": datetime(2024, 12, 9, 2, 30, 2, tzinfo=UTC)}),
    "cloudflare": (
        json.dumps({"ClientIP": "2806:2f0::1", "ClientRequestHost": "prep.example.mx",
                    "ClientRequestMethod": "GET", "ClientRequestURI": "/json/main.json?z=9",
                    "ClientRequestUserAgent": IPHONE, "ClientRequestReferer": "",
                    "EdgeResponseStatus": 200, "EdgeResponseBytes": 5400,
                    "EdgeStartTimestamp": "2024-12-09T02:30:03Z", "CacheCacheStatus": "hit",
                    "RayID": "8f1a2b3c4d5e6f70"}) + "\n"
        + json.dumps({"ClientIP": US, "ClientRequestMethod": "GET", "ClientRequestURI": "/",
                      "ClientRequestUserAgent": CHROME, "ClientRequestReferer": "",
                      "EdgeResponseStatus": 200, "EdgeResponseBytes": 812,
                      "EdgeStartTimestamp": 1733711463000000000, "CacheCacheStatus": "miss"})
        + "\n",
        {"path": "/json/main.json", "query": "z=9", "country": "MX", "state": "Ciudad de México",
         "device": "móvil", "edge": True, "ts": datetime(2024, 12, 9, 2, 30, 3, tzinfo=UTC)}),
    "fastly": (
        json.dumps({"timestamp": "2024-12-09T02:30:04+0000", "client_ip": AXTEL_NL,
                    "geo_country": "Mexico", "host": "prep.example.mx",
                    "url": "/json/main.json?utm=x", "request_method": "GET",
                    "request_protocol": "HTTP/2", "request_referer": "https://prep.example.mx/",
                    "request_user_agent": ANDROID, "response_state": "HIT",
                    "response_status": 200, "response_reason": "OK", "response_body_size": 812,
                    "fastly_server": "cache-qro8321-QRO", "fastly_is_edge": True}) + "\n"
        + json.dumps({"timestamp": "2024-12-09T02:31:04+0000", "client_ip": US, "url": "/",
                      "request_method": "GET", "request_user_agent": CHROME,
                      "response_status": 200, "response_body_size": 100}) + "\n",
        {"path": "/json/main.json", "query": "utm=x", "country": "MX", "state": "Nuevo León",
         "referer_host": None, "edge": True, "bytes": 812,  # the site's own host is no referrer
         "ts": datetime(2024, 12, 9, 2, 30, 4, tzinfo=UTC)}),
}


@pytest.fixture
def prep_site(tmp_path: Path) -> Iterator[Site]:
    """A site whose public URL is https://prep.example.mx (referrers from it are not external)."""
    from difusor import config as config_mod

    s = make_site(tmp_path / "difusor")
    text = re.sub(r'(?m)^url = ".*"$', 'url = "https://prep.example.mx"', s.config_path.read_text(),
                  count=1)
    s.config_path.write_text(text)
    s.cfg = config_mod.load(s.config_path)
    yield s
    s.ledger.close()


@pytest.mark.parametrize("fmt", sorted(SAMPLES))
@pytest.mark.slow
def test_each_format_is_parsed(prep_site: Site, tmp_path: Path, fmt: str) -> None:
    text, first = SAMPLES[fmt]
    log = write(tmp_path / f"{fmt}.log", text)
    forced = fmt if fmt == "varnishncsa" else "auto"  # combined-shaped: only by name
    result = ingest_files(prep_site.cfg, [log], fmt=forced)
    assert (result.lines, result.rows, result.bad) == (2, 2, 0), result.describe()
    got = rows(prep_site)
    assert len(got) == 2
    for key, value in first.items():
        assert got[0][key] == value, (fmt, key, got[0])
    assert got[0]["method"] == "GET" and got[0]["status"] == 200 and got[0]["bot"] is False
    assert got[1]["country"] == "US" and got[1]["state"] is None
    assert got[0]["day"].isoformat() == "2024-12-08"  # local date, America/Mexico_City
    assert got[0]["visitor"] != got[1]["visitor"]


def test_auto_detection_reads_the_first_lines(tmp_path: Path) -> None:
    expected = {"difusor": "difusor", "nginx-json": "nginx-json", "combined": "combined",
                "varnishncsa": "combined", "cloudfront": "cloudfront",
                "cloudflare": "cloudflare", "fastly": "fastly"}
    for fmt, (text, _) in SAMPLES.items():
        assert formats.detect(("\n" + text).encode(), fmt) == expected[fmt], fmt
    # CloudFront without its header lines is still tab-separated with a date first.
    data_line = SAMPLES["cloudfront"][0].splitlines()[2] + "\n"
    assert formats.detect(data_line.encode(), "cf") == "cloudfront"
    with pytest.raises(LogFormatError, match="no reconozco el formato"):
        formats.detect(b"hola mundo\nesto no es un registro\n", "x.log")


def test_gzip_logs_are_read(site: Site, tmp_path: Path) -> None:
    text = "".join(combined(TELMEX_CDMX, f"/p{i}.html") for i in range(50))
    log = tmp_path / "access.log.2.gz"
    log.write_bytes(gzip.compress(text.encode()))
    result = ingest_files(site.cfg, [log])
    assert (result.lines, result.rows) == (50, 50)
    assert rows(site, "SELECT count(*) AS n, any_value(source) AS s FROM hits")[0] == {
        "n": 50, "s": "access.log"}


def test_bad_lines_are_counted_and_never_stop_the_ingest(site: Site, tmp_path: Path) -> None:
    text = (combined(TELMEX_CDMX, "/a.html")
            + "esto no es una línea de registro\n"
            + '1.2.3.4 - - [99/Foo/2024:99:99:99 -0600] "GET / HTTP/1.1" 200 1 "-" "x"\n'
            + "\n"
            + combined(US, "/b.html", ua='Mozilla/5.0 \\"quoted\\" agent')  # Apache escaping
            + "\xff\xfe binario \x01\x00\n"
            + combined(AXTEL_NL, "/c.html"))
    log = tmp_path / "access.log"
    log.write_bytes(text.encode("utf-8", "surrogateescape").replace(b"\xc3\xbf\xc3\xbe", b"\xff\xfe"))
    result = ingest_files(site.cfg, [log], fmt="combined")
    assert (result.rows, result.bad) == (3, 3), result.describe()
    assert "3 filas guardadas, 3 líneas no entendidas" in result.describe()
    agents_seen = {r["path"]: r for r in rows(site)}
    assert set(agents_seen) == {"/a.html", "/b.html", "/c.html"}


def mixed_log(log: Path) -> list[datetime]:
    """600 combined lines of 20 visitors crossing midnight, with an Apache escaped quote and
    bytes that are not UTF-8 on two lines; returns each line's instant."""
    rng = random.Random(7)
    people = [(ip, ua) for ip in (TELMEX_CDMX, TOTALPLAY_CDMX, AXTEL_NL, MICH, US)
              for ua in (CHROME, IPHONE, ANDROID, GOOGLEBOT)]
    refs = ["-", "https://www.google.com/search?q=prep", "http://user@t.co:8080/x",
            "https://prep.example.mx/"]
    start = datetime(2024, 12, 8, 22, 0, tzinfo=UTC)  # 16:00 in Mexico City: crosses midnight
    lines, stamps = [], []
    for i in range(600):
        ip, ua = rng.choice(people)
        stamps.append(start + timedelta(seconds=i * 90))
        when = stamps[-1].astimezone(
            ZoneInfo("America/Mexico_City")).strftime("%d/%b/%Y:%H:%M:%S %z")
        path = rng.choice(["/", "/json/main.json", "/json/casillas/1203B1.json?t=1",
                           "/assets/app.js"])
        lines.append(combined(ip, path, ua, when=when, ref=rng.choice(refs)).encode())
    lines[250] = combined(US, "/b.html", ua='Mozilla/5.0 \\"quoted\\" agent').encode()
    lines[420] = combined(MICH, "/c.html", ua="agente \xff raro").encode("latin-1")
    stamps[250] = stamps[420] = datetime(2024, 12, 9, 2, 30, tzinfo=UTC)
    log.write_bytes(b"".join(lines))
    return stamps


HITS_Q = ("SELECT ts, day, country, state, method, path, query, status, bytes, referer_host, "
          "browser, os, device, bot, page, view FROM hits ORDER BY seq")


@pytest.mark.slow
def test_a_log_read_in_many_small_chunks_stores_what_one_chunk_stores(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Chunk boundaries, the agents of one chunk classified while the next is parsed, and
    chunks read different ways (an Apache escaped quote, bytes that are not UTF-8) change
    nothing."""
    log = tmp_path / "access.log"
    stamps = mixed_log(log)
    whole, small = make_site(tmp_path / "a"), make_site(tmp_path / "b")
    try:
        assert ingest_files(whole.cfg, [log]).rows == 600
        monkeypatch.setattr(ingest_mod, "chunks", functools.partial(logfile.chunks, chunk=3000,
                                                                    piece=64))
        asked: list[list] = []
        real_ask = Lookups.ask

        def ask(self: Lookups, uas: list) -> str:
            asked.append(uas)
            return real_ask(self, uas)

        monkeypatch.setattr(Lookups, "ask", ask)
        result = ingest_files(small.cfg, [log])
        assert len(asked) > 10
        every = [ua for uas in asked for ua, _ in uas]
        assert len(every) == len(set(every))  # each agent classified once
        assert (result.rows, result.bad) == (600, 0)
        assert rows(small, HITS_Q) == rows(whole, HITS_Q)
        assert [r["ts"] for r in rows(whole, HITS_Q)] == stamps  # in the log's order
        people_q = "SELECT day, count(DISTINCT visitor) AS n FROM hits GROUP BY day ORDER BY day"
        assert rows(small, people_q) == rows(whole, people_q)
        assert len(rows(small, people_q)) == 2
        assert summary(small.cfg, None, None) == summary(whole.cfg, None, None)
    finally:
        whole.ledger.close()
        small.ledger.close()


@pytest.mark.slow
def test_an_ingest_that_fails_mid_log_resumes_where_it_stopped(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A chunk that cannot be stored (here: a failure writing its visitors) rolls back alone:
    the chunks before it stay, and the next ingest stores the rest once, places and agents
    included (agents of the rolled-back chunk are asked again)."""
    log = tmp_path / "access.log"
    mixed_log(log)
    whole, broken = make_site(tmp_path / "a"), make_site(tmp_path / "b")
    try:
        assert ingest_files(whole.cfg, [log]).rows == 600
        monkeypatch.setattr(ingest_mod, "chunks", functools.partial(logfile.chunks, chunk=9000,
                                                                    piece=64))
        writes = []
        real_load = Ingestor._load

        def failing_load(self: Ingestor, table: str, text: str) -> None:
            writes.append(table)
            if len(writes) == 3:  # the third chunk's agents
                raise OSError(28, "No space left on device")
            real_load(self, table, text)

        monkeypatch.setattr(Ingestor, "_load", failing_load)
        with pytest.raises(OSError):
            ingest_files(broken.cfg, [log])
        stored = rows(broken, "SELECT count(*) AS n FROM hits")[0]["n"]
        assert 0 < stored < 600
        monkeypatch.setattr(Ingestor, "_load", real_load)
        again = ingest_files(broken.cfg, [log])
        assert again.rows == 600 - stored
        assert rows(broken, HITS_Q) == rows(whole, HITS_Q)
        assert summary(broken.cfg, None, None) == summary(whole.cfg, None, None)
    finally:
        whole.ledger.close()
        broken.ledger.close()


@pytest.mark.slow
def test_requests_keep_the_log_order_in_a_large_parallel_ingest(site: Site, tmp_path: Path
                                                                ) -> None:
    """300,000 lines, 20 a second from 5,000 addresses: DuckDB inserts in parallel through hash
    joins, which do not keep the order; each row's ``seq`` still is its place in the log (ties
    within a second go by it), and a second log's rows come after the first's."""
    rng = random.Random(3)
    start = datetime(2024, 12, 9, 2, 0, tzinfo=UTC)
    ips = [f"189.130.{i // 250}.{i % 250 + 1}" for i in range(5000)]
    log = tmp_path / "access.log"
    with log.open("w") as f:
        for i in range(300_000):
            when = (start + timedelta(seconds=i // 20)).strftime("%d/%b/%Y:%H:%M:%S +0000")
            f.write(f'{rng.choice(ips)} - - [{when}] "GET /json/{i}.json HTTP/1.1" 200 10 "-" '
                    f'"Mozilla/5.0 agente {i % 50}"\n')
    assert ingest_files(site.cfg, [log]).rows == 300_000
    out_of_order = rows(site, """
        SELECT count(*) AS n FROM (
            SELECT CAST(regexp_extract(path, '[0-9]+') AS INTEGER) AS i,
                   lag(CAST(regexp_extract(path, '[0-9]+') AS INTEGER)) OVER (ORDER BY seq) AS p
            FROM requests) WHERE i < p""")
    assert out_of_order == [{"n": 0}]
    seqs = rows(site, "SELECT count(DISTINCT seq) AS n, max(seq) AS last FROM requests")
    assert seqs == [{"n": 300_000, "last": 299_999}]
    more = tmp_path / "more.log"
    more.write_text(f'{ips[0]} - - [09/Dec/2024:06:00:00 +0000] "GET /json/300000.json HTTP/1.1" '
                    '200 10 "-" "Mozilla/5.0 agente 0"\n')
    assert ingest_files(site.cfg, [more]).rows == 1
    assert rows(site, "SELECT path FROM requests ORDER BY seq DESC LIMIT 1") == [
        {"path": "/json/300000.json"}]


def test_a_log_written_to_while_read_in_place_is_read_again_from_a_copy(
        site: Site, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A small log is parsed where it lies; if it grows between its scan and DuckDB's read,
    DuckDB may read lines past the offset that is saved: that parse is dropped and the log
    read from a copy, so each line is stored once."""
    log = write(tmp_path / "access.log",
                combined(TELMEX_CDMX, "/a.html") + combined(US, "/b.html"))
    real_csv_sql = formats.csv_sql
    grown: list[str] = []

    def growing(path: str, *args: object) -> str:
        if path == str(log) and not grown:  # read in place, and written to just now
            with open(log, "a") as f:
                f.write(combined(AXTEL_NL, "/c.html"))
            grown.append(path)
        return real_csv_sql(path, *args)

    monkeypatch.setattr(formats, "csv_sql", growing)
    assert ingest_files(site.cfg, [log]).rows == 3
    assert grown == [str(log)]
    assert ingest_files(site.cfg, [log]).rows == 0
    assert [r["path"] for r in rows(site, "SELECT path FROM hits ORDER BY seq")] == [
        "/a.html", "/b.html", "/c.html"]


@pytest.mark.slow
def test_a_database_stored_before_seq_gets_it_in_its_rows_order(site: Site, tmp_path: Path
                                                                ) -> None:
    log = write(tmp_path / "access.log", "".join(
        combined(ip, path) for ip, path in ((TELMEX_CDMX, "/a.html"), (US, "/b.html"),
                                            (AXTEL_NL, "/c.html"))))
    ingest_files(site.cfg, [log])
    before = summary(site.cfg, None, None)
    con = duckdb.connect(str(database_path(site.cfg)))  # the layout of earlier versions
    con.execute("DROP VIEW hits; ALTER TABLE requests DROP COLUMN seq")
    con.execute(HITS_VIEW.replace("r.seq", "r.rowid AS rowid"))
    con.close()
    assert summary(site.cfg, None, None) == before  # read as it is
    connect(site.cfg).close()  # a writer opens it
    assert [r["path"] for r in rows(site, "SELECT path FROM hits ORDER BY seq")] == [
        "/a.html", "/b.html", "/c.html"]
    assert summary(site.cfg, None, None) == before
    more = write(tmp_path / "more.log", combined(MICH, "/d.html"))
    ingest_files(site.cfg, [more])
    assert [r["seq"] for r in rows(site, "SELECT seq FROM requests ORDER BY seq")] == [0, 1, 2, 3]


def test_a_database_whose_visitors_had_a_declared_key_keeps_them_and_merges_new_ones(
        site: Site, tmp_path: Path) -> None:
    """Databases made when (day, visitor) was a PRIMARY KEY: the key goes (its index cost
    more than the rest of a visitor), the rows stay, and a later ingest still stores each
    visitor-day once (its latest request moved forward)."""
    # (Requests of the last hours: an old day's secret salt would be gone between ingests.)
    now = datetime.now(UTC).replace(microsecond=0)

    def stamp(moment: datetime) -> str:
        return moment.astimezone(ZoneInfo("America/Mexico_City")).strftime("%d/%b/%Y:%H:%M:%S %z")

    first = write(tmp_path / "a.log", combined(TELMEX_CDMX, "/a.html", when=stamp(now))
                  + combined(US, "/b.html", when=stamp(now)))
    ingest_files(site.cfg, [first])
    before = summary(site.cfg, None, None)
    con = duckdb.connect(str(database_path(site.cfg)))  # the layout of earlier versions
    con.execute("CREATE TABLE old AS SELECT * FROM visitors; DROP TABLE visitors; "
                "CREATE TABLE visitors (day DATE NOT NULL, visitor UBIGINT NOT NULL, ip VARCHAR, "
                "last_ts TIMESTAMPTZ, country VARCHAR, state VARCHAR, browser VARCHAR, "
                "os VARCHAR, device VARCHAR, bot BOOLEAN, PRIMARY KEY (day, visitor)); "
                "INSERT INTO visitors SELECT * FROM old; DROP TABLE old")
    con.close()
    connect(site.cfg).close()  # a writer opens it
    keys = rows(site, "SELECT constraint_type FROM duckdb_constraints() "
                      "WHERE table_name = 'visitors'")
    assert {"constraint_type": "PRIMARY KEY"} not in keys
    assert summary(site.cfg, None, None) == before
    later = write(tmp_path / "b.log", combined(TELMEX_CDMX, "/c.html",
                                               when=stamp(now + timedelta(seconds=1))))
    ingest_files(site.cfg, [later])
    visitors = rows(site, "SELECT country, last_ts FROM visitors ORDER BY country")
    assert [v["country"] for v in visitors] == ["MX", "US"]  # (the same visitor-day: once)
    assert visitors[0]["last_ts"] == now + timedelta(seconds=1)


def test_an_ingest_caps_duckdbs_memory(site: Site) -> None:
    ing = Ingestor(site.cfg)
    try:
        (limit,) = ing.con.execute("SELECT current_setting('memory_limit')").fetchone()
    finally:
        ing.close()
    assert limit == f"{ingest_mod.INGEST_MEMORY / 2**20:.1f} MiB"  # (the configured 1 GB)


def test_fast_combined_reader_agrees_with_the_general_one_on_odd_lines(
        site: Site, tmp_path: Path) -> None:
    """Combined lines go through DuckDB's typed CSV reader; the lines it refuses are read the
    general way. Together they must give exactly what the general reader gives, line by line."""
    lines = [
        combined(TELMEX_CDMX, "/a.html"),
        '189.130.0.2 - juan perez [08/Dec/2024:19:30:01 -0600] "GET /b HTTP/1.1" 200 12 '
        '"https://r.example/x" "UA dos"\n',                                       # user, space
        '189.130.0.3 - - [08/Dec/2024:19:30:02 +0530] "GET /c?x=1&y=2 HTTP/1.1" 404 - "-" "UA"\n',
        '189.130.0.4 - - [08/Dec/2024:19:30:03 -0600] "GET /d HTTP/1.1" 304 0\n',   # common
        '189.130.0.5 - - [08/Dec/2024:19:30:04 -0600] "\\x16\\x03\\x01\\x00" 400 157 "-" "-"\n',
        '189.130.0.6 - - [08/Dec/2024:19:30:05 -0600] "GET /e HTTP/1.1" 200 5 "-" "UA" '
        '"10.0.0.1, 10.0.0.2"\n',                                   # nginx "main": X-Forwarded-For
        '189.130.0.7 - - [08/Dec/2024:19:30:06 -0600] "GET http://otro.example/f?z HTTP/1.1" '
        '200 5 "-" "UA"\n',                                                  # absolute target
        '189.130.0.8 - - [32/Dec/2024:19:30:07 -0600] "GET /g HTTP/1.1" 200 5 "-" "UA"\n',
        '189.130.0.9 - - [08/Dec/2024:19:30:08 -0600] "GET /h HTTP/1.1" 200 5 "-" "UA" 1 2 3 4 '
        '5 6 7 8\n',                                                          # too many fields
        "esto no es una línea de registro\n",
        "\n",
        combined(AXTEL_NL, "/i.html"),
    ]
    log = write(tmp_path / "raro.log", "".join(lines))
    con = connect(site.cfg)
    try:
        fast = con.execute(f"SELECT * FROM ({formats.csv_sql(str(log), '_rej')})").fetchall()
        fast += con.execute(f"SELECT * FROM ({formats.rejected_sql('_rej')})").fetchall()
        general = con.execute(
            f"SELECT * FROM ({formats.source_sql(formats.get('combined'), str(log))})").fetchall()
    finally:
        con.close()
    assert len(general) == len(lines) - 1  # the empty line is no line
    assert sorted(fast, key=repr) == sorted(general, key=repr)
    result = ingest_files(site.cfg, [log], fmt="combined")
    # Not understood: the impossible date and the sentence.
    assert (result.rows, result.bad) == (len(lines) - 3, 2), result.describe()


def test_unknown_format_and_missing_file_are_clear_errors(site: Site, tmp_path: Path) -> None:
    with pytest.raises(LogFormatError, match="no existe"):
        ingest_files(site.cfg, [tmp_path / "nada.log"])
    junk = write(tmp_path / "junk.log", "hola\nmundo\n")
    with pytest.raises(LogFormatError, match="no reconozco"):
        ingest_files(site.cfg, [junk])


# -- idempotence and rotation ---------------------------------------------------------

def test_reingest_adds_nothing_and_append_adds_only_new_lines(site: Site, tmp_path: Path) -> None:
    log = write(tmp_path / "access.log", "".join(combined(TELMEX_CDMX, f"/{i}.html")
                                                 for i in range(10)))
    assert ingest_files(site.cfg, [log]).rows == 10
    again = ingest_files(site.cfg, [log])
    assert (again.rows, again.already) == (0, 1)
    assert "1 archivo ya ingerido sin líneas nuevas" in again.describe()
    with open(log, "a") as f:
        f.write("".join(combined(US, f"/new{i}.html") for i in range(5)))
        f.write(combined(AXTEL_NL, "/partial.html").rstrip("\n")[:40])  # a line being written
    assert ingest_files(site.cfg, [log]).rows == 5
    with open(log, "a") as f:  # the writer finishes that line
        f.write(combined(AXTEL_NL, "/partial.html")[40:])
    assert ingest_files(site.cfg, [log]).rows == 1
    assert rows(site, "SELECT count(*) AS n FROM hits")[0]["n"] == 16
    assert rows(site, "SELECT lines FROM files")[0]["lines"] == 16


def test_a_day_already_stored_is_merged_and_a_new_one_inserted(site: Site, tmp_path: Path
                                                                 ) -> None:
    """The first visitors of a day are inserted as they are; a later log of the same day (a
    recent one: an old day's salt ends with its ingest) merges into them — the same person
    stays one visitor-day, with the later time — and adds its new people."""
    zone = timezone(timedelta(hours=-6))
    base = datetime.now(zone).replace(hour=0, minute=30, second=0, microsecond=0)
    at = [base + timedelta(minutes=m) for m in (0, 5, 60, 61)]

    def stamp(t: datetime) -> str:
        return t.strftime("%d/%b/%Y:%H:%M:%S -0600")

    first = write(tmp_path / "a.log", combined(TELMEX_CDMX, "/", when=stamp(at[0]))
                  + combined(US, "/", when=stamp(at[1])))
    later = write(tmp_path / "b.log", combined(TELMEX_CDMX, "/x", when=stamp(at[2]))
                  + combined(AXTEL_NL, "/", when=stamp(at[3])))
    assert ingest_files(site.cfg, [first]).rows == 2
    assert ingest_files(site.cfg, [later]).rows == 2
    got = rows(site, "SELECT count(*) AS n, count(DISTINCT visitor) AS people, max(last_ts) AS "
                     "last, count(DISTINCT day) AS days FROM visitors")[0]
    assert (got["n"], got["people"], got["days"]) == (3, 3, 1)
    assert got["last"] == at[3]
    cdmx = rows(site, "SELECT visitor, max(ts) AS ts, count(*) AS n FROM hits "
                      "WHERE state = 'Ciudad de México' GROUP BY visitor")
    assert len(cdmx) == 1 and cdmx[0]["n"] == 2 and cdmx[0]["ts"] == at[2]


def test_rotation_never_double_counts_nor_loses(site: Site, tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    write(log, "".join(combined(TELMEX_CDMX, f"/a{i}.html") for i in range(20)))
    assert ingest_files(site.cfg, [log]).rows == 20
    with open(log, "a") as f:  # written after the last ingest, before the rotation
        f.write("".join(combined(TELMEX_CDMX, f"/late{i}.html") for i in range(3)))
    log.rename(tmp_path / "access.log.1")
    write(log, "".join(combined(US, f"/b{i}.html") for i in range(7)))
    result = ingest_files(site.cfg, [tmp_path / "access.log.1", log])
    assert result.rows == 3 + 7
    old = tmp_path / "access.log.1"
    (tmp_path / "access.log.1.gz").write_bytes(gzip.compress(old.read_bytes()))
    old.unlink()
    result = ingest_files(site.cfg, [tmp_path / "access.log.1.gz", log])
    assert result.rows == 0 and result.already == 2
    got = rows(site, "SELECT path, count(*) AS n FROM hits GROUP BY path HAVING n > 1")
    assert got == []
    assert rows(site, "SELECT count(*) AS n FROM hits")[0]["n"] == 30


# -- privacy --------------------------------------------------------------------------

def test_no_ip_is_stored_by_default_and_temp_files_are_gone(site: Site, tmp_path: Path) -> None:
    ip = "187.190.40.123"
    log = write(tmp_path / "access.log", combined(ip, "/index.html") * 3)
    ingest_files(site.cfg, [log])
    got = rows(site)
    assert [r["ip"] for r in got] == [None] * 3
    assert len({r["visitor"] for r in got}) == 1
    folder = database_path(site.cfg).parent
    leftovers = [p.name for p in folder.iterdir() if not p.name.startswith("visitas.duckdb")]
    assert leftovers == []
    for p in folder.iterdir():
        assert ip.encode() not in p.read_bytes(), p


def test_ip_kept_for_keep_ip_days_then_cleared(tmp_path: Path) -> None:
    site = make_site(tmp_path / "d", extra_toml="\n[analytics]\nkeep_ip_days = 1\n")
    now = datetime.now(UTC)
    log = write(tmp_path / "access.log",
                difusor_line(TOTALPLAY_CDMX, "/", when=now.strftime("%Y-%m-%dT%H:%M:%S.000Z"))
                + difusor_line(AXTEL_NL, "/", when="2024-12-09T02:30:00.000Z"))
    ingest_files(site.cfg, [log])
    got = {r["ip"] for r in rows(site)}
    assert got == {TOTALPLAY_CDMX, None}  # the 2024 row is past keep_ip_days already
    ing = Ingestor(site.cfg)
    try:
        ing.tidy(now + timedelta(days=2))
    finally:
        ing.close(tidy=False)
    assert {r["ip"] for r in rows(site)} == {None}
    site.ledger.close()


def test_salt_of_a_finished_day_is_deleted(site: Site, tmp_path: Path) -> None:
    now = datetime.now(UTC)
    old = write(tmp_path / "old.log", difusor_line(TELMEX_CDMX, "/"))
    ingest_files(site.cfg, [old])
    assert rows(site, "SELECT * FROM salts") == []  # 2024-12-08 ended long ago
    today = write(tmp_path / "today.log", difusor_line(
        TELMEX_CDMX, "/", when=now.strftime("%Y-%m-%dT%H:%M:%S.000Z")))
    ingest_files(site.cfg, [today])
    salts = rows(site, "SELECT day, octet_length(salt) AS n FROM salts")
    assert len(salts) == 1 and salts[0]["n"] == 32
    # Same address and agent on the same day → same visitor; another day → unrelated key.
    ing = Ingestor(site.cfg)
    try:
        ing.tidy(now + timedelta(days=2))
    finally:
        ing.close(tidy=False)
    assert rows(site, "SELECT * FROM salts") == []


# -- classification -------------------------------------------------------------------

def test_maxmind_style_subdivisions_map_to_canonical_names() -> None:
    from difusor.analytics.geo import state_name

    assert state_name({"iso_code": "MIC", "names": {"en": "Michoacán"}}) == "Michoacán"
    assert state_name({"iso_code": "DIF"}) == "Ciudad de México"
    assert state_name({"names": {"en": "State of Mexico"}}) == "Estado de México"
    assert state_name({"names": {"en": "Michoacan"}}) == "Michoacán"
    assert state_name({"names": {"es": "Veracruz de Ignacio de la Llave"}}) == "Veracruz"
    assert state_name({"names": {"en": "Texas"}}) is None


def test_bots_and_devices() -> None:
    for ua in (GOOGLEBOT, "curl/8.5.0", "python-requests/2.31.0", "Go-http-client/1.1", "",
               "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
               "HeadlessChrome/120.0.0.0 Safari/537.36", "Wget/1.21.4",
               "facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)"):
        a = agents.classify(ua)
        assert a.bot and a.device == "bot", ua
    assert agents.classify(CHROME)[1:] == ("Windows", "escritorio", False)
    assert agents.classify(IPHONE).device == "móvil"
    assert agents.classify(ANDROID).device == "móvil"
    assert agents.classify(IPAD).device == "tableta"
    cubot = "Mozilla/5.0 (Linux; Android 10; CUBOT X30) AppleWebKit/537.36 Chrome/120 Mobile Safari/537.36"
    assert not agents.classify(cubot).bot  # a phone brand, not a robot


def test_own_agents_beacons_pages_and_views(site: Site, tmp_path: Path) -> None:
    log = write(tmp_path / "access.log", (
        difusor_line(TELMEX_CDMX, "/")
        + difusor_line(TELMEX_CDMX, "/json/main.json")
        + difusor_line(TELMEX_CDMX, "/css/app.css")
        + difusor_line(TELMEX_CDMX, "/json/main.json", "difusor-monitor/1.0")
        + difusor_line(TELMEX_CDMX, "/_difusor/b", method="POST",
                       query="p=%2Fresultados%2Fayuntamiento.html&v=45000")))
    result = ingest_files(site.cfg, [log])
    assert (result.lines, result.rows, result.own) == (5, 4, 1)
    got = {r["path"]: r for r in rows(site)}
    assert got["/"]["page"] is True and got["/"]["view"] is None
    assert got["/json/main.json"]["page"] is False and got["/json/main.json"]["view"] == "Resumen"
    assert got["/css/app.css"]["page"] is False and got["/css/app.css"]["view"] is None
    beacon = got["/resultados/ayuntamiento.html"]
    assert (beacon["method"], beacon["visible_ms"], beacon["page"]) == ("BEACON", 45000, False)
    assert got["/"]["visitor"] == beacon["visitor"]


# -- the database lock, the CLI, the live part ----------------------------------------

@pytest.mark.slow
def test_busy_database_is_a_clear_error(site: Site) -> None:
    connect(site.cfg).close()
    holder = subprocess.Popen(
        [sys.executable, "-c", "import duckdb, sys, time; c = duckdb.connect(sys.argv[1]); "
         "print('ok', flush=True); time.sleep(20)", str(database_path(site.cfg))],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout and holder.stdout.readline().strip() == "ok"
        started = time.monotonic()
        with pytest.raises(BusyError, match="ocupada por otro proceso"):
            connect(site.cfg, wait=0.5)
        assert time.monotonic() - started < 5
    finally:
        holder.kill()
        holder.wait()
        if holder.stdout:
            holder.stdout.close()


def _cli(site: Site, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "difusor", "analytics", "ingest", *args,
                           "--config", str(site.config_path)],
                          capture_output=True, text=True, timeout=60)


@pytest.mark.slow
def test_cli_ingest_exit_codes_and_spanish_output(site: Site, tmp_path: Path) -> None:
    log = write(tmp_path / "access.log", combined(TELMEX_CDMX, "/") * 4 + "basura\n")
    ok = _cli(site, str(log))
    assert ok.returncode == 0, ok.stderr
    assert "1 archivo: 5 líneas, 4 filas guardadas, 1 línea no entendida" in ok.stdout
    again = _cli(site, str(log))
    assert again.returncode == 0 and "0 filas guardadas" in again.stdout
    missing = _cli(site, str(tmp_path / "no-existe.log"))
    assert missing.returncode == LogFormatError.exit_code
    assert missing.stderr.startswith("difusor: ") and "no existe" in missing.stderr
    junk = _cli(site, str(write(tmp_path / "junk.log", "hola\n")))
    assert junk.returncode == LogFormatError.exit_code and "no reconozco" in junk.stderr
    bad_fmt = _cli(site, str(log), "--format", "apache")
    assert bad_fmt.returncode != 0 and "formato desconocido" in bad_fmt.stderr


@pytest.mark.slow
def test_cli_ingest_of_a_large_log(site: Site, tmp_path: Path) -> None:
    """A log of megabytes through the command (agents warmed up in a thread): every row
    stored and placed."""
    line = combined(TELMEX_CDMX, "/json/main.json", IPAD)
    copies = (8 << 20) // len(line.encode()) + 1
    log = write(tmp_path / "grande.log", line * copies + combined(US, "/", CHROME))
    ok = _cli(site, str(log), "--format", "combined")
    assert ok.returncode == 0, ok.stderr
    assert f"{copies + 1:,} filas guardadas" in ok.stdout
    places = rows(site, "SELECT country, state, count(*) AS n FROM hits GROUP BY ALL "
                        "ORDER BY n DESC")
    assert places == [{"country": "MX", "state": "Ciudad de México", "n": copies},
                      {"country": "US", "state": None, "n": 1}]


@pytest.mark.slow
def test_live_ingest_follows_growth_and_rotation(tmp_path: Path) -> None:
    site = make_site(tmp_path / "d", extra_toml="\n[analytics]\ninterval = 0.3\n")
    access = site.state.access_log
    access.parent.mkdir(parents=True, exist_ok=True)
    write(access, difusor_line(TELMEX_CDMX, "/"))
    messages: list[str] = []
    live = LiveIngest(site.cfg, log=messages.append)
    stop = threading.Event()
    worker = threading.Thread(target=live.run, args=(stop,))
    worker.start()

    def count() -> int:
        return rows(site, "SELECT count(*) AS n FROM hits")[0]["n"] if database_path(
            site.cfg).exists() else 0

    def wait_for(n: int) -> float:
        started = time.monotonic()
        while time.monotonic() - started < 10:
            if count() == n:
                return time.monotonic() - started
            time.sleep(0.05)
        raise AssertionError(f"esperaba {n} filas, hay {count()}; {messages}")

    try:
        wait_for(1)
        with open(access, "a") as f:
            f.write(difusor_line(US, "/a.html") + difusor_line(US, "/b.html"))
        assert wait_for(3) < 3.0  # within a few intervals, far below the 10 s allowed
        with open(access, "a") as f:  # written just before logrotate renames the file
            f.write(difusor_line(US, "/late.html"))
        access.rename(access.with_name("access.log.1"))
        write(access, "")  # the server reopens an empty log
        time.sleep(0.5)
        with open(access, "a") as f:
            f.write(difusor_line(AXTEL_NL, "/new.html"))
        wait_for(5)
        rotated = access.with_name("access.log.1")
        rotated.with_name("access.log.1.gz").write_bytes(gzip.compress(rotated.read_bytes()))
        rotated.unlink()
        time.sleep(1.0)
        assert count() == 5
        paths = [r["path"] for r in rows(site, "SELECT path FROM hits ORDER BY path")]
        assert paths == ["/", "/a.html", "/b.html", "/late.html", "/new.html"]
    finally:
        stop.set()
        worker.join(10)
        site.ledger.close()
    assert not worker.is_alive()
    assert any("rotó" in m for m in messages)


@pytest.mark.slow
def test_live_ingest_loses_nothing_across_the_servers_own_rotations(tmp_path: Path) -> None:
    from difusor.serve.accesslog import AccessLog

    site = make_site(tmp_path / "d", extra_toml="\n[analytics]\ninterval = 0.3\n")
    workers = [AccessLog(site.state.access_log, max_bytes=5000) for _ in range(2)]  # two workers
    stop = threading.Event()
    live = LiveIngest(site.cfg, log=lambda m: None)
    thread = threading.Thread(target=live.run, args=(stop,))
    thread.start()

    def ingested() -> int:
        return rows(site, "SELECT count(*) AS n FROM hits")[0]["n"] if database_path(
            site.cfg).exists() else 0

    try:
        for batch in range(4):  # ≈ 7 KB a batch: one rotation each, at the second worker's tick
            for i in range(batch * 30, batch * 30 + 30):
                workers[i % 2].record(f"{US}:4000", "GET", f"/p{i}", "", 200, 10, None, CHROME, 0.001,
                                      "20241208_2030")
            for n, log in enumerate(workers):  # the second tick passes 5,000 bytes: rotated
                log.tick()
                deadline = time.monotonic() + 15
                while ingested() < batch * 30 + 15 * (n + 1):
                    assert time.monotonic() < deadline, f"lote {batch}: {ingested()} peticiones"
                    time.sleep(0.1)
        for log in workers:
            log.close()
        assert len(list(site.state.logs.glob("access.log.*"))) >= 3  # rotated along the way
    finally:
        stop.set()
        thread.join(10)
        site.ledger.close()
    paths = sorted(r["path"] for r in rows(site, "SELECT path FROM hits"))
    assert paths == sorted(f"/p{i}" for i in range(120))  # each once: none lost, none twice

def test_live_round_survives_a_busy_database(site: Site) -> None:
    with LiveIngest(site.cfg, log=lambda m: None) as live:
        assert live.round() == 0  # no log yet: nothing to do, no error


def test_live_sources_and_restart_after_rotation(tmp_path: Path) -> None:
    edge = tmp_path / "varnish.log"
    site = make_site(tmp_path / "d", extra_toml=(
        "\n[analytics]\naccess_log = false\n"
        f'[[analytics.sources]]\npath = "{edge}"\nformat = "varnishncsa"\nname = "borde"\n'))
    write(edge, combined(TELMEX_CDMX, "http://prep.example.mx/") * 2)
    with LiveIngest(site.cfg, log=lambda m: None) as live:
        assert live.round() == 2
    with open(edge, "a") as f:  # appended, then rotated while difusor run was stopped
        f.write(combined(US, "http://prep.example.mx/late.html"))
    edge.rename(tmp_path / "varnish.log.1")
    write(edge, combined(AXTEL_NL, "http://prep.example.mx/new.html"))
    with LiveIngest(site.cfg, log=lambda m: None) as live:
        assert live.round() == 2  # a fresh start
    got = rows(site, "SELECT path, source, edge FROM hits ORDER BY path")
    assert [r["path"] for r in got] == ["/", "/", "/late.html", "/new.html"]
    assert {(r["source"], r["edge"]) for r in got} == {("borde", True)}
    site.ledger.close()
