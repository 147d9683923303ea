"""The memoria técnica: ``difusor report`` over a month of data and over one Irimbo night.

    python bench/report.py [--quick] [--lines N] [--days D] [--night-lines M]

Part 1, the month: an analytics database of N access-log lines (default 10,000,000: ten hours
of election night, ``analytics_ingest.write_log``) and D days of probes (default 30) of two
monitor targets every 10 s, with a few dozen cortes, an outage and an attack in the night.
Part 2, the night: about M requests (default 100,000, Irimbo size), 36 cortes, an outage and an
attack, probes every 10 s over the night. Each part then runs ``difusor report --output DIR``
over its period as a whole process: wall time, peak RSS (GNU time's, ``harness.run_to_end``:
the largest process) and the peak of the process tree's summed PSS (the report's children — the
renderer, the ledger reader — count too), against the issue's targets (≤ 30 s and ≤ 1.5 GB
for the month, the larger of the two memory figures; ≤ 5 s for the night). The anchor,
in the same run and over the same period: ``difusor analytics summary --json``, the figures the
report is built from, so the report's cost also reads as a multiple of its own input's.

How the data is made, and why: the log lines come from the analytics bench's generator and go in
through ``difusor analytics ingest`` (the path operators use; 10 M lines take about 30 s, far
less than generating them). The probes go into the ledger in one transaction with the SQL of
``Ledger.probe_recorded``: half a million commits one by one would take longer than everything
else and measure nothing the report does; the rounds around the outage go through the monitor's
incident tracker, as ``difusor run`` records them. The cortes are the demo authority's packages
through a real publisher, and the attack is a flood fed to the shield service. The ledger stamps
rows with the wall clock, so while the night is built its clock is moved to the night
(``NightClock``): receptions and events fall in the period the report covers.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
from contextlib import ExitStack, suppress
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from unittest import mock
from zoneinfo import ZoneInfo

from analytics_ingest import START, difusor, write_log
from harness import DifusorSite, guard, machine_load, make_site, print_load, run_to_end
from results import table, write_result

from difusor.demo.election import SyntheticElection
from difusor.demo.packages import write_package
from difusor.errors import PackageRefused
from difusor.monitor.incidents.tracker import IncidentTracker
from difusor.monitor.probe import ProbeResult
from difusor.shield.service import Shield

NAME = "report"
TARGET_MONTH_S = 30.0
TARGET_MONTH_MB = 1536.0
TARGET_NIGHT_S = 5.0
ZONE = ZoneInfo("America/Mexico_City")
PROBE_STEP = 10  # seconds between probes (and each probe's interval_s)
TARGETS = ("cdn", "origen")
CORTE_START = datetime(2024, 12, 8, 20, 0, tzinfo=ZONE)  # the log's night starts 19:30 (START)
OUTAGE = (datetime(2024, 12, 8, 21, 41, tzinfo=ZONE), datetime(2024, 12, 8, 21, 53, tzinfo=ZONE))
ATTACK = datetime(2024, 12, 8, 22, 30, tzinfo=ZONE)
EXTRA_TOML = """
[monitor]
interval = 10

[shield]
attack_rate = 500
attack_quiet = 5

[[monitor.targets]]
name = "cdn"
url = "https://prep.example.mx"
public = true

