"""Edge polling: thousands of open tabs polling main.json through Varnish, with and without
targeted caching, and publish → edge-visible latency, in one run.

    python bench/edge_polling.py [--quick] [--tabs N] [--interval S] [--duration S]
                                 [--publishes N] [--targeted-seconds N]

Every open tab of a PREP site polls ``/json/main.json``, which must say ``Cache-Control: no-cache,
no-store, must-revalidate``: a CDN passes every poll to the origin unless the origin lets it hold
main.json a few seconds (``CDN-Cache-Control``, RFC 9213) and purges it on every publication.
Two stacks get the same load and the same cortes, one after the other in the same run: a real
``varnishd`` with deploy/varnish/difusor.vcl in front of ``difusor serve``, whose ``[[cdn]]`` is

    no-targeted   targeted_seconds = 0: every poll passes to the origin
    targeted      targeted_seconds = 5: the edge holds main.json, purged when a corte goes live

The load (a separate asyncio process): 2,000 tabs (quick 200), 8 behind each loopback source
address (127.0.x.y, one small keep-alive pool per address, as tabs behind one NAT), each polling
every 10 s — accelerated from the sites' 60 s so the run stays short — spread uniformly, for
40 s (quick 3 s). While it runs, 5 cortes (quick 2) are published with the ``Publisher``, which
purges Varnish itself once the corte is live (``after_activation``); bench/poller.py, polling
through Varnish every ~2 ms, stops the clock when the edge first serves the new main.json.

Counted over the load window: the tabs' answered polls (edge req/s) and errors; the origin's
access log lines for main.json — all of them (origin req/s: the poller and the Publisher's edge
check included) and the tabs' own, by User-Agent (origin share = tabs' origin requests / tabs'
polls); Varnish's counters; CPU of the origin, Varnish and the load generator.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import resource
import select
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from contextlib import ExitStack
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
    open_for_nginx,
    print_load,
    start_difusor,
    wait_serving,
)
from publish_latency import Poller
from results import percentile, table, write_result
from sites import MAIN_JSON, Corte, irimbo_cortes

from difusor.publish.cdn import after_activation

NAME = "edge_polling"
ROOT = Path(__file__).resolve().parents[1]
VCL = ROOT / "deploy" / "varnish" / "difusor.vcl"
VARNISHD = shutil.which("varnishd") or "/usr/sbin/varnishd"
VARNISHSTAT = shutil.which("varnishstat") or "/usr/bin/varnishstat"
TAB_UA = "difusor-bench-tab/1"
TABS_PER_ADDRESS = 8
REQUEST_TIMEOUT = 5.0
LEAD = 1.0  # s from starting the load generator to its first poll
EDGE_TARGET_MS = 1000.0  # issue 4: after a publish, the edge serves the new bytes within 1 s
COUNTERS = ("client_req", "backend_req", "cache_hit", "cache_miss", "cache_hitmiss", "s_pass",
            "sess_conn")


@dataclass(frozen=True)
class Setup:
    name: str
    targeted_seconds: int


# -- the tabs (the load generator's own process) ------------------------------------------------

@dataclass
class LoadPlan:
    port: int  # Varnish
    tabs: int
    addresses: int
    interval: float  # s between one tab's polls
    duration: float  # s of polling
    start: float  # time.monotonic() of the first poll: CLOCK_MONOTONIC, the same in every process


def tab_address(tab: int, addresses: int) -> str:
    n = tab % addresses
    return f"127.0.{1 + n // 250}.{1 + n % 250}"


async def read_response(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bool, int]:
    """(status, lower-cased headers, connection reusable, body bytes) of one HTTP/1.1 answer."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    keep = headers.get("connection", "").lower() != "close"
    size = 0
    if "content-length" in headers:
        size = len(await reader.readexactly(int(headers["content-length"])))
    elif headers.get("transfer-encoding", "").lower() == "chunked":
        while True:
            chunk = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            size += len(await reader.readexactly(chunk + 2)) - 2  # the chunk and its CRLF
            if chunk == 0:
                break
    else:
        size = len(await reader.read())
        keep = False
    return status, headers, keep, size


