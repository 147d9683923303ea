"""Verify speed: ``difusor verify URL --all`` of a national corte against ``wget -r`` of its files.

    python bench/verify.py [--quick] [--files N] [--pairs N] [--no-nginx] [--workdir DIR]
                           [--wget-dir DIR]

Issue 23's target: a full ``verify --all`` of a 20,000-file national corte over loopback costs
≤ 1.5× fetching the same files with ``wget -r`` from the same server, in the same run.

The corte is NationalSite's first corte (20,000 casilla JSON files of 2–5 KB, main.json and the
static assets) plus one page, ``LISTING``, that links every other file. The page is there only so
that the anchor is literally ``wget -r``: a recursive crawl needs links to follow, and a real
corte is the authority's package, never modified. This one is synthetic, made here, so adding the
page is fair; both sides fetch it (it is in the manifest, so verify checks it too). The package is
published in-process (the harness's ``make_site``: what ``difusor init`` makes) and served by
``difusor serve`` (2 workers, access log on) on a free loopback port; unless ``--no-nginx``,
also by nginx with the configuration ``difusor nginx-config`` generates, its ``limit_req`` raised
(from one loopback address both commands are one very busy client), as a second row.

Each round is one pair in alternating order (neither side always runs first): the anchor

    wget -r -l 1 -nH -np -q -e robots=off -P DIR URL/LISTING

and the whole command a user runs, ``python -m difusor verify URL --all --json``, each timed from
start to exit. wget must have saved every file of the corte (counted on disk, bytes summed);
verify must report ``ok`` with ``checked == files ==`` the corte's files. What each costs in CPU
is recorded too: the client's (rusage of the finished child) and the server's (its process
group, from /proc). Not alike on purpose, as each is used: wget asks for no compression, one
connection at a time, and writes every file to disk; verify asks for what a visitor gets
(``br``/``gzip``, decoded, then hashed), two kept-alive connections, and writes nothing. wget saves
into a tmpfs (``/dev/shm`` when there is one; ``--wget-dir``): on this machine's ext4 its system
time grew round after round (3.8 → 14 s over four rounds of 20,000 files, deleted in between),
which would flatter verify; in memory the anchor is steadier and faster, the stricter comparison.

The ratio is the median of verify's times over the median of wget's; the target is checked on
the embedded server's row. ``--quick`` (the suite's smoke test): 500 files, 1 pair, no
warm-up, no target.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx
from harness import (
    BenchError,
    Child,
    DifusorSite,
    free_port,
    group_cpu_seconds,
    guard,
    machine_load,
    make_site,
    open_for_nginx,
    print_load,
    publish_files,
    start_difusor,
    start_generated_nginx,
)
from results import table, write_result
from sites import NationalSite, listing_page

NAME = "verify"
TARGET = 1.5  # verify / wget, medians, at most
LISTING = "bench-archivos.html"
CLOCK = 2000  # corte index on the sites.py clock (any: this site has one corte)
WGET = ["wget", "-r", "-l", "1", "-nH", "-np", "-q", "-e", "robots=off"]
SHM = Path("/dev/shm")
NGINX_RATE = 1_000_000  # requests/s per address: limit_req never refuses the bench's client


@dataclass
class Run:
    server: str
    round: int  # 0: the warm-up, not counted
    side: str  # wget | verify
    seconds: float
    client_cpu_s: float  # user + system
    client_sys_s: float  # of which system (wget writes every file; verify writes nothing)
    server_cpu_s: float
    files: int  # fetched (wget: saved on disk; verify: checked)
    bytes: int  # wget: saved on disk; verify: 0 (it does not say)


# -- the corte ----------------------------------------------------------------------------------

def build_corte(casillas: int) -> tuple[str, dict[str, bytes]]:
    """(package stem, path → bytes): NationalSite's first corte plus the page that links it all."""
    corte = next(NationalSite(casillas, changed=1).cortes(CLOCK))
    files = dict(corte.files)
    files[LISTING] = listing_page(sorted(files))
    return corte.name, files


def check_manifest(url: str, files: dict[str, bytes]) -> str:
    """Off the clock: the live corte's manifest lists exactly the files we published."""
    with httpx.Client(base_url=url, timeout=30, verify=False) as client:
        chain = client.get("/_difusor/cortes.json").json()
        corte = chain["entradas"][-1]["corte"]
        manifest = client.get(f"/_difusor/manifest/{corte}.json").json()
    listed = {f[0] for f in manifest["archivos"]}
    if listed != set(files):
        raise BenchError(f"{url}: the manifest of {corte} lists {len(listed):,} files, "
                         f"{len(listed ^ set(files)):,} unlike the {len(files):,} published")
    return str(corte)


# -- the two commands -----------------------------------------------------------------------------

Timed = tuple[float, float, float, float]  # wall, client CPU, client system CPU, server CPU (s)


