"""The console's own cost: requests/s on /json/main.json with and without 20 open console pages.

    python bench/console_cost.py [--quick] [--pairs N] [--duration S] [--sessions N]

One throwaway difusor (web, SFTP and console on free loopback ports; shield, monitor and
analytics as ``difusor init`` leaves them, loopback allowed by the shield) with a live corte,
run with ``difusor run`` under two configurations of the same state folder, in alternating
pairs (who goes first alternates too), a fresh ``difusor run`` for every measurement:

- A "sin consola": ``[console] enabled = false``; nothing else differs.
- B "con consola": the console runs (a user exists) and ``--sessions`` logged-in sessions each
  hold ``GET /eventos`` open and read every byte of it, as that many browser tabs would. The
  console also tails the access log wrk fills: that parsing is part of its cost.

Each side gets ``wrk -t1 -c64`` on /json/main.json (serve_throughput's settings) after a 2 s
warm-up. Reported: req/s per round, medians, B/A and the drop (target: ≤ 5 %), the events
each stream received during the measurement (proof it was live), the console's CPU time (its
``console serve`` process and granian worker, from /proc) and what the readers here cost.

req/s on a shared machine moves with other work far more than by 5 %: when the rounds of one
side differ by more than ``NOISY_SPREAD`` the verdict is flagged as untrustworthy (for a
verdict on these cores, ``console_slots.py`` alternates many short slots inside one run). The CPU
figures do not depend on that: the console's CPU per request served, and the drop it implies
when serving is CPU-bound (console CPU / (web server + console CPU)). The console here is
minutes old: costs that grow with its hour of history or with many distinct visitors are not
in these numbers.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import re
import resource
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
from harness import (
    POLLER_ALLOWED,
    BenchError,
    Child,
    DifusorSite,
    free_port,
    guard,
    machine_load,
    print_load,
    process_tree,
    processes,
    publish_files,
    wait_serving,
    wait_until,
)
from results import table, write_result
from serve_throughput import PATH, verify, wrk
from sites import main_json_payload, throughput_site

from difusor import config as config_mod
from difusor.ledger import Ledger
from difusor.paths import StateLayout
from difusor.publish.publisher import Publisher

NAME = "console_cost"
TARGET_DROP = 0.05
USER = "ana"
PASSWORD = "una-contraseña-larga"
WARMUP_S = 2
NOISY_SPREAD = 0.15  # rounds of one side further apart than this (max/min - 1): noise wins


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true",
                    help="2 pairs of 2 s, no warm-up (smoke test)")
    ap.add_argument("--pairs", type=int, help="pairs of A/B measurements (default 5, quick 2)")
    ap.add_argument("--duration", type=int, help="seconds per wrk run (default 10, quick 2)")
    ap.add_argument("--sessions", type=int, default=20, help="open console pages (default 20)")
    ap.add_argument("--connections", type=int, default=64)
    args = ap.parse_args(argv)
    args.pairs = max(1, args.pairs or (2 if args.quick else 5))
    args.duration = args.duration or (2 if args.quick else 10)
    return args


# -- the site -----------------------------------------------------------------------------------

@dataclass
class Setup:
    root: Path
    web: int
    sftp: int
    console: int
    configs: dict[str, Path]  # "A"/"B" → its difusor.toml (one state folder)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.web}"

    @property
    def console_url(self) -> str:
        return f"http://127.0.0.1:{self.console}"

    @property
    def access_log(self) -> Path:
        cfg = config_mod.load(self.configs["B"])
        return StateLayout(cfg.state_dir).access_log


def build_site(root: Path, payload: bytes) -> Setup:
    """What ``difusor init`` makes, on free loopback ports, the corte published, a console user;
    and the same file with the console switched off."""
    web, sftp, console = free_port(), free_port(), free_port()
    root.mkdir(parents=True, exist_ok=True)
    (root / "keys").mkdir(exist_ok=True)
    (root / "keys" / "authorized_keys").write_text("")
    base = config_mod.render_default(web_listen=f"127.0.0.1:{web}",
                                     sftp_listen=f"127.0.0.1:{sftp}") + POLLER_ALLOWED
    configs = {"B": root / "difusor.toml", "A": root / "difusor-sin-consola.toml"}
    configs["B"].write_text(base + f'\n[console]\nlisten = "127.0.0.1:{console}"\n')
    configs["A"].write_text(base + f'\n[console]\nenabled = false\nlisten = "127.0.0.1:{console}"\n')
    cfg = config_mod.load(configs["B"])
    ledger = Ledger(StateLayout(cfg.state_dir).ledger)
    site = DifusorSite(root, configs["B"], cfg, ledger, Publisher(cfg, ledger), web)
    try:
        publish_files(site, "PREP_BENCH.zip", throughput_site(payload))
    finally:
        site.close()
    done = subprocess.run(
        [sys.executable, "-m", "difusor", "console", "user", "add", USER, "--password-stdin",
         "--config", str(configs["B"])],
        input=PASSWORD + "\n", capture_output=True, text=True, timeout=60)
    if done.returncode != 0:
        raise BenchError(f"console user add failed:\n{done.stdout}{done.stderr}")
    return Setup(root, web, sftp, console, configs)


# -- /proc: who is the console, what did it cost ---------------------------------------------------

@dataclass
class Parts:
    """The processes of one ``difusor run``: the console (its server and worker), the web server
    (its workers), and all of it (the run itself with its threads and helpers included)."""

    console: list[int] = field(default_factory=list)
    web: list[int] = field(default_factory=list)
    group: list[int] = field(default_factory=list)

    @classmethod
    def of(cls, child: Child) -> Parts:
        # The run starts its servers in sessions of their own: found by descent, not by group.
        procs = processes()
        group = process_tree(procs, child.proc.pid)
        console = next((p for p in group if " console serve " in f" {procs[p][3]} "), None)
        web = next((p for p in group if " -m difusor serve " in f" {procs[p][3]} "), None)
        return cls(process_tree(procs, console) if console else [],
                   process_tree(procs, web) if web else [],
                   group)

    def cpu(self) -> dict[str, float]:
        procs = processes()

        def total(pids: list[int]) -> float:
            return sum(procs[p][2] for p in pids if p in procs)

        return {"console": total(self.console), "web": total(self.web), "run": total(self.group)}


# -- the console pages ---------------------------------------------------------------------------

def login(base: str) -> str:
    """One browser's login: the form's CSRF token and cookie, then the session cookie."""
    with httpx.Client(base_url=base, timeout=30, follow_redirects=False) as client:
        page = client.get("/acceso")
        token = re.search(r'name="csrf" value="([^"]+)"', page.text)
        if page.status_code != 200 or token is None:
            raise BenchError(f"GET /acceso answered {page.status_code} without a CSRF field")
        done = client.post("/acceso", data={"usuario": USER, "contrasena": PASSWORD,
                                            "csrf": token.group(1)})
        session = done.cookies.get("difusor_consola")
        if done.status_code != 303 or not session:
            raise BenchError(f"POST /acceso answered {done.status_code}: {done.text[:300]}")
        return session


class Stream(threading.Thread):
    """One open page: ``GET /eventos`` on a raw socket, every byte read, events counted."""

    def __init__(self, port: int, session: str) -> None:
        super().__init__(daemon=True)
        self.port, self.session = port, session
        self.stopping = threading.Event()
        self.states = 0
        self.series = 0
        self.bytes = 0
        self.stamps: list[float] = []  # when each estado arrived (monotonic)
        self.head = b""
        self.error: str | None = None
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)

    def run(self) -> None:
        try:
            self._read()
        except OSError as exc:
            if not self.stopping.is_set():
                self.error = repr(exc)

    def _read(self) -> None:
        self.sock.sendall(
            f"GET /eventos HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\n"
            f"Cookie: difusor_consola={self.session}\r\nAccept: text/event-stream\r\n"
            "Cache-Control: no-cache\r\n\r\n".encode())
        self.sock.settimeout(0.5)
        buffer, carry = b"", b""
        while not self.stopping.is_set():
            try:
                data = self.sock.recv(1 << 18)
            except TimeoutError:
                continue
            if not data:
                if not self.stopping.is_set():
                    self.error = "the console closed the stream"
                return
            self.bytes += len(data)
            if not self.head:
                buffer += data
                if b"\r\n\r\n" not in buffer:
                    continue
                self.head, _, data = buffer.partition(b"\r\n\r\n")
                if not self.head.startswith(b"HTTP/1.1 200"):
                    self.error = self.head.split(b"\r\n", 1)[0].decode(errors="replace")
                    return
            text = carry + data
            now = time.monotonic()
            n = text.count(b"event: estado\n")
            self.states += n
            self.stamps += [now] * n
            self.series += text.count(b"event: serie\n")
            carry = text[-13:]  # one event name split over two reads is still counted once

    def stop(self) -> None:
        self.stopping.set()
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.join(5)
        self.sock.close()


def open_pages(setup: Setup, child: Child, n: int) -> list[Stream]:
    def console_up() -> bool:
        if not child.alive():
            raise BenchError(f"difusor run exited:\n{child.tail()}")
        try:
            return httpx.get(setup.console_url + "/acceso", timeout=1).status_code == 200
        except httpx.TransportError:
            return False

    wait_until(console_up, 30, "the console")
    streams: list[Stream] = []
    try:
        for _ in range(n):
            streams.append(Stream(setup.console, login(setup.console_url)))
            streams[-1].start()
        wait_until(lambda: all(s.states > 0 or s.error for s in streams), 15,
                   "the first event of every page")
        broken = [s.error for s in streams if s.error]
        if broken:
            raise BenchError(f"{len(broken)} event streams failed: {broken[:3]}")
    except BaseException:
        for s in streams:
            s.stop()
        raise
    return streams


# -- one measurement ---------------------------------------------------------------------------

@dataclass
class Run:
    side: str  # "A" sin consola, "B" con consola
    pair: int
    rps: float
    p50_ms: float
    p99_ms: float
    requests: int
    errors: int
    seconds: float
    cpu_console_s: float | None = None
    cpu_web_s: float = 0.0
    cpu_run_s: float = 0.0
    cpu_readers_s: float | None = None
    cpu_wrk_s: float = 0.0
    cpu_pressure_10s: float | None = None
    events_per_page: list[int] | None = None
    series_per_page: list[int] | None = None
    max_gap_s: float | None = None
    stream_mb: float | None = None


def measure(setup: Setup, side: str, pair: int, args: argparse.Namespace) -> Run:
    config = setup.configs[side]
    child = Child(f"difusor run ({side})", [sys.executable, "-m", "difusor", "run",
                                            "--config", str(config)],
                  setup.root / f"run-{side}.out")
    streams: list[Stream] = []
    try:
        wait_serving(child, setup.url + "/_difusor/health")
        if side == "B":
            streams = open_pages(setup, child, args.sessions)
        if not args.quick:
            wrk(setup.url, WARMUP_S, args.connections)
        parts = Parts.of(child)
        if side == "B" and not parts.console:
            raise BenchError("the console process is not among difusor run's children")
        if side == "A" and parts.console:
            raise BenchError("a console runs although [console] enabled = false")
        before = parts.cpu()
        seen = [s.states for s in streams]
        series = [s.series for s in streams]
        received = sum(s.bytes for s in streams)
        mine = resource.getrusage(resource.RUSAGE_SELF)
        kids = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.monotonic()
        got = wrk(setup.url, args.duration, args.connections)
        end = time.monotonic()
        used = resource.getrusage(resource.RUSAGE_SELF)
        waited = resource.getrusage(resource.RUSAGE_CHILDREN)  # wrk, the only child reaped
        after = parts.cpu()
        run = Run(side, pair, got["rps"], got["p50_ms"], got["p99_ms"], int(got["requests"]),
                  int(got["errors"]), end - start,
                  cpu_web_s=after["web"] - before["web"], cpu_run_s=after["run"] - before["run"],
                  cpu_wrk_s=(waited.ru_utime + waited.ru_stime) - (kids.ru_utime + kids.ru_stime),
                  cpu_pressure_10s=machine_load().get("cpu_pressure_10s"))
        if side == "B":
            broken = [s.error for s in streams if s.error]
            if broken:
                raise BenchError(f"{len(broken)} event streams broke during wrk: {broken[:3]}")
            run.cpu_console_s = after["console"] - before["console"]
            run.cpu_readers_s = (used.ru_utime + used.ru_stime) - (mine.ru_utime + mine.ru_stime)
            run.events_per_page = [s.states - n for s, n in zip(streams, seen, strict=True)]
            run.series_per_page = [s.series - n for s, n in zip(streams, series, strict=True)]
            run.stream_mb = (sum(s.bytes for s in streams) - received) / 1e6
            gaps = []
            for s in streams:
                inside = [start] + [t for t in s.stamps if start <= t <= end] + [end]
                gaps.append(max(b - a for a, b in itertools.pairwise(inside)))
            run.max_gap_s = max(gaps, default=0.0)
        return run
    finally:
        for s in streams:
            s.stop()
        stopping = time.monotonic()
        try:
            child.stop()
        except BaseException:  # interrupted while it stopped: do not leave it behind
            child.stop(signal.SIGKILL, timeout=2)
            raise
        if time.monotonic() - stopping > 5:
            print(f"  (difusor run took {time.monotonic() - stopping:.1f} s to stop)", flush=True)


def measure_all(setup: Setup, args: argparse.Namespace) -> list[Run]:
    runs = []
    for pair in range(1, args.pairs + 1):
        for side in ("A", "B") if pair % 2 else ("B", "A"):
            run = measure(setup, side, pair, args)
            extra = ""
            if side == "B":
                events = statistics.median(run.events_per_page or [0]) / run.seconds
                extra = (f"  consola {run.cpu_console_s:.2f} s CPU, {events:.2f} eventos/s por "
                         f"página (mín {min(run.events_per_page or [0])}), hueco máx "
                         f"{run.max_gap_s:.2f} s")
            print(f"  pair {pair} {side} {run.rps:10,.0f} req/s  p99 {run.p99_ms:.2f} ms  "
                  f"CPU-s/s: web {run.cpu_web_s / run.seconds:.2f}, difusor run entero "
                  f"{run.cpu_run_s / run.seconds:.2f}, wrk {run.cpu_wrk_s / run.seconds:.2f}; "
                  f"presión CPU {run.cpu_pressure_10s}{extra}", flush=True)
            runs.append(run)
    return runs


# -- the record ---------------------------------------------------------------------------------

def summarize(runs: list[Run], args: argparse.Namespace) -> dict[str, Any]:
    a = [r for r in runs if r.side == "A"]
    b = [r for r in runs if r.side == "B"]
    med_a = statistics.median(r.rps for r in a)
    med_b = statistics.median(r.rps for r in b)
    per_pair = [rb.rps / ra.rps for ra, rb in zip(sorted(a, key=lambda r: r.pair),
                                                  sorted(b, key=lambda r: r.pair), strict=True)]
    rates = [n / r.seconds for r in b for n in r.events_per_page or []] or [0.0]
    spread = max(max(r.rps for r in side) / min(r.rps for r in side) - 1 for side in (a, b))
    return {
        "median_rps_A": med_a, "median_rps_B": med_b, "ratio": med_b / med_a,
        "drop": 1 - med_b / med_a, "target_drop": TARGET_DROP,
        "meets_target": 1 - med_b / med_a <= TARGET_DROP,
        "ratio_per_pair": per_pair, "median_ratio_per_pair": statistics.median(per_pair),
        "events_per_page_per_s": {"median": statistics.median(rates), "min": min(rates)},
        "pages": args.sessions,
        "console_cpu_s_per_s": statistics.median((r.cpu_console_s or 0) / r.seconds for r in b),
        "readers_cpu_s_per_s": statistics.median((r.cpu_readers_s or 0) / r.seconds for r in b),
        "web_cpu_s_per_s": {"A": statistics.median(r.cpu_web_s / r.seconds for r in a),
                            "B": statistics.median(r.cpu_web_s / r.seconds for r in b)},
        "run_cpu_s_per_s": {"A": statistics.median(r.cpu_run_s / r.seconds for r in a),
                            "B": statistics.median(r.cpu_run_s / r.seconds for r in b)},
        "wrk_cpu_s_per_s": {"A": statistics.median(r.cpu_wrk_s / r.seconds for r in a),
                            "B": statistics.median(r.cpu_wrk_s / r.seconds for r in b)},
        # Robust to other load on the machine: what the console took per request served, and
        # its share of all the CPU this test's processes used (difusor run entire + wrk).
        "console_us_per_request": statistics.median(
            1e6 * (r.cpu_console_s or 0) / r.requests for r in b),
        "web_us_per_request": {"A": statistics.median(1e6 * r.cpu_web_s / r.requests for r in a),
                               "B": statistics.median(1e6 * r.cpu_web_s / r.requests for r in b)},
        # If serving is CPU-bound, the console's CPU per request is what it takes from the web
        # server's: an estimate of the drop that other load on the machine does not blur.
        "cpu_estimate_drop": statistics.median(
            (r.cpu_console_s or 0) / (r.cpu_web_s + (r.cpu_console_s or 0)) for r in b),
        "console_cpu_share": statistics.median(
            (r.cpu_console_s or 0) / (r.cpu_run_s + r.cpu_wrk_s) for r in b),
        "max_event_gap_s": max(r.max_gap_s or 0 for r in b),
        "spread": spread, "noisy": spread > NOISY_SPREAD,
        "median_cpu_pressure_10s": statistics.median(
            r.cpu_pressure_10s for r in runs if r.cpu_pressure_10s is not None)
        if any(r.cpu_pressure_10s is not None for r in runs) else None,
        "errors": sum(r.errors for r in runs),
    }


def print_report(runs: list[Run], s: dict[str, Any], args: argparse.Namespace) -> None:
    rows = []
    for pair in range(1, args.pairs + 1):
        ra = next(r for r in runs if r.pair == pair and r.side == "A")
        rb = next(r for r in runs if r.pair == pair and r.side == "B")
        events = rb.events_per_page or [0]
        rows.append([f"pair {pair} ({'A→B' if pair % 2 else 'B→A'})", ra.rps, rb.rps,
                     rb.rps / ra.rps, f"{min(events) / rb.seconds:.2f}-{max(events) / rb.seconds:.2f}",
                     rb.max_gap_s or 0.0, rb.cpu_console_s or 0.0,
                     100 * (rb.cpu_console_s or 0) / rb.seconds, ra.cpu_web_s / ra.seconds,
                     rb.cpu_web_s / rb.seconds, rb.cpu_readers_s or 0.0])
    rows.append(["median", s["median_rps_A"], s["median_rps_B"], s["ratio"],
                 f"{s['events_per_page_per_s']['median']:.2f}", s["max_event_gap_s"],
                 statistics.median(r.cpu_console_s or 0 for r in runs if r.side == "B"),
                 100 * s["console_cpu_s_per_s"], s["web_cpu_s_per_s"]["A"],
                 s["web_cpu_s_per_s"]["B"],
                 statistics.median(r.cpu_readers_s or 0 for r in runs if r.side == "B")])
    print()
    print(table(["", "A req/s", "B req/s", "B/A", "ev/s/page", "max gap s", "console CPU s",
                 "console %CPU", "web CPU/s A", "web CPU/s B", "readers CPU s"], rows,
                f"GET {PATH}, wrk -t1 -c{args.connections} -d{args.duration}s, access log on; "
                f"A = [console] enabled = false, B = console + {args.sessions} pages on /eventos"))
    verdict = "meets" if s["meets_target"] else "MISSES"
    print(f"\nB/A (medians): {s['ratio']:.3f}  drop {100 * s['drop']:.1f} %  "
          f"(target <= {100 * TARGET_DROP:.0f} %: {verdict}); median of per-pair ratios "
          f"{s['median_ratio_per_pair']:.3f}; wrk errors {s['errors']}")
    print(f"console CPU during B: {s['console_cpu_s_per_s']:.3f} CPU-s per s (console serve + "
          f"granian worker), {s['console_us_per_request']:.1f} us per request served (web "
          f"server: {s['web_us_per_request']['A']:.1f} us A, {s['web_us_per_request']['B']:.1f} "
          f"us B); {100 * s['console_cpu_share']:.1f} % of the CPU difusor run + wrk used")
    print(f"CPU-bound estimate of the drop (console CPU / (web + console CPU), per request): "
          f"{100 * s['cpu_estimate_drop']:.1f} %")
    if s["noisy"]:
        print(f"WARNING: the rounds of one side differ by up to {100 * s['spread']:.0f} % (more "
              f"than {100 * NOISY_SPREAD:.0f} %): other work on the machine moves req/s more than "
              "the console could; the req/s verdict is not trustworthy, the CPU figures hold. "
              "Rerun on a quiet machine (or with more --pairs).")
    print(f"the readers in this process: {s['readers_cpu_s_per_s']:.3f} CPU-s per s (browsers "
          "would spend that on their own machines)")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    began = time.monotonic()
    guard(args.pairs * 2 * (args.duration + WARMUP_S + 40) + 120)
    load_before = machine_load()
    print_load("before", load_before)
    payload, source = main_json_payload()
    print(f"payload: {len(payload)} bytes, {source}", flush=True)
    with tempfile.TemporaryDirectory(prefix="difusor-bench-") as tmp:
        setup = build_site(Path(tmp) / "difusor", payload)
        child = Child("difusor run (check)", [sys.executable, "-m", "difusor", "run", "--config",
                                             str(setup.configs["A"])], setup.root / "run-check.out")
        try:
            wait_serving(child, setup.url + "/_difusor/health")
            check = verify(setup.url, payload)
        finally:
            child.stop()
        runs = measure_all(setup, args)
    summary = summarize(runs, args)
    print_report(runs, summary, args)
    load_after = machine_load()
    print_load("after", load_after)
    path = write_result(NAME, {
        "quick": args.quick, "pairs": args.pairs, "duration_s": args.duration,
        "warmup_s": 0 if args.quick else WARMUP_S, "pages": args.sessions,
        "wrk": {"threads": 1, "connections": args.connections, "path": PATH},
        "sides": {"A": "difusor run, [console] enabled = false",
                  "B": f"difusor run, console on, {args.sessions} sessions reading /eventos"},
        "payload": {"bytes": len(payload), "source": source}, "check": check,
        "runs": [asdict(r) for r in runs], "summary": summary,
        "load_before": load_before, "load_after": load_after,
    })
    print(f"result: {path}  ({time.monotonic() - began:.0f} s in all)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