class TabLoad:
    """One coroutine per tab; the tabs behind one address share its keep-alive connections."""

    def __init__(self, plan: LoadPlan) -> None:
        self.plan = plan
        self.request = (f"GET /{MAIN_JSON} HTTP/1.1\r\nHost: 127.0.0.1:{plan.port}\r\n"
                        f"User-Agent: {TAB_UA}\r\nAccept: */*\r\n"
                        "Accept-Encoding: gzip, deflate, br\r\n\r\n").encode()
        self.idle: dict[str, list[tuple[asyncio.StreamReader, asyncio.StreamWriter]]] = \
            defaultdict(list)
        self.latency_ms: list[float] = []
        self.lag_ms: list[float] = []
        self.status: Counter[int] = Counter()
        self.x_cache: Counter[str] = Counter()
        self.errors: Counter[str] = Counter()
        self.connections = self.retries = self.body_bytes = 0
        self.last_answer = plan.start

    async def run(self) -> dict[str, Any]:
        await asyncio.gather(*(self.tab(i) for i in range(self.plan.tabs)))
        for pool in self.idle.values():
            for _reader, writer in pool:
                writer.close()
        use = resource.getrusage(resource.RUSAGE_SELF)
        return {
            "answered": len(self.latency_ms), "status": {str(k): v for k, v in self.status.items()},
            "x_cache": dict(self.x_cache), "errors": dict(self.errors),
            "error_count": sum(self.errors.values()), "connections": self.connections,
            "retries": self.retries, "body_bytes": self.body_bytes,
            "latency_ms": {"p50": percentile(self.latency_ms, 50),
                           "p99": percentile(self.latency_ms, 99), "max": max(self.latency_ms,
                                                                               default=math.nan)},
            "lag_ms": {"p99": percentile(self.lag_ms, 99), "max": max(self.lag_ms, default=0.0)},
            "last_answer": self.last_answer, "cpu_s": use.ru_utime + use.ru_stime,
            "max_rss_mb": use.ru_maxrss / 1024,
        }

    async def tab(self, i: int) -> None:
        plan = self.plan
        address = tab_address(i, plan.addresses)
        due = plan.start + plan.interval * i / plan.tabs  # spread uniformly over one interval
        end = plan.start + plan.duration
        while due < end:
            wait = due - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            sent = time.monotonic()
            self.lag_ms.append((sent - due) * 1e3)
            try:
                status, headers = await asyncio.wait_for(self.poll(address), REQUEST_TIMEOUT)
            except TimeoutError:
                self.errors["timeout"] += 1
            except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError,
                    ValueError) as exc:
                self.errors[type(exc).__name__] += 1
            else:
                done = time.monotonic()
                self.latency_ms.append((done - sent) * 1e3)
                self.last_answer = max(self.last_answer, done)
                self.status[status] += 1
                if status != 200:
                    self.errors[f"HTTP {status}"] += 1
                self.x_cache[headers.get("x-cache", "-")] += 1
            due += plan.interval

    async def poll(self, address: str) -> tuple[int, dict[str, str]]:
        """One GET. A pooled connection the edge closed meanwhile (its idle timeout) is retried
        once on a new connection, as browsers do for a GET that got no answer at all."""
        pool = self.idle[address]
        while pool:
            reader, writer = pool.pop()
            if reader.at_eof():
                writer.close()
                continue
            try:
                return await self.exchange(reader, writer, pool)
            except (ConnectionError, asyncio.IncompleteReadError) as exc:
                if isinstance(exc, asyncio.IncompleteReadError) and exc.partial:
                    raise
                self.retries += 1
                break
        reader, writer = await asyncio.open_connection("127.0.0.1", self.plan.port,
                                                       local_addr=(address, 0))
        self.connections += 1
        return await self.exchange(reader, writer, pool)

    async def exchange(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                       pool: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]]
                       ) -> tuple[int, dict[str, str]]:
        try:
            writer.write(self.request)
            status, headers, keep, size = await read_response(reader)
        except BaseException:  # errors and wait_for's cancellation: never leak the socket
            writer.close()
            raise
        self.body_bytes += size
        if keep:
            pool.append((reader, writer))
        else:
            writer.close()
        return status, headers