def _timed(argv: list[str], server: Child, timeout: float
           ) -> tuple[subprocess.CompletedProcess[str], Timed]:
    """The finished command and what it cost (``Timed``)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    served = group_cpu_seconds(server)
    start = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    system = after.ru_stime - before.ru_stime
    cpu = after.ru_utime - before.ru_utime + system
    return done, (wall, cpu, system, group_cpu_seconds(server) - served)


def wget_argv(url: str, into: Path) -> list[str]:
    return [*WGET, "-P", str(into), f"{url}/{LISTING}"]


def run_wget(url: str, server: Child, work: Path, files: dict[str, bytes], timeout: float
             ) -> tuple[Timed, int, int]:
    into = work / "wget"
    shutil.rmtree(into, ignore_errors=True)
    done, cost = _timed(wget_argv(url, into), server, timeout)
    if done.returncode != 0:
        raise BenchError(f"wget exited {done.returncode}:\n{done.stderr[-2000:]}")
    saved = [p for p in into.rglob("*") if p.is_file()]
    count, size = len(saved), sum(p.stat().st_size for p in saved)
    want = sum(len(b) for b in files.values())
    if count != len(files) or size != want:  # an anchor that skipped files would flatter it
        raise BenchError(f"wget saved {count:,} files ({size:,} bytes), not the corte's "
                         f"{len(files):,} ({want:,} bytes)")
    shutil.rmtree(into)  # off the clock
    return cost, count, size


def verify_argv(url: str) -> list[str]:
    return [sys.executable, "-m", "difusor", "verify", url, "--all", "--json"]


def run_verify(url: str, server: Child, files: dict[str, bytes], timeout: float
               ) -> tuple[Timed, int, int]:
    done, cost = _timed(verify_argv(url), server, timeout)
    try:
        report = json.loads(done.stdout)
    except ValueError:
        raise BenchError(f"verify exited {done.returncode} without a JSON report:\n"
                         f"{done.stderr[-2000:]}") from None
    if done.returncode != 0 or not report["ok"] or not \
            report["checked"] == report["files"] == len(files):
        raise BenchError(f"verify did not check every file and pass: ok {report['ok']}, checked "
                         f"{report['checked']:,} of {report['files']:,} (corte: {len(files):,}), "
                         f"problems {report['problems'][:3]}, mismatches "
                         f"{report['mismatches'][:3]}")
    return cost, int(report["checked"]), 0


# -- the run --------------------------------------------------------------------------------------

def measure(server: str, url: str, child: Child, work: Path, files: dict[str, bytes],
            args: argparse.Namespace) -> list[Run]:
    sides: dict[str, Callable[[], tuple[Timed, int, int]]] = {
        "wget": lambda: run_wget(url, child, work, files, args.timeout),
        "verify": lambda: run_verify(url, child, files, args.timeout),
    }
    runs = []
    first = 1 if args.quick else 0  # round 0 warms the page cache, connections and bytecode
    for n in range(first, args.pairs + 1):
        for side in ("wget", "verify") if n % 2 == 1 else ("verify", "wget"):
            (wall, cpu, system, served), count, size = sides[side]()
            runs.append(Run(server, n, side, wall, cpu, system, served, count, size))
            label = "warm-up" if n == 0 else f"round {n}"
            print(f"  {server:8s} {label:8s} {side:7s} {wall:7.2f} s  client CPU {cpu:6.2f} s "
                  f"(system {system:5.2f})  server CPU {served:6.2f} s  {count:,} files",
                  flush=True)
    return runs


def run(root: Path, files: dict[str, bytes], stem: str, args: argparse.Namespace
        ) -> tuple[list[Run], dict[str, str]]:
    open_for_nginx(root)
    site: DifusorSite = make_site(root / "difusor")
    runs: list[Run] = []
    urls: dict[str, str] = {}
    with ExitStack() as stack:  # stops everything in reverse order, whatever happens
        stack.callback(site.close)
        started = time.perf_counter()
        publish_files(site, f"{stem}.zip", files)
        print(f"published {len(files):,} files in {time.perf_counter() - started:.1f} s",
              flush=True)
        servers: dict[str, Child] = {}
        servers["difusor"] = start_difusor(site)
        stack.callback(servers["difusor"].stop)
        urls["difusor"] = site.url
        if not args.no_nginx:
            open_for_nginx(*[p for p in root.rglob("*") if p.is_dir()])
            port = free_port()
            servers["nginx"] = start_generated_nginx(site, root / "nginx", port,
                                                     limit_req_rate=NGINX_RATE)
            stack.callback(servers["nginx"].stop)
            urls["nginx"] = f"http://127.0.0.1:{port}"
        for name, url in urls.items():
            corte = check_manifest(url, files)
            print(f"{name}: {url} serves corte {corte}", flush=True)
        saves = Path(tempfile.mkdtemp(prefix="difusor-bench-wget-", dir=args.wget_dir))
        stack.callback(shutil.rmtree, saves, ignore_errors=True)
        for name, url in urls.items():
            runs += measure(name, url, servers[name], saves, files, args)
    return runs, urls


# -- the report -----------------------------------------------------------------------------------

def summarize(runs: list[Run]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for server in dict.fromkeys(r.server for r in runs):
        counted = [r for r in runs if r.server == server and r.round > 0]
        row: dict[str, Any] = {}
        for side in ("wget", "verify"):
            mine = [r for r in counted if r.side == side]
            row[side] = {"median_s": statistics.median(r.seconds for r in mine),
                         "min_s": min(r.seconds for r in mine),
                         "max_s": max(r.seconds for r in mine),
                         "client_cpu_s": statistics.median(r.client_cpu_s for r in mine),
                         "client_sys_s": statistics.median(r.client_sys_s for r in mine),
                         "server_cpu_s": statistics.median(r.server_cpu_s for r in mine),
                         "files": mine[0].files}
        pairs = {r.round: {} for r in counted}
        for r in counted:
            pairs[r.round][r.side] = r.seconds
        row["ratio"] = row["verify"]["median_s"] / row["wget"]["median_s"]
        row["pair_ratios"] = [p["verify"] / p["wget"] for p in pairs.values()]
        out[server] = row
    return out


def print_report(summary: dict[str, dict[str, Any]], args: argparse.Namespace) -> None:
    rows = []
    for server, row in summary.items():
        for side in ("wget", "verify"):
            s = row[side]
            rows.append([f"{server} / {side}", s["files"], s["median_s"], s["min_s"], s["max_s"],
                         s["client_cpu_s"], s["client_sys_s"], s["server_cpu_s"]])
    print()
    print(table(["server / command", "files", "median s", "min", "max", "client CPU s",
                 "of it system", "server CPU s"], rows,
                f"Whole-command time over loopback, {args.pairs} alternating pairs "
                f"(CPU: medians)"))
    print()
    for server, row in summary.items():
        pairs = ", ".join(f"{r:.2f}" for r in row["pair_ratios"])
        line = f"ratio verify/wget, {server}: {row['ratio']:.2f}  (pairs: {pairs})"
        if server == "difusor":
            verdict = "not enforced (--quick)" if args.quick else (
                "PASS" if row["ratio"] <= TARGET else "FAIL")
            line += f"  target <= {TARGET}: {verdict}"
        print(line)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true",
                    help="2,000 files, 2 pairs, no warm-up, no target (smoke test)")
    ap.add_argument("--files", type=int, help="casilla JSON files (20,000; quick 500)")
    ap.add_argument("--pairs", type=int, help="timed (wget, verify) pairs per server (5; quick 1)")
    ap.add_argument("--no-nginx", action="store_true",
                    help="only the embedded server (skip the generated nginx configuration)")
    ap.add_argument("--workdir", type=Path, help="where the temporary folders go (system temp)")
    ap.add_argument("--wget-dir", type=Path, default=SHM if SHM.is_dir() else None,
                    help="where wget saves the files (/dev/shm: a tmpfs; else the system temp)")
    ap.add_argument("--max-seconds", type=int, help="hard limit for the whole run (1800; quick 240)")
    args = ap.parse_args(argv)
    args.files = args.files or (500 if args.quick else 20_000)
    args.pairs = args.pairs or (1 if args.quick else 5)
    args.max_seconds = args.max_seconds or (240 if args.quick else 1800)
    args.timeout = 300.0  # one command
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    guard(args.max_seconds)
    if not shutil.which("wget"):
        raise SystemExit("falta wget (apt-get install wget)")
    load_before = machine_load()
    print_load("before", load_before)
    started = time.perf_counter()
    stem, files = build_corte(args.files)
    print(f"corte {stem}: {len(files):,} files, {sum(map(len, files.values())) / 1e6:.1f} MB, "
          f"built in {time.perf_counter() - started:.1f} s", flush=True)
    with tempfile.TemporaryDirectory(prefix="difusor-bench-", dir=args.workdir) as tmp:
        runs, urls = run(Path(tmp), files, stem, args)
    summary = summarize(runs)
    print_report(summary, args)
    load_after = machine_load()
    print_load("after", load_after)
    ratio = summary["difusor"]["ratio"]
    path = write_result(NAME, {
        "quick": args.quick,
        "settings": {"casillas": args.files, "files": len(files),
                     "bytes": sum(map(len, files.values())), "pairs": args.pairs,
                     "warmup": not args.quick, "listing": LISTING,
                     "wget_dir": str(args.wget_dir or tempfile.gettempdir()),
                     "servers": {"difusor": "difusor serve (defaults: 2 workers, access log)",
                                 **({"nginx": f"difusor nginx-config, limit_req_rate "
                                              f"{NGINX_RATE}"} if "nginx" in urls else {})}},
        "anchor": " ".join(wget_argv("URL", Path("DIR"))),
        "command": " ".join(["python", *verify_argv("URL")[1:]]),
        "summary": summary, "runs": [asdict(r) for r in runs],
        "ratio": ratio, "target": TARGET, "meets_target": ratio <= TARGET,
        "load_before": load_before, "load_after": load_after,
        "seconds": round(time.perf_counter() - started, 1), "cpus": os.cpu_count(),
    })
    print(f"result: {path}  ({time.perf_counter() - started:.0f} s in all)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
