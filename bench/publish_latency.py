"""Publish latency: from "package complete on disk" to "its main.json is served", difusor vs anchor.

    python bench/publish_latency.py [--quick] [--irimbo-cortes N] [--national-cortes N]
                                    [--national-files N] [--national-changed N] [--no-fsync]

difusor: a long-running in-process ``Publisher`` publishes into the state folder that a running
``difusor serve`` serves. Anchor: the hand-rolled pipeline of ARCHITECTURE.md's field notes
(``unzip``, ``cp -al``, ``rsync --delay-updates``, ``ln -s`` + ``mv -T``) under nginx. Both get the
same packages in the same run, corte by corte, and the clock stops when a separate poller
process (every ~2 ms over HTTP) first gets the new main.json back.

Four cases: Irimbo size (~50 files, ~2 MB) and national size (≥ 20,000 JSON files of 2–5 KB,
~2,000 changed per corte), each with full and with incremental packages. Targets: difusor p95
≤ 250 ms at Irimbo size, and ≥ 5× faster (p50) than the anchor on incremental packages.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import httpx
from harness import (
    BENCH,
    MAIN_CACHE_CONTROL,
    POLLER_ALLOWED,
    BenchError,
    Child,
    DifusorSite,
    free_port,
    guard,
    machine_load,
    make_site,
    open_for_nginx,
    print_load,
    start_difusor,
    start_nginx,
)
from results import percentile, table, write_result
from sites import MAIN_JSON, Corte, NationalSite, irimbo_cortes

NAME = "publish_latency"
IRIMBO_P95_MS = 250.0
INCREMENTAL_SPEEDUP = 5.0
POLL_TIMEOUT = 120.0
NATIONAL_CLOCK = 1000  # national cortes start this many cortes after Irimbo's: always newer
CHECKED_PATHS = 5


@dataclass(frozen=True)
class Case:
    name: str
    site: str  # irimbo | national
    kind: str  # full | incremental
    cortes: int


@dataclass
class Published:
    """What a side reports about one publication (times: ``monotonic_ns``)."""

    stages: dict[str, float] = field(default_factory=dict)  # ms, the anchor's own stages
    live_ns: int | None = None  # activation done (difusor's on_live, the anchor's mv -T)
    returned_ns: int | None = None  # publish() returned (difusor: after finish)
    package_id: int | None = None


@dataclass
class Sample:
    case: str
    side: str
    corte: str
    files: int  # in the site
    package_files: int
    changed: int  # since the previous corte
    package_bytes: int
    served_ms: float
    live_ms: float | None
    returned_ms: float | None
    polls: int
    stages: dict[str, float]
    package_id: int | None = None


class Side(Protocol):
    name: str
    url: str
    drop: Path

    def publish(self, package: Path, corte: Corte, kind: str) -> Published: ...


# -- the two sides ----------------------------------------------------------------------------------

class DifusorSide:
    name = "difusor"

    def __init__(self, site: DifusorSite, drop: Path) -> None:
        self.site = site
        self.url = site.url
        self.drop = drop
        drop.mkdir(parents=True, exist_ok=True)

    def publish(self, package: Path, corte: Corte, kind: str) -> Published:
        done = Published()

        def on_live(_outcome: object) -> None:
            done.live_ns = time.monotonic_ns()

        outcome = self.site.publisher.publish(package, on_live=on_live)
        done.returned_ns = time.monotonic_ns()
        if outcome.status != "published":
            raise BenchError(f"difusor did not publish {package.name}: {outcome.message}")
        done.package_id = outcome.package_id
        return done


class AnchorSide:
    """The field notes' hand-rolled publish, served by nginx with its root on ``current``."""

    name = "anchor"

    def __init__(self, root: Path, port: int) -> None:
        self.root = root
        self.url = f"http://127.0.0.1:{port}"
        self.drop = root / "drop"
        self.releases = root / "releases"
        self.staging = root / "staging"
        self.current = root / "current"
        self.live: str | None = None
        self.previous: str | None = None
        for folder in (self.drop, self.releases, self.staging):
            folder.mkdir(parents=True, exist_ok=True)

    def publish(self, package: Path, corte: Corte, kind: str) -> Published:
        done = Published()
        staging = self.staging / corte.name
        new = self.releases / corte.name
        self._run(done, "unzip", ["unzip", "-q", str(package), "-d", str(staging)])
        if self.live:
            self._run(done, "cp -al", ["cp", "-al", str(self.releases / self.live), str(new)])
        else:
            new.mkdir()
        # --ignore-times: the zips carry one fixed mtime, so rsync's size+mtime check would skip
        # a changed file of unchanged size. A full package mirrors the site (--delete).
        rsync = ["rsync", "-a", "--ignore-times", "--delay-updates"]
        if kind == "full":
            rsync.append("--delete")
        self._run(done, "rsync", [*rsync, f"{staging / corte.name}/", f"{new}/"])
        link = self.root / "current.tmp"
        self._run(done, "swap", ["ln", "-sfn", f"releases/{corte.name}", str(link)])
        self._run(done, "swap", ["mv", "-T", str(link), str(self.current)])
        done.live_ns = time.monotonic_ns()
        self.previous, self.live = self.live, corte.name
        return done

    @staticmethod
    def _run(done: Published, stage: str, argv: list[str]) -> None:
        start = time.perf_counter()
        subprocess.run(argv, check=True, timeout=POLL_TIMEOUT)
        done.stages[stage] = done.stages.get(stage, 0.0) + (time.perf_counter() - start) * 1e3

    def tidy(self) -> None:
        """Off the clock: drop staging and all but the live and previous release."""
        shutil.rmtree(self.staging, ignore_errors=True)
        self.staging.mkdir()
        for entry in os.scandir(self.releases):
            if entry.name not in (self.live, self.previous):
                shutil.rmtree(entry.path, ignore_errors=True)