def tabs_process(plan_json: str) -> int:
    """Entry point of the load generator's process: one JSON line on stdout at the end."""
    load = TabLoad(LoadPlan(**json.loads(plan_json)))
    try:
        import uvloop
    except ImportError:
        result = asyncio.run(load.run())
    else:
        result = uvloop.run(load.run())
    sys.stdout.write(json.dumps(result) + "\n")
    return 0


class Tabs:
    """The load generator as a child of the benchmark."""

    def __init__(self, plan: LoadPlan, log: Path) -> None:
        self.plan = plan
        argv = [sys.executable, str(Path(__file__).resolve()), "--tabs-process",
                json.dumps(asdict(plan))]
        self.child = Child("tabs", argv, log, stdout=subprocess.PIPE, text=True)

    def result(self) -> dict[str, Any]:
        stdout = self.child.proc.stdout
        assert stdout is not None
        timeout = self.plan.start + self.plan.duration + REQUEST_TIMEOUT + 30 - time.monotonic()
        if not select.select([stdout], [], [], max(1.0, timeout))[0]:
            raise BenchError(f"the load generator did not finish:\n{self.child.tail()}")
        line = stdout.readline()
        if not line:
            raise BenchError(f"the load generator exited:\n{self.child.tail()}")
        return dict(json.loads(line))


# -- the stack: difusor serve behind varnishd ----------------------------------------------------

def cdn_toml(edge_port: int, targeted_seconds: int) -> str:
    return f"""
[[cdn]]
kind = "varnish"
name = "varnish-bench"
edge_url = "http://127.0.0.1:{edge_port}"
targeted_seconds = {targeted_seconds}
verify_timeout = 10
"""


def start_varnish(workdir: Path, origin_port: int, port: int) -> Child:
    """``varnishd -F`` with the shipped VCL, its backend pointed at the origin. Not waited for:
    it compiles its VCL while the origin starts (``run_setup`` waits for both)."""
    workdir.mkdir(parents=True)
    workdir.chmod(0o755)  # started as root, varnishd compiles the VCL as its own users
    text = VCL.read_text()
    if text.count('.port = "8080";') != 1:
        raise BenchError(f"{VCL}: expected one backend on port 8080")
    vcl = workdir / "difusor.vcl"
    vcl.write_text(text.replace('.port = "8080";', f'.port = "{origin_port}";'))
    argv = [VARNISHD, "-F", "-a", f"127.0.0.1:{port}", "-f", str(vcl), "-n", str(workdir / "n"),
            "-s", "malloc,64m", "-T", "none"]
    return Child("varnishd", argv, workdir / "varnishd.log")


def varnish_counters(workdir: Path) -> dict[str, int]:
    argv = [VARNISHSTAT, "-n", str(workdir / "n"), "-1",
            *(a for c in COUNTERS for a in ("-f", f"MAIN.{c}"))]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=10)
    found = {}
    for line in done.stdout.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0].startswith("MAIN.") and parts[1].isdigit():
            found[parts[0][5:]] = int(parts[1])
    return found


