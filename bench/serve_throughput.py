"""Requests/s on /json/main.json: ``difusor serve`` against nginx, both logging every request.

    python bench/serve_throughput.py [--quick] [--duration S] [--rounds N]

Both servers run side by side over the same published corte (nginx's root is the store's
``site`` symlink) and take turns under ``wrk -t1 -c64``, so drift on the machine hits both
alike. Before measuring, each must answer 200 with the convocatoria's exact Cache-Control and
the published bytes; then each gets a 1 s warm-up run (none with ``--quick``, a smoke test of
2 rounds of 1 s). The target is difusor ≥ 0.8 × nginx (medians over the rounds).
"""

from __future__ import annotations

import argparse
import hashlib
import re
import signal
import statistics
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx
from harness import (
    MAIN_CACHE_CONTROL,
    BenchError,
    Child,
    DifusorSite,
    free_port,
    guard,
    machine_load,
    make_site,
    nginx_conf,
    open_for_nginx,
    print_load,
    publish_files,
    start_difusor,
    start_nginx,
    wait_serving,
)
from results import table, write_result
from sites import main_json_payload, throughput_site

NAME = "serve_throughput"
PATH = "/json/main.json"
TARGET = 0.8
_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}


@dataclass
class Run:
    server: str
    round: int
    rps: float
    p50_ms: float
    p99_ms: float
    requests: int
    errors: int


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true",
                    help="2 rounds of 1 s, no warm-up (smoke test)")
    ap.add_argument("--duration", type=int, help="seconds per wrk run (default 10, quick 1)")
    ap.add_argument("--rounds", type=int, help="rounds per server (default 3, quick 2)")
    ap.add_argument("--connections", type=int, default=64)
    args = ap.parse_args(argv)
    args.duration = args.duration or (1 if args.quick else 10)
    args.rounds = max(2, args.rounds or (2 if args.quick else 3))
    return args


# -- checking and loading the servers ---------------------------------------------------------

def verify(url: str, payload: bytes) -> dict[str, Any]:
    """200, exactly one Cache-Control with the required value, and the published bytes."""
    r = httpx.get(url + PATH, timeout=5)
    found = r.headers.get_list("cache-control")
    check = {"status": r.status_code, "cache_control": found, "bytes_match": r.content == payload}
    if r.status_code != 200 or found != [MAIN_CACHE_CONTROL] or r.content != payload:
        raise BenchError(f"{url}{PATH} does not answer as required: {check}")
    return check


def wrk(url: str, seconds: int, connections: int, cpu: int | None = None) -> dict[str, float]:
    """``wrk -t1`` on main.json; ``cpu`` holds it to that core (``taskset``)."""
    argv = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", url + PATH]
    if cpu is not None:
        argv = ["taskset", "-c", str(cpu), *argv]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 30, check=True)
    return parse_wrk(done.stdout)


def parse_wrk(text: str) -> dict[str, float]:
    rps = re.search(r"Requests/sec:\s+([\d.]+)", text)
    total = re.search(r"(\d+) requests in", text)
    if not rps or not total:
        raise BenchError(f"unexpected wrk output:\n{text}")
    latency = {q: _ms(v, u) for q, v, u in re.findall(r"^\s+(50|99)%\s+([\d.]+)(us|ms|s|m)\b",
                                                     text, re.M)}
    socket = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    status = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    errors = sum(int(n) for n in socket.groups()) if socket else 0
    errors += int(status.group(1)) if status else 0
    return {"rps": float(rps.group(1)), "requests": int(total.group(1)), "errors": errors,
            "p50_ms": latency.get("50", float("nan")), "p99_ms": latency.get("99", float("nan"))}


def _ms(value: str, unit: str) -> float:
    return float(value) * _UNITS[unit]


def measure(servers: dict[str, str], args: argparse.Namespace) -> list[Run]:
    if not args.quick:  # warm-up: connections, page cache, allocators settle first
        for url in servers.values():
            wrk(url, 1, args.connections)
    runs = []
    names = list(servers)
    for n in range(args.rounds):
        # Alternate who goes first, so neither always runs on a machine just heated by the other.
        for name in names if n % 2 == 0 else names[::-1]:
            got = wrk(servers[name], args.duration, args.connections)
            run = Run(name, n + 1, got["rps"], got["p50_ms"], got["p99_ms"], int(got["requests"]),
                      int(got["errors"]))
            print(f"  round {run.round} {name:8s} {run.rps:10,.0f} req/s  p50 {run.p50_ms:.2f} ms  "
                  f"p99 {run.p99_ms:.2f} ms", flush=True)
            runs.append(run)
    return runs


def count_lines(path: Path) -> int:
    n = 0
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            n += chunk.count(b"\n")
    return n


def start_difusor_config(config: Path, url: str) -> Child:
    argv = [sys.executable, "-m", "difusor", "serve", "--config", str(config)]
    child = Child("difusor serve", argv, config.with_suffix(".out"))
    wait_serving(child, url + "/_difusor/health")
    return child


# -- the run ------------------------------------------------------------------------------------