# -- the poller -------------------------------------------------------------------------------------

class Poller:
    def __init__(self, log: Path) -> None:
        self.child = Child("poller", [sys.executable, str(BENCH / "poller.py")], log,
                           stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)

    def _read(self) -> dict[str, Any]:
        assert self.child.proc.stdout is not None
        line = self.child.proc.stdout.readline()
        if not line:
            raise BenchError(f"the poller exited:\n{self.child.tail()}")
        return dict(json.loads(line))

    def watch(self, url: str, body: bytes) -> None:
        """Start polling; returns once the poller has seen the old bytes still served."""
        assert self.child.proc.stdin is not None
        order = {"url": url + "/" + MAIN_JSON, "sha256": hashlib.sha256(body).hexdigest(),
                 "timeout": POLL_TIMEOUT}
        self.child.proc.stdin.write(json.dumps(order) + "\n")
        self.child.proc.stdin.flush()
        ready = self._read()
        if not ready.get("ready"):
            raise BenchError(f"{url}: {ready.get('error')}")

    def seen(self) -> tuple[int, int]:
        """(monotonic_ns when the new bytes were first served, polls made)."""
        got = self._read()
        if got["t_ns"] is None:
            raise BenchError(f"the new main.json was not served within {POLL_TIMEOUT:.0f} s")
        return int(got["t_ns"]), int(got["polls"])


# -- one timed publication --------------------------------------------------------------------------