def group_cpu(pgid: int) -> float:
    """CPU seconds (user + system) used so far by the live processes of a process group."""
    ticks = 0
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            fields = Path(entry.path, "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[2]) == pgid:  # field 5, pgrp; 14 and 15: utime, stime
            ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def check_edge(edge_url: str, corte: Corte, targeted: int) -> dict[str, Any]:
    """Off the clock: the edge serves the corte's main.json with the browser header unchanged,
    and holds it only with targeted caching."""
    with httpx.Client(timeout=10, headers={"Accept-Encoding": "identity"}) as client:
        first, second = (client.get(f"{edge_url}/{MAIN_JSON}") for _ in range(2))
    if second.status_code != 200 or second.content != corte.files[MAIN_JSON]:
        raise BenchError(f"the edge serves wrong bytes for /{MAIN_JSON} ({second.status_code})")
    cc = second.headers.get_list("cache-control")
    cdn_cc = second.headers.get("cdn-cache-control")
    if cc != [MAIN_CACHE_CONTROL]:
        raise BenchError(f"/{MAIN_JSON} through the edge: Cache-Control is {cc}")
    if cdn_cc != (f"max-age={targeted}" if targeted else None):
        raise BenchError(f"/{MAIN_JSON} through the edge: CDN-Cache-Control is {cdn_cc}")
    x_cache = [first.headers.get("x-cache"), second.headers.get("x-cache")]
    if x_cache[1] != ("HIT" if targeted else "MISS"):
        raise BenchError(f"/{MAIN_JSON}: X-Cache {x_cache} with targeted_seconds = {targeted}")
    return {"cache_control": cc, "cdn_cache_control": cdn_cc, "x_cache": x_cache}


# -- publishing under load -------------------------------------------------------------------------

@dataclass
class PublishSample:
    config: str
    corte: str
    edge_ms: float  # package complete → the edge first serves the new main.json
    live_ms: float | None  # → the corte is live at the origin (on_live)
    returned_ms: float  # → publish() returned (purged, edge checked, corte materialised)
    purge_ms: float | None  # the PURGE requests (ledger «purge»)
    purge_urls: int | None  # URLs purged (what changed, main.json last)
    verified_ms: float | None  # purge → the Publisher's edge check saw the new bytes
    edge_ok: bool | None
    purged_by: str  # publisher (after_activation inside publish) | bench (it did not)
    polls: int


def stage(drop: Path, corte: Corte, kind: str) -> Path:
    """Write the package under a temporary name and make it durable; the rename starts the clock."""
    part = drop / f".{corte.name}.zip.part"
    with part.open("wb") as f:
        f.write(corte.package(kind))
        f.flush()
        os.fsync(f.fileno())
    return part


def _event(site: DifusorSite, kinds: tuple[str, ...], release_id: str) -> dict[str, Any] | None:
    for kind in kinds:
        for event in site.ledger.events(kind, limit=20):
            if event["release_id"] == release_id:
                return event
    return None


def timed_publish(config: str, site: DifusorSite, poller: Poller, edge_url: str, corte: Corte
                  ) -> PublishSample:
    drop = site.root / "paquetes"
    part = stage(drop, corte, "incremental")
    final = drop / f"{corte.name}.zip"
    os.sync()  # off the clock: start from a clean page cache, as publish_latency.py does
    poller.watch(edge_url, corte.files[MAIN_JSON])  # returns once the edge still serves the old
    live: list[int] = []
    os.rename(part, final)
    t0 = time.monotonic_ns()
    outcome = site.publisher.publish(final, on_live=lambda _o: live.append(time.monotonic_ns()))
    returned = time.monotonic_ns()
    if outcome.status != "published":
        raise BenchError(f"{corte.name} was not published: {outcome.message}")
    purged_by = "publisher"
    if _event(site, ("purge", "purge_failed"), outcome.release_id) is None:
        after_activation(site.cfg, site.ledger, outcome.release_id)  # a Publisher that does not
        purged_by = "bench"
    seen, polls = poller.seen()
    final.unlink()
    purge = _event(site, ("purge",), outcome.release_id)
    edge = _event(site, ("edge_verified", "edge_stale"), outcome.release_id)
    return PublishSample(
        config, corte.name, (seen - t0) / 1e6, (live[0] - t0) / 1e6 if live else None,
        (returned - t0) / 1e6, purge["detail"]["ms"] if purge else None,
        purge["detail"]["urls"] if purge else None,
        edge["detail"]["ms"] if edge else None,
        edge["kind"] == "edge_verified" if edge else None, purged_by, polls)


# -- one configuration -----------------------------------------------------------------------------

def wall(mono: float, offset: float) -> str:
    """A monotonic instant as the access log writes times (UTC, ms): comparable as strings."""
    t = mono + offset
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t % 1 * 1000):03d}Z"