[[monitor.targets]]
name = "origen"
url = "http://127.0.0.1:8080"
"""
_PROBE_SQL = ("INSERT INTO probes(at, target, vantage, ok, failure, status, latency_ms, corte,"
              " interval_s, message, detail) VALUES (?,?,?,?,?,?,?,?,?,?,?)")
FLOOD_UA = "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:133.0) Gecko/20100101 Firefox/133.0"


class NightClock:
    """``utcnow`` for the ledger while the night is built: a set moment plus the real time
    elapsed since (publication lags stay real)."""

    MODULES = ("difusor.ledger.events", "difusor.ledger.incidents", "difusor.ledger.packages",
               "difusor.ledger.releases", "difusor.ledger.probes", "difusor.publish.publisher",
               "difusor.monitor.incidents.tracker")

    def __init__(self) -> None:
        self.at, self.started = START, time.monotonic()

    def set(self, when: datetime) -> None:
        self.at, self.started = when, time.monotonic()

    def __call__(self) -> str:
        now = self.at + timedelta(seconds=time.monotonic() - self.started)
        return now.astimezone(UTC).isoformat(timespec="microseconds")


def iso(when: datetime) -> str:
    return when.astimezone(UTC).isoformat(timespec="microseconds")


def publish_cortes(site: DifusorSite, clock: NightClock, count: int) -> None:
    """The demo authority's packages every 10 min, received 70 s after each corte; one cut
    short (refused)."""
    folder = site.root / "paquetes"
    for corte in SyntheticElection(start=CORTE_START).cortes(count):
        path = write_package(corte, folder, kind="full" if corte.number == 1 else "incremental")
        clock.set(corte.when + timedelta(seconds=70))
        site.publisher.publish(path)
        if corte.number == 3:
            broken = folder / f"{corte.stamp}_roto.zip"
            broken.write_bytes(path.read_bytes()[:300])
            with suppress(PackageRefused):  # refused, as it should be
                site.publisher.publish(broken)


def record_probes(site: DifusorSite, clock: NightClock, start: datetime, end: datetime) -> int:
    """Probes of both targets every 10 s over [start, end); the public one down in OUTAGE."""
    rng = random.Random(10)
    rows: list[tuple[Any, ...]] = []
    t = start
    while t < end:
        at = iso(t)
        for target in TARGETS:
            down = target == "cdn" and OUTAGE[0] <= t < OUTAGE[1]
            rows.append((at, target, "local", int(not down), "outage" if down else None,
                         None if down else 200, None if down else round(rng.uniform(20, 90), 1),
                         None, PROBE_STEP, "conexión rechazada" if down else "ok", None))
        t += timedelta(seconds=PROBE_STEP)
    with site.ledger._write() as db:  # one transaction (see the module docstring)
        db.executemany(_PROBE_SQL, rows)
    # The rounds around the outage through the tracker: the monitor's incident, as recorded live.
    tracker = IncidentTracker(site.cfg, site.ledger)
    t = OUTAGE[0] - timedelta(minutes=2)
    while t < OUTAGE[1] + timedelta(minutes=2):
        clock.set(t)
        down = t < OUTAGE[1]
        result = ProbeResult("cdn", not down, "outage" if down else None, None if down else 200,
                             None if down else 40.0, None, "conexión rechazada" if down else "ok",
                             {"error": "conexión rechazada"} if down else {})
        tracker.observe(result, iso(t), interval_s=PROBE_STEP)
        t += timedelta(seconds=PROBE_STEP)
    return len(rows)


def attack(site: DifusorSite, clock: NightClock) -> list[str]:
    """12 s of 200 addresses at 15 requests/s through the shield service (read 5 times a
    second); returns the flood as combined log lines with the statuses the server gave."""
    shield = Shield(site.cfg, site.ledger)
    shield.enforcers = []  # the embedded server reads the decisions file itself
    rng = random.Random(4)
    start = ATTACK.timestamp()
    combined: list[str] = []
    for k in range(60):
        now = start + (k + 1) * 0.2
        clock.set(datetime.fromtimestamp(now, UTC))
        chunk = []
        for i in range(200):
            ip = f"45.{10 + i // 100}.{i % 100}.9"
            status = 403 if ip in shield.detector.bans else (
                429 if ip in shield.detector.throttles else 200)
            for _ in range(3):
                t = datetime.fromtimestamp(start + k * 0.2 + rng.random() * 0.2, UTC)
                # The server's own line for the shield, a combined one for the generated log.
                chunk.append(json.dumps({
                    "time": t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z",
                    "ip": ip, "method": "GET", "path": "/", "query": "", "status": status,
                    "bytes": 0, "user_agent": FLOOD_UA}))
                stamp = t.astimezone(ZONE).strftime("%d/%b/%Y:%H:%M:%S -0600")
                combined.append(f'{ip} - - [{stamp}] "GET / HTTP/1.1" {status} 0 "-" '
                                f'"{FLOOD_UA}"\n')
        shield.step(("\n".join(chunk) + "\n").encode(), now=now)
    for k in range(100):  # calm: attack mode ends by itself
        now = start + 12 + k * 0.25
        clock.set(datetime.fromtimestamp(now, UTC))
        shield.step(b"", now=now)
    return combined


def build(root: Path, *, lines: int, hours: float, probes: tuple[datetime, datetime],
          cortes: int) -> tuple[DifusorSite, dict[str, Any]]:
    """A site with its ledger (cortes, probes, incidents) and its analytics database."""
    site = make_site(root, EXTRA_TOML)
    clock = NightClock()
    began = time.perf_counter()
    with ExitStack() as patches:
        for module in NightClock.MODULES:
            patches.enter_context(mock.patch(f"{module}.utcnow", clock))
        publish_cortes(site, clock, cortes)
        probe_rows = record_probes(site, clock, *probes)
        flood = attack(site, clock)
    site.close()
    ledger_s = time.perf_counter() - began
    log = root / "access.log"
    began = time.perf_counter()
    # The flood is part of the traffic: the generator writes the rest of the lines.
    made = write_log(log, max(1_000, lines - len(flood)), seed=2025, hours=hours)
    with log.open("a") as f:
        f.writelines(flood)
    generate_s = time.perf_counter() - began
    ingest = run_to_end(difusor(site.config_path, "ingest", str(log), "--format", "combined"),
                        root / "ingest.err")
    log.unlink()
    print(f"  {made['lines'] + len(flood):,} log lines (generated in {generate_s:.1f} s, "
          f"ingested in {ingest['seconds']:.1f} s), {probe_rows:,} probes, {cortes} cortes "
          f"(ledger built in {ledger_s:.1f} s)", flush=True)
    return site, {"lines": made["lines"] + len(flood), "probes": probe_rows, "cortes": cortes,
                  "ingest": ingest, "generate_seconds": generate_s, "ledger_seconds": ledger_s}


def _session_pss_kb(session: int) -> int:
    """The PSS (shared pages counted once) of every process in ``session``, in KiB."""
    total = 0
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        with suppress(OSError, IndexError, ValueError):
            with open(f"/proc/{entry.name}/stat") as f:
                if int(f.read().rsplit(")", 1)[1].split()[3]) != session:
                    continue
            with open(f"/proc/{entry.name}/smaps_rollup") as f:
                total += next(int(line.split()[1]) for line in f if line.startswith("Pss:"))
    return total


def timed_tree(argv: list[str], log: Path, stdout: Path | None = None) -> dict[str, Any]:
    """``run_to_end`` (wall time; the peak resident memory of the command's largest process)
    and the peak of the whole tree's memory — the command and its children (the report's
    renderer and ledger reader) — as the sum of their PSS, sampled every 0.1 s."""
    peak = [0]

    def sample(pid: int) -> None:
        peak[0] = max(peak[0], _session_pss_kb(pid))

    measured = run_to_end(argv, log, stdout, sample)
    return {**measured, "tree_peak_pss_mb": peak[0] / 1024}


def measure(site: DifusorSite, root: Path, period: tuple[datetime, datetime]) -> dict[str, Any]:
    """The anchor (summary) and the report over the same period, each as its own process."""
    bounds = ["--from", period[0].isoformat(), "--to", period[1].isoformat()]
    summary = timed_tree(difusor(site.config_path, "summary", "--json", *bounds),
                         root / "run.err", stdout=root / "summary.json")
    out = root / "memoria"
    argv = [sys.executable, "-m", "difusor", "report", "--output", str(out), *bounds,
            "--config", str(site.config_path)]
    report = timed_tree(argv, root / "run.err")
    pdf = out / "memoria-tecnica.pdf"
    return {"summary": summary, "report": report, "ratio": report["seconds"] / summary["seconds"],
            "pdf_bytes": pdf.stat().st_size if pdf.exists() else 0,
            "html_bytes": (out / "memoria-tecnica.html").stat().st_size
            if (out / "memoria-tecnica.html").exists() else 0}


def part(root: Path, name: str, *, lines: int, hours: float, probes: tuple[datetime, datetime],
         cortes: int) -> dict[str, Any]:
    print(f"{name}:", flush=True)
    site, data = build(root / name, lines=lines, hours=hours, probes=probes, cortes=cortes)
    result = measure(site, root / name, probes)
    print(f"  report {result['report']['seconds']:.2f} s, {result['report']['peak_rss_mb']:.0f} MB"
          f" (tree PSS {result['report']['tree_peak_pss_mb']:.0f} MB); summary "
          f"{result['summary']['seconds']:.2f} s", flush=True)
    return {"data": data, **result}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="small data (smoke test)")
    ap.add_argument("--lines", type=int, help="log lines of the month (default 10,000,000)")
    ap.add_argument("--days", type=int, help="days of probes of the month (default 30)")
    ap.add_argument("--night-lines", type=int, help="log lines of the night (default 100,000)")
    args = ap.parse_args(argv)
    lines = args.lines or (40_000 if args.quick else 10_000_000)
    days = args.days or (1 if args.quick else 30)
    night_lines = args.night_lines or (10_000 if args.quick else 100_000)
    guard(240 if args.quick else 3600)
    night_start = START.replace(hour=19, minute=0)
    month_end = night_start + timedelta(days=1)
    load_before = machine_load()
    print_load("before", load_before)
    with tempfile.TemporaryDirectory(prefix="difusor-bench-") as tmp:
        month = part(Path(tmp), "mes", lines=lines, hours=10.0, cortes=6 if args.quick else 36,
                     probes=(month_end - timedelta(days=days), month_end))
        night = part(Path(tmp), "noche", lines=night_lines, hours=8.0,
                     cortes=6 if args.quick else 36,
                     probes=(night_start, night_start + timedelta(hours=14)))
    load_after = machine_load()
    print_load("after", load_after)
    rows = [[f"month: {month['data']['lines']:,} lines, {days} days of probes",
             month["report"]["seconds"], month["report"]["peak_rss_mb"],
             month["report"]["tree_peak_pss_mb"],
             f"≤ {TARGET_MONTH_S:.0f} s, ≤ {TARGET_MONTH_MB:.0f} MB", month["ratio"]],
            [f"night: {night['data']['lines']:,} lines", night["report"]["seconds"],
             night["report"]["peak_rss_mb"], night["report"]["tree_peak_pss_mb"],
             f"≤ {TARGET_NIGHT_S:.0f} s", night["ratio"]]]
    print(table(["difusor report", "seconds", "peak RSS MB", "tree PSS MB", "target",
                 "× summary"], rows,
                "memoria técnica (anchor: analytics summary --json, same period, same run)"))
    month_mb = max(month["report"]["peak_rss_mb"], month["report"]["tree_peak_pss_mb"])
    meets = {"month_seconds": month["report"]["seconds"] <= TARGET_MONTH_S,
             "month_memory": month_mb <= TARGET_MONTH_MB,
             "night_seconds": night["report"]["seconds"] <= TARGET_NIGHT_S}
    for part_name, p in (("month", month), ("night", night)):
        print(f"{part_name}: report {p['report']['seconds']:.1f} s = {p['ratio']:.1f}× the summary "
              f"({p['summary']['seconds']:.1f} s, {p['summary']['peak_rss_mb']:.0f} MB)")
    print("targets: " + ", ".join(f"{k} {'met' if v else 'MISSED'}" for k, v in meets.items()))
    path = write_result(NAME, {
        "quick": args.quick, "month": month, "night": night, "meets_target": all(meets.values()),
        "meets": meets, "targets": {"month_seconds": TARGET_MONTH_S,
                                    "month_peak_rss_mb": TARGET_MONTH_MB,
                                    "night_seconds": TARGET_NIGHT_S},
        "load_before": load_before, "load_after": load_after,
    })
    print(f"result: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