def stage_package(side: Side, corte: Corte, data: bytes) -> tuple[Path, Path]:
    """Write the package under a temporary name and make it durable; the rename starts the clock."""
    final = side.drop / f"{corte.name}.zip"
    part = side.drop / f".{corte.name}.zip.part"
    with part.open("wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    return part, final


def timed(side: Side, poller: Poller, case: Case, corte: Corte, data: bytes) -> Sample:
    part, final = stage_package(side, corte, data)
    # Neither side should pay for the other's dirty pages (difusor's syncfs flushes the whole
    # filesystem): start every publication from a clean page cache.
    os.sync()
    poller.watch(side.url, corte.files[MAIN_JSON])
    os.rename(part, final)
    t0 = time.monotonic_ns()
    done = side.publish(final, corte, case.kind)
    seen, polls = poller.seen()
    final.unlink()

    def ms(t: int | None) -> float | None:
        return None if t is None else (t - t0) / 1e6

    in_package = len(corte.files) if case.kind == "full" else len(corte.changed)
    return Sample(case.name, side.name, corte.name, len(corte.files), in_package, len(corte.changed),
                  len(data),
                  (seen - t0) / 1e6, ms(done.live_ns), ms(done.returned_ns), polls, done.stages,
                  done.package_id)


def check_served(side: Side, corte: Corte) -> None:
    """Off the clock: a few changed files and main.json's header, so speed never hides a wrong site."""
    paths = [*sorted(corte.changed)[:CHECKED_PATHS], MAIN_JSON]
    # Plain HTTP on loopback: verify=False skips building a TLS context (~40 ms per client).
    with httpx.Client(base_url=side.url, timeout=10, verify=False) as client:
        for path in paths:
            r = client.get("/" + path, headers={"Accept-Encoding": "identity"})
            if r.status_code != 200 or r.content != corte.files[path]:
                raise BenchError(f"{side.name} serves wrong bytes for /{path} ({r.status_code})")
        cc = client.get("/" + MAIN_JSON).headers.get_list("cache-control")
        if cc != [MAIN_CACHE_CONTROL]:
            raise BenchError(f"{side.name}: /{MAIN_JSON} Cache-Control is {cc}")


def publish_untimed(sides: list[Side], corte: Corte) -> None:
    for side in sides:
        part, final = stage_package(side, corte, corte.package("full"))
        os.rename(part, final)
        side.publish(final, corte, "full")
        final.unlink()
        check_served(side, corte)


# -- the run ------------------------------------------------------------------------------------------

def series(site: str, args: argparse.Namespace) -> Iterator[Corte]:
    if site == "irimbo":
        return irimbo_cortes(0)
    national = NationalSite(args.national_files, args.national_changed)
    return national.cortes(NATIONAL_CLOCK)


def run_cases(cases: list[Case], sides: list[Side], anchor: AnchorSide, poller: Poller,
              args: argparse.Namespace) -> list[Sample]:
    samples: list[Sample] = []
    current, cortes = "", iter(())
    for case in cases:
        if case.site != current:  # a new site goes live first, off the clock, on both sides
            current, cortes = case.site, series(case.site, args)
            publish_untimed(sides, next(cortes))
            anchor.tidy()
        for n in range(case.cortes):
            corte = next(cortes)
            data = corte.package(case.kind)
            # Let the servers finish the last corte (a smoke run only keeps them apart).
            settle = 0.05 if args.quick else 0.25 + len(corte.files) / 10_000
            for side in sides if n % 2 == 0 else sides[::-1]:  # neither side always goes first
                time.sleep(settle)
                sample = timed(side, poller, case, corte, data)
                check_served(side, corte)
                samples.append(sample)
                print(f"  {case.name:22s} {corte.name} {side.name:8s} served {sample.served_ms:9.1f} ms",
                      flush=True)
            anchor.tidy()
    return samples


def ledger_timings(site: DifusorSite, samples: list[Sample]) -> None:
    """Attach each difusor publication's stage timings as the ledger recorded them (ms)."""
    events = site.ledger.events("timings", limit=100_000)
    by_package = {e["package_id"]: e["detail"] or {} for e in events}
    for s in samples:
        if s.side == "difusor":
            s.stages = {k: v * 1e3 for k, v in by_package.get(s.package_id, {}).items()}


def run(root: Path, cases: list[Case], args: argparse.Namespace) -> list[Sample]:
    open_for_nginx(root)
    site = make_site(root / "difusor", POLLER_ALLOWED
                     + ("\n[store]\nfsync = false\n" if args.no_fsync else ""))
    anchor_port = free_port()
    anchor = AnchorSide(root / "anchor", anchor_port)
    difusor = DifusorSide(site, root / "drop-difusor")
    with ExitStack() as stack:  # stops everything in reverse order, whatever happens
        stack.callback(site.close)
        stack.callback(start_difusor(site).stop)
        stack.callback(start_nginx(root / "nginx", anchor_port, anchor.current, access_log=False).stop)
        poller = Poller(root / "poller.log")
        stack.callback(poller.child.stop)
        samples = run_cases(cases, [difusor, anchor], anchor, poller, args)
        ledger_timings(site, samples)
    return samples


# -- the report ----------------------------------------------------------------------------------------

def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else float("nan")


def summarize(cases: list[Case], samples: list[Sample]) -> list[dict[str, Any]]:
    out = []
    for case in cases:
        mine = [s for s in samples if s.case == case.name]
        row: dict[str, Any] = {"case": case.name, "kind": case.kind, "n": case.cortes,
                               "files": round(_mean([s.files for s in mine])),
                               "package_files": round(_mean([s.package_files for s in mine])),
                               "changed": round(_mean([s.changed for s in mine])),
                               "package_mb": _mean([s.package_bytes for s in mine]) / 1e6}
        for side in ("difusor", "anchor"):
            served = [s.served_ms for s in mine if s.side == side]
            row[side] = {"p50_ms": percentile(served, 50), "p95_ms": percentile(served, 95),
                         "mean_ms": _mean(served), "stages_ms": _stages(mine, side)}
        row["speedup_p50"] = row["anchor"]["p50_ms"] / row["difusor"]["p50_ms"]
        row["speedup_p95"] = row["anchor"]["p95_ms"] / row["difusor"]["p95_ms"]
        out.append(row)
    return out


def _stages(samples: list[Sample], side: str) -> dict[str, float]:
    """Mean per stage, plus what happens after activation: the switch to serving it, and (difusor)
    the post-activation work publish() does before it returns. The anchor's live→served can be a
    hair below zero: the poller may see the swap before ``mv``'s exit status reaches us."""
    mine = [s for s in samples if s.side == side]
    names = list(dict.fromkeys(k for s in mine for k in s.stages))
    stages = {k: _mean([s.stages.get(k, 0.0) for s in mine]) for k in names}
    stages["live→served"] = _mean([s.served_ms - s.live_ms for s in mine if s.live_ms is not None])
    if side == "difusor":
        stages["live→returned"] = _mean([s.returned_ms - s.live_ms for s in mine
                                         if s.returned_ms is not None and s.live_ms is not None])
    return stages


def targets(summary: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for row in summary:
        if row["case"].startswith("irimbo"):
            p95 = row["difusor"]["p95_ms"]
            out.append({"target": f"{row['case']}: difusor p95 <= {IRIMBO_P95_MS:.0f} ms",
                        "value": round(p95, 1), "ok": p95 <= IRIMBO_P95_MS})
        if row["kind"] == "incremental":
            out.append({"target": f"{row['case']}: anchor/difusor p50 >= {INCREMENTAL_SPEEDUP:.0f}x",
                        "value": round(row["speedup_p50"], 2),
                        "ok": row["speedup_p50"] >= INCREMENTAL_SPEEDUP})
    return out


def print_report(summary: list[dict[str, Any]], goals: list[dict[str, Any]]) -> None:
    rows = [[r["case"], r["files"], r["package_files"], r["changed"], r["package_mb"], r["n"],
             r["difusor"]["p50_ms"], r["difusor"]["p95_ms"], r["anchor"]["p50_ms"],
             r["anchor"]["p95_ms"], f"{r['speedup_p50']:.1f}x", f"{r['speedup_p95']:.1f}x"]
            for r in summary]
    print()
    print(table(["case", "files", "in pkg", "changed", "pkg MB", "n", "difusor p50", "p95",
                 "anchor p50", "p95", "anchor/difusor p50", "p95"], rows,
                "Publish latency, ms: package complete on disk -> new /json/main.json served"))
    for side, title in (("difusor", "difusor stages, mean ms (ledger 'timings' events, then served)"),
                        ("anchor", "anchor stages, mean ms")):
        names = list(dict.fromkeys(k for r in summary for k in r[side]["stages_ms"]))
        print()
        print(table(["case", *names],
                    [[r["case"], *(r[side]["stages_ms"].get(k, float("nan")) for k in names)]
                     for r in summary], title))
    print()
    for goal in goals:
        print(f"target {goal['target']}: {goal['value']} -> {'meets' if goal['ok'] else 'MISSES'}")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true",
                    help="2 Irimbo and 2 national cortes per case, 250-file national site, "
                         "0.05 s pauses between publications")
    ap.add_argument("--irimbo-cortes", type=int, help="timed cortes per Irimbo case (10; quick 2)")
    ap.add_argument("--national-cortes", type=int, help="timed cortes per national case (5; quick 2)")
    ap.add_argument("--national-files", type=int, help="casilla JSON files (20,000; quick 250)")
    ap.add_argument("--national-changed", type=int, help="files changed per corte (a tenth)")
    ap.add_argument("--no-fsync", action="store_true",
                    help="difusor with [store] fsync = false: what durability costs (the anchor "
                         "never fsyncs)")
    ap.add_argument("--workdir", type=Path, help="where the temporary folders go (system temp)")
    ap.add_argument("--max-seconds", type=int, help="hard limit for the whole run (1800; quick 300)")
    args = ap.parse_args(argv)
    args.irimbo_cortes = args.irimbo_cortes or (2 if args.quick else 10)
    args.national_cortes = args.national_cortes or (2 if args.quick else 5)
    args.national_files = args.national_files or (250 if args.quick else 20_000)
    args.national_changed = args.national_changed or max(1, args.national_files // 10)
    args.max_seconds = args.max_seconds or (300 if args.quick else 1800)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    guard(args.max_seconds)
    cases = [Case("irimbo-full", "irimbo", "full", args.irimbo_cortes),
             Case("irimbo-incremental", "irimbo", "incremental", args.irimbo_cortes),
             Case("national-full", "national", "full", args.national_cortes),
             Case("national-incremental", "national", "incremental", args.national_cortes)]
    load_before = machine_load()
    print_load("before", load_before)
    with tempfile.TemporaryDirectory(prefix="difusor-bench-", dir=args.workdir) as tmp:
        samples = run(Path(tmp), cases, args)
    summary = summarize(cases, samples)
    goals = targets(summary)
    print_report(summary, goals)
    # A run without fsync is a comparison, not the result: it gets its own file.
    path = write_result(NAME + ("_nofsync" if args.no_fsync else ""), {
        "quick": args.quick,
        "settings": {"irimbo_cortes": args.irimbo_cortes, "national_cortes": args.national_cortes,
                     "national_files": args.national_files,
                     "national_changed": args.national_changed, "poll_interval_ms": 2,
                     "difusor_fsync": not args.no_fsync},
        "summary": summary, "targets": goals, "samples": [asdict(s) for s in samples],
        "load_before": load_before,
    })
    print(f"result: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