def origin_main_json(log: Path, first: str, last: str) -> tuple[int, int]:
    """(every main.json request the origin answered in [first, last], the tabs' among them)."""
    every = tabs = 0
    path = f'"/{MAIN_JSON}"'
    with log.open() as lines:
        for line in lines:
            if path not in line:
                continue
            rec = json.loads(line)
            if rec["path"] == f"/{MAIN_JSON}" and first <= rec["time"] <= last:
                every += 1
                tabs += rec.get("user_agent") == TAB_UA
    return every, tabs


def sleep_until(mono: float) -> None:
    time.sleep(max(0.0, mono - time.monotonic()))


def run_setup(root: Path, setup: Setup, poller: Poller, args: argparse.Namespace
              ) -> tuple[dict[str, Any], list[PublishSample]]:
    edge_port = free_port()
    edge_url = f"http://127.0.0.1:{edge_port}"
    site = make_site(root / setup.name, cdn_toml(edge_port, setup.targeted_seconds))
    (site.root / "paquetes").mkdir()
    cortes = irimbo_cortes(0)  # the same series for every configuration
    with ExitStack() as stack:  # stops everything in reverse order, whatever happens
        stack.callback(site.close)
        varnish = start_varnish(root / f"varnish-{setup.name}", site.port, edge_port)
        stack.callback(varnish.stop)
        server = start_difusor(site)
        stack.callback(server.stop)
        wait_serving(varnish, f"{edge_url}/_difusor/health")  # through to the origin
        first = next(cortes)
        site.publisher.publish(stage_final(site, first))  # live before the load, untimed
        checked = check_edge(edge_url, first, setup.targeted_seconds)

        plan = LoadPlan(edge_port, args.tabs, args.addresses, args.interval, args.duration,
                        time.monotonic() + LEAD)
        tabs = Tabs(plan, root / f"tabs-{setup.name}.log")
        stack.callback(tabs.child.stop)
        offset = time.time() - time.monotonic()
        pgids = {"origin": server.proc.pid, "varnish": varnish.proc.pid,
                 "load": tabs.child.proc.pid}
        sleep_until(plan.start)
        cpu_before = {k: group_cpu(p) for k, p in pgids.items()}
        counters_before = varnish_counters(root / f"varnish-{setup.name}")
        samples = []
        for k in range(args.publishes):
            sleep_until(plan.start + plan.duration * (k + 1) / (args.publishes + 1))
            corte = next(cortes)
            samples.append(timed_publish(setup.name, site, poller, edge_url, corte))
            s = samples[-1]
            print(f"  {setup.name:12s} {corte.name}  publish → edge {s.edge_ms:7.1f} ms "
                  f"(live {s.live_ms or math.nan:.1f}, purge {s.purge_ms or math.nan:.1f} ms)",
                  flush=True)
        load = tabs.result()
        cpu = {k: group_cpu(p) - cpu_before[k] for k, p in pgids.items()}
        cpu["load"] = load["cpu_s"]  # its own rusage: it may have exited already
        counters = varnish_counters(root / f"varnish-{setup.name}")
    # Read once the stack has stopped: the origin writes its access log every half second, and
    # what its workers still hold when they exit (SIGTERM).
    every, of_tabs = origin_main_json(site.access_log, wall(plan.start, offset),
                                      wall(load["last_answer"], offset))
    window = max(plan.duration, load["last_answer"] - plan.start)
    answered = load["answered"]
    edge = [s.edge_ms for s in samples]
    row = {
        "config": setup.name, "targeted_seconds": setup.targeted_seconds, "tabs": args.tabs,
        "addresses": args.addresses, "window_s": round(window, 3),
        "edge_requests": answered, "edge_rps": answered / window,
        "origin_requests": every, "origin_rps": every / window,
        "origin_requests_tabs": of_tabs, "origin_rps_tabs": of_tabs / window,
        "origin_share": of_tabs / answered if answered else math.nan,
        "errors": load["error_count"], "error_kinds": load["errors"],
        "x_cache": load["x_cache"], "status": load["status"],
        "connections": load["connections"], "reconnects": load["retries"],
        "edge_latency_ms": load["latency_ms"], "schedule_lag_ms": load["lag_ms"],
        "load_max_rss_mb": load["max_rss_mb"],
        "cpu_percent": {k: 100 * v / window for k, v in cpu.items()},
        "varnish": {c: counters.get(c, 0) - counters_before.get(c, 0) for c in COUNTERS},
        "publish": {"n": len(samples), "edge_p50_ms": percentile(edge, 50),
                    "edge_max_ms": max(edge, default=math.nan),
                    "live_p50_ms": percentile([s.live_ms for s in samples if s.live_ms], 50),
                    "returned_p50_ms": percentile([s.returned_ms for s in samples], 50),
                    "purge_p50_ms": percentile([s.purge_ms for s in samples if s.purge_ms], 50),
                    "purged_by": sorted({s.purged_by for s in samples})},
        "edge_check": checked,
    }
    return row, samples