def with_workers(site: DifusorSite, workers: int) -> tuple[Path, str]:
    """Another config over the same published corte: its own port and number of workers."""
    port = free_port()
    text = site.config_path.read_text()
    web = re.search(r'(?m)^\[web\]\nlisten = "[^"]+"\nworkers = \d+$', text)
    if web is None:
        raise BenchError(f"unexpected [web] section in {site.config_path}")
    text = text.replace(web.group(), f'[web]\nlisten = "127.0.0.1:{port}"\nworkers = {workers}')
    path = site.config_path.with_name(f"difusor-{workers}w.toml")
    path.write_text(text)
    return path, f"http://127.0.0.1:{port}"


def run_servers(root: Path, site: DifusorSite, payload: bytes, args: argparse.Namespace
                ) -> dict[str, Any]:
    """The target compares like with like: difusor with one worker against nginx's one worker.
    difusor's default (two workers) is measured too and reported beside it."""
    nginx_port = free_port()
    one_cfg, one_url = with_workers(site, 1)
    servers = {"difusor": one_url, "difusor_default": site.url,
               "nginx": f"http://127.0.0.1:{nginx_port}"}
    children: list[Child] = []
    try:
        children.append(start_difusor(site))
        children.append(start_difusor_config(one_cfg, one_url))
        children.append(start_nginx(root / "nginx", nginx_port, site.store.site, access_log=True))
        checks = {name: verify(url, payload) for name, url in servers.items()}
        runs = measure(servers, args)
    finally:
        # nginx writes its buffered log on a graceful stop (SIGQUIT); difusor on SIGTERM.
        for child in reversed(children):
            child.stop(signal.SIGQUIT if child.name == "nginx" else signal.SIGTERM)
    logs = {"difusor": count_lines(site.access_log), "nginx": count_lines(root / "nginx" / "access.log")}
    conf = nginx_conf(root / "nginx", nginx_port, site.store.site, access_log=True)
    return {"checks": checks, "runs": runs, "log_lines": logs, "nginx_conf": conf}


def summarize(runs: list[Run]) -> dict[str, dict[str, float]]:
    out = {}
    for name in dict.fromkeys(r.server for r in runs):
        mine = [r for r in runs if r.server == name]
        out[name] = {"median_rps": statistics.median(r.rps for r in mine),
                     "p50_ms": statistics.median(r.p50_ms for r in mine),
                     "p99_ms": statistics.median(r.p99_ms for r in mine),
                     "requests": sum(r.requests for r in mine),
                     "errors": sum(r.errors for r in mine)}
    return out


def print_report(summary: dict[str, dict[str, float]], runs: list[Run], logs: dict[str, int],
                 ratio: float, args: argparse.Namespace) -> None:
    rounds = [f"round {n + 1}" for n in range(args.rounds)]
    rows = []
    labels = {"difusor": "difusor 1w", "difusor_default": "difusor 2w", "nginx": "nginx 1w"}
    for name, s in summary.items():
        per_round = [r.rps for r in runs if r.server == name]
        rows.append([labels[name], *per_round, s["median_rps"], s["p50_ms"], s["p99_ms"],
                     int(s["errors"])])
    print()
    print(table(["server", *rounds, "median req/s", "p50 ms", "p99 ms", "errors"], rows,
                f"GET {PATH}, wrk -t1 -c{args.connections} -d{args.duration}s, access log on"))
    print(f"log lines: difusor {logs['difusor']:,} (both configs), nginx {logs['nginx']:,}")
    verdict = "meets" if ratio >= TARGET else "MISSES"
    default = summary["difusor_default"]["median_rps"] / summary["nginx"]["median_rps"]
    print(f"\nratio difusor/nginx, one worker each (medians): {ratio:.3f}  "
          f"(target >= {TARGET}: {verdict})")
    print(f"ratio with difusor's default two workers: {default:.3f}  (on 2 cores, beside wrk)")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    guard(args.rounds * 2 * (args.duration + 5) + 120)
    load_before = machine_load()
    print_load("before", load_before)
    payload, source = main_json_payload()
    print(f"payload: {len(payload)} bytes, {source}", flush=True)
    with tempfile.TemporaryDirectory(prefix="difusor-bench-") as tmp:
        root = Path(tmp)
        open_for_nginx(root)
        site = make_site(root / "difusor")
        try:
            publish_files(site, "PREP_BENCH.zip", throughput_site(payload))
            got = run_servers(root, site, payload, args)
        finally:
            site.close()
    runs: list[Run] = got["runs"]
    summary = summarize(runs)
    ratio = summary["difusor"]["median_rps"] / summary["nginx"]["median_rps"]
    print_report(summary, runs, got["log_lines"], ratio, args)
    path = write_result(NAME, {
        "quick": args.quick, "duration_s": args.duration, "rounds": args.rounds,
        "wrk": {"threads": 1, "connections": args.connections},
        "payload": {"bytes": len(payload), "source": source,
                    "sha256": hashlib.sha256(payload).hexdigest()},
        "checks": got["checks"], "runs": [asdict(r) for r in runs], "summary": summary,
        "ratio": ratio, "target": TARGET, "meets_target": ratio >= TARGET,
        "ratio_default_workers": summary["difusor_default"]["median_rps"] / summary["nginx"]["median_rps"],
        "log_lines": got["log_lines"], "nginx_conf": got["nginx_conf"],
        "load_before": load_before,
    })
    print(f"result: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
