"""Uptime in time: a synthetic month written straight into the ledger equals the truth to the
second; monitor gaps are unknown, authority delay is apart, vantages and public targets combine."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from conftest import Site, make_site

from difusor.ledger import Ledger
from difusor.monitor.uptime import SITE, month_range, public_targets, report, uptime

ZONE = ZoneInfo("America/Mexico_City")
START = datetime(2024, 12, 1, tzinfo=ZONE)
END = datetime(2025, 1, 1, tzinfo=ZONE)
MONTH = 31 * 86400
STEP = 30  # seconds between probes, and each probe's interval_s
FIRST = START - timedelta(seconds=15)  # the monitor was already running: probe k at FIRST + 30 k
TARGETS = """
[[monitor.targets]]
name = "cdn"
url = "https://prep.example.mx"
public = true

[[monitor.targets]]
name = "origen"
url = "http://127.0.0.1:8080"
"""


def at(k: int, first: datetime = FIRST, step: int = STEP) -> datetime:
    return first + timedelta(seconds=step * k)


def iso(when: datetime) -> str:
    return when.astimezone(UTC).isoformat(timespec="microseconds")


# The truth, in probe numbers (k) of the public target "cdn".
OUTAGES = [  # first failed probe, failed probes, failure
    (8_000, 24, "outage"),  # 12 min
    (30_000, 50, "stale"),  # 25 min
    (61_000, 8, "integrity"),  # 4 min
]
GAP_AFTER = 45_000  # the monitor's last probe before it stopped; the next is 242 probes later
GAP_NEXT = GAP_AFTER + 242  # the last result stands 2 intervals: 7260 s - 60 s = 2 h unknown
DELAY = (70_000, 180)  # authority delay: 180 probes, 90 min (half reported ok, half not)
DEGRADED = (75_000, 20)  # slow but up


def cdn_probe(k: int) -> tuple[bool, str | None] | None:
    """(ok, failure) of probe k, or None when the monitor did not run."""
    if GAP_AFTER < k < GAP_NEXT:
        return None
    for first, count, failure in OUTAGES:
        if first <= k < first + count:
            return False, failure
    if DELAY[0] <= k < DELAY[0] + DELAY[1]:
        return k % 2 == 0, "authority_delay"
    if DEGRADED[0] <= k < DEGRADED[0] + DEGRADED[1]:
        return True, "degraded"
    return True, None


@pytest.fixture(scope="module")
def month(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    site = make_site(tmp_path_factory.mktemp("uptime") / "difusor", TARGETS)
    ledger = site.ledger
    last = (END - FIRST).total_seconds() // STEP  # probe `last` is at END - 15 s
    for k in range(int(last) + 1):
        state = cdn_probe(k)
        if state is not None:
            ledger.probe_recorded(target="cdn", vantage="local", ok=state[0], failure=state[1],
                                  interval_s=STEP, at=iso(at(k)))
    # "origen": probed every 60 s for the first 10 days only, one 10-minute outage.
    for k in range(10 * 1440):
        ok = not 2_000 <= k < 2_010
        ledger.probe_recorded(target="origen", vantage="local", ok=ok,
                              failure=None if ok else "outage", interval_s=60,
                              at=iso(at(k, START, 60)))
    yield site
    ledger.close()


@pytest.mark.slow
def test_synthetic_month_equals_the_truth(month: Site) -> None:
    got = uptime(month.ledger, start=START, end=END, target="cdn")
    down = sum(count for _, count, _ in OUTAGES) * STEP
    assert down == 41 * 60
    assert got.down_seconds == down
    assert got.unknown_seconds == 2 * 3600  # the gap, not down
    assert got.authority_delay_seconds == 90 * 60
    assert got.up_seconds == MONTH - down - 2 * 3600 - 90 * 60
    assert got.up_seconds + got.down_seconds + got.unknown_seconds \
        + got.authority_delay_seconds == MONTH
    assert got.ratio == pytest.approx((MONTH - down - 7200 - 5400) / (MONTH - 7200 - 5400))
    assert got.budget_seconds == pytest.approx(MONTH * 0.001)  # 44 min 38.4 s in December
    assert got.budget_left_seconds == pytest.approx(MONTH * 0.001 - 41 * 60)
    assert [(d.start, d.end, d.failure) for d in got.down] == [
        (at(first), at(first + count), failure) for first, count, failure in OUTAGES]
    assert [d.seconds for d in got.down] == [720, 1500, 240]


@pytest.mark.slow
def test_public_site_and_each_target(month: Site) -> None:
    rep = report(month.cfg, month.ledger, start=START, end=END)
    assert [u.target for u in rep.targets] == ["cdn", "origen"]
    cdn, origen = rep.targets
    assert rep.site.target == SITE and rep.site.targets == ("cdn",)
    for field in ("up_seconds", "down_seconds", "unknown_seconds", "authority_delay_seconds"):
        assert getattr(rep.site, field) == getattr(cdn, field)
    assert rep.site.down == cdn.down
    # origen: 10 days probed (the last result stands 2 minutes), one 10-minute outage.
    assert origen.down_seconds == 600
    assert origen.up_seconds == 10 * 86400 + 120 - 60 - 600
    assert origen.unknown_seconds == MONTH - (10 * 86400 + 60)
    assert origen.ratio == pytest.approx(1 - 600 / (10 * 86400 + 60))
    assert [(d.start, d.end) for d in origen.down] == [(at(2000, START, 60), at(2010, START, 60))]


def test_a_range_inside_the_month_and_the_future(month: Site) -> None:
    first = OUTAGES[1][0]
    mid = at(first + 10)
    got = uptime(month.ledger, start=at(first - 4), end=mid + timedelta(hours=1), target="cdn",
                 now=mid)
    assert got.until == mid
    assert got.down_seconds == 10 * STEP and got.up_seconds == 4 * STEP
    assert got.unknown_seconds == 0  # the hour after "now" is not measured at all
    assert got.budget_seconds == pytest.approx((4 * STEP + 10 * STEP + 3600) * 0.001)


def test_month_range_in_the_site_timezone() -> None:
    now = datetime(2025, 1, 1, 3, 0, tzinfo=UTC)  # still 31 December in Mexico City
    assert month_range(None, ZONE, now) == (START, END)
    assert month_range("2024-12", ZONE, now) == (START, END)
    start, end = month_range("2024-02", ZONE, now)
    assert (end - start).days == 29


def test_vantages_confirm_down_and_can_be_chosen(tmp_path: Path) -> None:
    with Ledger(tmp_path / "l.sqlite") as ledger:
        t0 = datetime(2024, 12, 8, 18, 0, tzinfo=UTC)
        for k in range(20):  # local sees 10:00–10:05 down; the remote agent sees it up
            ledger.probe_recorded(target="cdn", vantage="local", ok=not 5 <= k < 10,
                                  failure=None if not 5 <= k < 10 else "outage", interval_s=30,
                                  at=iso(at(k, t0)))
        for k in range(10):  # the agent probes every 60 s; down at k=8 (both see it down)
            ok = k != 8
            ledger.probe_recorded(target="cdn", vantage="agente", ok=ok,
                                  failure=None if ok else "outage", interval_s=60,
                                  at=iso(at(k, t0, 60)))
        # A second local row at k=16's instant: the later row is the one that stands.
        ledger.probe_recorded(target="cdn", vantage="local", ok=False, failure="stale",
                              interval_s=30, at=iso(at(16, t0)))
        end = t0 + timedelta(minutes=10)
        both = uptime(ledger, start=t0, end=end, target="cdn", now=end)
        local = uptime(ledger, start=t0, end=end, target="cdn", vantage="local", now=end)
        agent = uptime(ledger, start=t0, end=end, target="cdn", vantage="agente", now=end)
    assert local.down_seconds == 150 + 30
    assert agent.down_seconds == 60
    # Only when no vantage saw it up: the agent's minute 8 overlaps local k=16 (stale, 8:00-8:30)
    # and k=17 (up): 30 s down.
    assert both.down_seconds == 30
    assert both.down[0].failure == "stale, outage"
    assert both.unknown_seconds == 0 and both.up_seconds == 570


def test_public_targets_down_while_any_is_down(tmp_path: Path) -> None:
    site = make_site(tmp_path / "d", TARGETS.replace('url = "http://127.0.0.1:8080"',
                                                     'url = "http://127.0.0.1:8080"\npublic = true'))
    t0 = datetime(2024, 12, 8, 18, 0, tzinfo=UTC)
    for k in range(20):
        site.ledger.probe_recorded(target="cdn", vantage="local", ok=k not in (2, 3),
                                   failure=None if k not in (2, 3) else "outage", interval_s=30,
                                   at=iso(at(k, t0)))
        if k < 17:  # origen's last probe at 8:00 stands until 9:00; unknown afterwards
            site.ledger.probe_recorded(target="origen", vantage="local", ok=k not in (3, 4),
                                       failure=None if k not in (3, 4) else "header",
                                       interval_s=30, at=iso(at(k, t0)))
    end = t0 + timedelta(minutes=10)
    rep = report(site.cfg, site.ledger, start=t0, end=end, now=end)
    site.ledger.close()
    assert rep.site.targets == ("cdn", "origen")
    assert rep.site.down_seconds == 90
    assert [(d.start, d.end, d.failure) for d in rep.site.down] == [
        (at(2, t0), at(5, t0), "outage, header")]
    assert rep.site.unknown_seconds == 60  # origen unknown from 9:00: the site is unknown too
    assert rep.site.up_seconds == 600 - 90 - 60


def test_latency_per_target_from_the_successful_probes(tmp_path: Path) -> None:
    """The memoria's latency table: nearest-rank median and p95, maximum; failed probes and
    probes outside the range do not count."""
    site = make_site(tmp_path / "d", TARGETS)
    t0 = datetime(2024, 12, 8, 18, 0, tzinfo=UTC)
    for k in range(1, 21):  # 10, 20, … 200 ms
        site.ledger.probe_recorded(target="cdn", vantage="local", ok=True, interval_s=30,
                                   latency_ms=10.0 * k, at=iso(at(k - 1, t0)))
    site.ledger.probe_recorded(target="cdn", vantage="local", ok=False, failure="outage",
                               interval_s=30, latency_ms=9000.0, at=iso(at(20, t0)))
    site.ledger.probe_recorded(target="cdn", vantage="local", ok=True, interval_s=30,
                               latency_ms=5000.0, at=iso(t0 + timedelta(hours=2)))
    rep = report(site.cfg, site.ledger, start=t0, end=t0 + timedelta(hours=1),
                 now=t0 + timedelta(hours=1)).to_dict()
    site.ledger.close()
    assert rep["latencia"] == [{"objetivo": "cdn", "sondeos": 20, "p50_ms": 100.0,
                                "p95_ms": 190.0, "max_ms": 200.0}]


def test_public_site_fallbacks(tmp_path: Path) -> None:
    site = make_site(tmp_path / "d", TARGETS.replace("public = true\n", ""))
    assert public_targets(site.cfg, ["x"]) == ["cdn"]  # no public target: the first configured
    bare = make_site(tmp_path / "e")
    assert public_targets(bare.cfg, ["agente", "origen"]) == ["origen"]  # none: the embedded
    assert public_targets(bare.cfg, ["b", "z"]) == ["b"]  # or else the ledger's first
    site.ledger.close()
    bare.ledger.close()


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "difusor", *args], capture_output=True,
                          text=True, timeout=120, env={**os.environ, **(env or {})})


@pytest.mark.slow
def test_cli_month_json_and_table(month: Site) -> None:
    done = run("uptime", "--month", "2024-12", "--json", "--config", str(month.config_path))
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    site = doc["sitio_publico"]
    assert site["objetivos"] == ["cdn"]
    assert site["caido_s"] == 2460 and site["desconocido_s"] == 7200
    assert site["retraso_autoridad_s"] == 5400
    assert site["disponible_s"] == MONTH - 2460 - 7200 - 5400
    assert site["presupuesto_s"] == pytest.approx(2678.4)
    assert site["presupuesto_restante_s"] == pytest.approx(218.4)
    assert site["meta_pct"] == pytest.approx(99.9)
    assert [c["segundos"] for c in site["caidas"]] == [720, 1500, 240]
    assert [c["falla"] for c in site["caidas"]] == ["outage", "stale", "integrity"]
    assert doc["desde"] == START.isoformat() and doc["hasta"] == END.isoformat()
    assert [o["objetivo"] for o in doc["objetivos"]] == ["cdn", "origen"]
    table = run("uptime", "--month", "2024-12", "--config", str(month.config_path))
    assert table.returncode == 0, table.stderr
    for text in ("sitio público", "disponible %", "desconocido", "retraso de la autoridad",
                 "presupuesto restante", "99.907 %", "2 h 00 min", "41 min 00 s", "1 h 30 min",
                 "3 min 38 s de 44 min 38 s", "12 min 00 s"):
        assert text in table.stdout, text


@pytest.mark.slow
def test_cli_default_month_stops_at_now(month: Site) -> None:
    now = at(GAP_AFTER + 2)  # inside the monitor gap
    done = run("uptime", "--json", "--config", str(month.config_path),
               env={"DIFUSOR_NOW": now.isoformat()})
    assert done.returncode == 0, done.stderr
    site = json.loads(done.stdout)["sitio_publico"]
    assert site["medido_hasta"] == now.isoformat()
    assert site["desconocido_s"] == 0
    assert site["caido_s"] == 720 + 1500  # the first two outages happened before
    bad = run("uptime", "--month", "2024-13", "--config", str(month.config_path))
    assert bad.returncode == 1 and "AAAA-MM" in bad.stderr