def stage_final(site: DifusorSite, corte: Corte) -> Path:
    drop = site.root / "paquetes"
    final = drop / f"{corte.name}.zip"
    os.rename(stage(drop, corte, "full"), final)
    return final


def run(root: Path, setups: list[Setup], args: argparse.Namespace
        ) -> tuple[list[dict[str, Any]], list[PublishSample]]:
    open_for_nginx(root)  # varnishd's users must reach the VCL inside our private temp folder
    rows: list[dict[str, Any]] = []
    samples: list[PublishSample] = []
    with ExitStack() as stack:
        poller = Poller(root / "poller.log")
        stack.callback(poller.child.stop)
        for setup in setups:
            print(f"{setup.name}: {args.tabs:,} tabs, every {args.interval:g} s for "
                  f"{args.duration:g} s, targeted_seconds = {setup.targeted_seconds}", flush=True)
            row, mine = run_setup(root, setup, poller, args)
            rows.append(row)
            samples.extend(mine)
    return rows, samples


# -- the report ----------------------------------------------------------------------------------

def reduction(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """How many times fewer origin requests with targeted caching. Conservative: without it,
    only the tabs' own passes count; with it, every main.json request that reached the origin
    (misses the poller or the edge check caused included)."""
    without, with_ = rows[0], rows[1]
    return {
        "without_origin_rps": without["origin_rps_tabs"], "with_origin_rps": with_["origin_rps"],
        "factor": (without["origin_rps_tabs"] / with_["origin_rps"]) if with_["origin_rps"]
        else None,
        "tabs_only_factor": (without["origin_rps_tabs"] / with_["origin_rps_tabs"])
        if with_["origin_rps_tabs"] else None,
    }


def targets(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for row in rows:
        worst = row["publish"]["edge_max_ms"]
        out.append({"target": f"{row['config']}: publish → edge max <= {EDGE_TARGET_MS:.0f} ms",
                    "value": round(worst, 1), "ok": worst <= EDGE_TARGET_MS})
        out.append({"target": f"{row['config']}: no errors", "value": row["errors"],
                    "ok": row["errors"] == 0})
    return out


def print_report(rows: list[dict[str, Any]], cut: dict[str, Any], goals: list[dict[str, Any]]
                 ) -> None:
    print()
    print(table(
        ["config", "tabs", "edge req/s", "origin req/s", "of it tabs", "origin share",
         "publish→edge p50 ms", "max ms", "errors"],
        [[r["config"], r["tabs"], r["edge_rps"], r["origin_rps"], r["origin_rps_tabs"],
          f"{r['origin_share']:.2%}", r["publish"]["edge_p50_ms"], r["publish"]["edge_max_ms"],
          r["errors"]] for r in rows],
        "main.json polled through Varnish (origin: its access log, main.json lines in the window)"))
    print()
    print(table(
        ["config", "edge p50 ms", "p99", "X-Cache HIT", "MISS", "backend_req", "live p50 ms",
         "purge p50", "returned p50", "CPU% origin", "varnish", "load"],
        [[r["config"], r["edge_latency_ms"]["p50"], r["edge_latency_ms"]["p99"],
          r["x_cache"].get("HIT", 0), r["x_cache"].get("MISS", 0), r["varnish"]["backend_req"],
          r["publish"]["live_p50_ms"], r["publish"]["purge_p50_ms"],
          r["publish"]["returned_p50_ms"],
          r["cpu_percent"]["origin"], r["cpu_percent"]["varnish"], r["cpu_percent"]["load"]]
         for r in rows],
        "detail: tabs' response time, their X-Cache, Varnish backend requests, publish stages, "
        "CPU (% of one core)"))
    print()
    if cut["factor"] is not None:
        print(f"targeted caching: {cut['without_origin_rps']:.1f} → {cut['with_origin_rps']:.2f} "
              f"origin req/s for main.json, {cut['factor']:,.0f}x fewer (counting every request "
              "the origin answered with it, the latency poller's and edge check's included)")
    for goal in goals:
        print(f"target {goal['target']}: {goal['value']} -> {'meets' if goal['ok'] else 'MISSES'}")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="200 tabs for 3 s, 2 cortes")
    ap.add_argument("--tabs", type=int, help="simulated tabs (2,000; quick 200)")
    ap.add_argument("--interval", type=float, default=10.0,
                    help="seconds between one tab's polls (10: sites poll every 60 s)")
    ap.add_argument("--duration", type=float, help="seconds of load per configuration (40; "
                    "quick 3)")
    ap.add_argument("--publishes", type=int, help="cortes published under load (5; quick 2)")
    ap.add_argument("--targeted-seconds", type=int, default=5,
                    help="targeted_seconds of the second configuration (5)")
    ap.add_argument("--workdir", type=Path, help="where the temporary folders go (system temp)")
    ap.add_argument("--max-seconds", type=int, help="hard limit for the whole run (600; quick 200)")
    ap.add_argument("--tabs-process", help=argparse.SUPPRESS)  # the load generator's own process
    args = ap.parse_args(argv)
    args.tabs = args.tabs or (200 if args.quick else 2_000)
    args.addresses = min(250 * 254, math.ceil(args.tabs / TABS_PER_ADDRESS))
    args.duration = args.duration or (3.0 if args.quick else 40.0)
    args.publishes = args.publishes if args.publishes is not None else (2 if args.quick else 5)
    args.max_seconds = args.max_seconds or (200 if args.quick else 600)
    if not 1 <= args.targeted_seconds <= 60:
        ap.error("--targeted-seconds: between 1 and 60 (what [[cdn]] accepts)")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.tabs_process:
        return tabs_process(args.tabs_process)
    if not os.access(VARNISHD, os.X_OK):
        raise BenchError(f"varnishd not found ({VARNISHD}): apt-get install varnish")
    guard(args.max_seconds)
    setups = [Setup("no-targeted", 0), Setup("targeted", args.targeted_seconds)]
    load_before = machine_load()
    print_load("before", load_before)
    with tempfile.TemporaryDirectory(prefix="difusor-bench-", dir=args.workdir) as tmp:
        rows, samples = run(Path(tmp), setups, args)
    load_after = machine_load()
    print_load("after", load_after)
    cut = reduction(rows)
    goals = targets(rows)
    print_report(rows, cut, goals)
    path = write_result(NAME, {
        "quick": args.quick,
        "settings": {"tabs": args.tabs, "addresses": args.addresses,
                     "tabs_per_address": TABS_PER_ADDRESS, "interval_s": args.interval,
                     "duration_s": args.duration, "publishes": args.publishes,
                     "targeted_seconds": args.targeted_seconds, "poller_interval_ms": 2,
                     "request_timeout_s": REQUEST_TIMEOUT},
        "configs": rows, "reduction": cut, "targets": goals,
        "samples": [asdict(s) for s in samples],
        "load_before": load_before, "load_after": load_after,
    })
    print(f"result: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
