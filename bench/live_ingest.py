"""Live analytics under load: how far behind the access log ``difusor run``'s live ingest runs.

    python bench/live_ingest.py [--quick] [--duration S] [--connections C] [--server S]

``difusor run`` (web server with its access log, live analytics, monitor, shield: as operators
run it; the shield told to let loopback through, or it would ban the benchmark's one address)
runs while ``wrk -t1`` (serve_throughput's load) asks for /json/main.json on loopback for S
seconds (default 60), from one of the two servers serve_throughput compares:

- ``--server difusor`` (default): the embedded server, its own log;
- ``--server nginx``: serve_throughput's nginx (one worker, JSON access log) over the same
  store, as a site behind nginx runs; the live ingest follows nginx's log as an
  ``[[analytics.sources]]`` entry. nginx leaves the machine more room, so the log grows faster.

Meanwhile this process samples every 0.1 s the access log's files (their sizes)
and, whenever the live ingest has the database closed between two rounds, the offset it
committed for each file (a read-only look). The lag of a sampled size is the time until a
committed offset first reached it: how long a line waited, at most, before it could be counted
(the sampling adds up to 0.1 s). Reported: lag p50 / p95 / max, requests/s served, lines
written and rows stored, and memory: the peak RSS of ``difusor run`` (the live ingest is a
thread of it) and of its web server's processes, and the RSS of ``difusor run`` along the run
(bounded?).
"""

from __future__ import annotations

import argparse
import signal
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
from harness import (
    BenchError,
    Child,
    free_port,
    guard,
    machine_load,
    make_site,
    open_for_nginx,
    print_load,
    process_tree,
    processes,
    publish_files,
    start_nginx,
    wait_serving,
)
from results import percentile, table, write_result
from serve_throughput import count_lines, wrk
from sites import main_json_payload, throughput_site

from difusor.analytics.logfile import HEAD, fingerprint, read_head

NAME = "live_ingest"
TARGET_LAG_S = 10.0
TARGET_RPS = 20_000


@dataclass
class Sampler:
    """The access log's files over time, and the offsets the live ingest committed."""

    logs: list[Path]  # folders whose access.log* the live ingest follows
    database: Path
    sizes: dict[str, list[tuple[float, int]]] = field(default_factory=dict)  # fp → (t, size)
    lags: list[float] = field(default_factory=list)
    pending: dict[str, int] = field(default_factory=dict)  # fp → index of first unresolved
    looks: int = 0
    refused: int = 0
    rss: list[tuple[float, float]] = field(default_factory=list)
    _fps: dict[int, str] = field(default_factory=dict)  # inode → fingerprint

    def sample_files(self, now: float) -> None:
        for path in (p for folder in self.logs for p in folder.glob("access.log*")):
            try:
                st = path.stat()
            except FileNotFoundError:
                continue
            fp = self._fps.get(st.st_ino)
            if fp is None:
                fp = fingerprint(read_head(path, HEAD))
                if fp is None:
                    continue
                self._fps[st.st_ino] = fp
            seen = self.sizes.setdefault(fp, [])
            if not seen or seen[-1][1] != st.st_size:
                seen.append((now, st.st_size))

    def look(self, now: float) -> None:
        """The committed offsets, if the database is free (the writer closes it each round)."""
        try:
            con = duckdb.connect(str(self.database), read_only=True)
        except (duckdb.IOException, duckdb.ConnectionException):
            self.refused += 1
            return
        try:
            offsets = dict(con.execute('SELECT fingerprint, "offset" FROM files').fetchall())
        except duckdb.CatalogException:
            offsets = {}
        finally:
            con.close()
        self.looks += 1
        for fp, seen in self.sizes.items():
            done = offsets.get(fp, 0)
            i = self.pending.get(fp, 0)
            while i < len(seen) and seen[i][1] <= done:
                self.lags.append(now - seen[i][0])
                i += 1
            self.pending[fp] = i

    def behind(self) -> int:
        """Sampled sizes not yet reached by a committed offset."""
        return sum(len(seen) - self.pending.get(fp, 0) for fp, seen in self.sizes.items())


def rss_mb(pid: int, field_name: str = "VmRSS") -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field_name + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def run(root: Path, args: argparse.Namespace) -> dict[str, Any]:
    behind_nginx = args.server == "nginx"
    nginx_dir = root / "nginx"
    source = (f'\n[[analytics.sources]]\npath = "{nginx_dir / "access.log"}"\n'
              'format = "nginx-json"\nname = "nginx"\n') if behind_nginx else ""
    site = make_site(root / "difusor", extra_toml=(
        '\n[shield]\nallow = ["127.0.0.0/8"]\n'
        f"\n[analytics]\ninterval = {args.interval}\n{source}"))
    text = site.config_path.read_text().replace('listen = "127.0.0.1:2222"',
                                                f'listen = "127.0.0.1:{free_port()}"')
    site.config_path.write_text(text)
    payload, _ = main_json_payload()
    publish_files(site, "PREP_BENCH.zip", throughput_site(payload))
    site.close()
    # (the embedded server's log too: the health checks below are in it, and ingested)
    logs = [site.root / "state" / "logs", *([nginx_dir] if behind_nginx else [])]
    sampler = Sampler(logs, site.root / "state" / "analytics" / "visitas.duckdb")
    child = Child("difusor run", [sys.executable, "-m", "difusor", "run", "--config",
                                  str(site.config_path)], root / "run.out")
    nginx: Child | None = None
    url = site.url
    stop = threading.Event()
    try:
        wait_serving(child, site.url + "/_difusor/health", timeout=60)
        web = process_tree(processes(), child.proc.pid)[1:]  # the web server and workers
        if behind_nginx:
            open_for_nginx(root)
            port = free_port()
            nginx = start_nginx(nginx_dir, port, site.store.site, access_log=True)
            url = f"http://127.0.0.1:{port}"
            web = process_tree(processes(), nginx.proc.pid)

        def watch() -> None:
            while not stop.wait(0.1):
                now = time.monotonic()
                sampler.sample_files(now)
                sampler.look(now)
                sampler.rss.append((now, rss_mb(child.proc.pid)))

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        began = time.monotonic()
        got = wrk(url, args.duration, args.connections)  # serve_throughput's load
        load_ended = time.monotonic()
        web_peak = {"web": max((rss_mb(p, "VmHWM") for p in web), default=float("nan")),
                    "web_total": sum(rss_mb(p, "VmHWM") for p in web)}
        if nginx is not None:  # its last buffered lines are written as it stops
            nginx.stop(signal.SIGQUIT)
            nginx = None
        deadline = time.monotonic() + 60  # caught up: every sampled size reached
        while sampler.behind() and time.monotonic() < deadline:
            time.sleep(0.2)
        stop.set()
        watcher.join()
        caught_up = time.monotonic() - load_ended
        if not child.alive():
            raise BenchError(f"difusor run exited:\n{child.tail()}")
        peak = {"difusor_run": rss_mb(child.proc.pid, "VmHWM"), **web_peak}
    finally:
        stop.set()
        if nginx is not None:
            nginx.stop(signal.SIGQUIT)  # writes its buffered lines as it goes
        child.stop(signal.SIGTERM, timeout=30)
    per_log = {"nginx" if folder == nginx_dir else "difusor":
               sum(count_lines(p) for p in folder.glob("access.log*")) for folder in logs}
    written = sum(per_log.values())
    con = duckdb.connect(str(sampler.database), read_only=True)
    try:
        (stored,) = con.execute("SELECT count(*) FROM requests").fetchone()  # type: ignore[misc]
        # (the monitor's own probes are in the embedded log and never stored: not visitors)
        by_source = dict(con.execute(
            "SELECT source, count(*) FROM requests GROUP BY source").fetchall())
    finally:
        con.close()
    during = [r for t, r in sampler.rss if began <= t <= load_ended]
    return {"wrk": got, "seconds": load_ended - began, "lags": sampler.lags,
            "looks": sampler.looks, "refused_looks": sampler.refused,
            "caught_up_after_s": caught_up, "behind_at_end": sampler.behind(),
            "lines_written": written, "rows_stored": stored, "files": len(sampler.sizes),
            "lines_per_log": per_log, "rows_per_source": by_source,
            "peak_rss_mb": peak, "rss_run_mb": {
                "max": max(during, default=float("nan")),
                "first_third_max": max(during[:len(during) // 3], default=float("nan")),
                "last_third_max": max(during[-len(during) // 3:], default=float("nan"))}}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="5 s of load (smoke test)")
    ap.add_argument("--duration", type=int, help="seconds of load (default 60; quick 5)")
    ap.add_argument("--connections", type=int, default=64)
    ap.add_argument("--server", choices=("difusor", "nginx"), default="difusor",
                    help="who serves and writes the log (default: the embedded server)")
    ap.add_argument("--interval", type=float, default=5.0,
                    help="[analytics] interval of the run (default 5, the configuration's)")
    args = ap.parse_args(argv)
    args.duration = args.duration or (5 if args.quick else 60)
    guard(args.duration + 300)
    load_before = machine_load()
    print_load("before", load_before)
    with tempfile.TemporaryDirectory(prefix="difusor-bench-") as tmp:
        got = run(Path(tmp), args)
    load_after = machine_load()
    print_load("after", load_after)
    lags = got.pop("lags")
    summary = {"p50_s": percentile(lags, 50), "p95_s": percentile(lags, 95),
               "max_s": max(lags, default=float("nan")), "samples": len(lags)}
    rps = got["wrk"]["rps"]
    print(table(["", "value"], [
        ["requests/s served (wrk -t1)", rps],
        ["lines written / rows stored", f"{got['lines_written']:,} / {got['rows_stored']:,}"],
        ["lag p50 / p95 / max (s)",
         f"{summary['p50_s']:.2f} / {summary['p95_s']:.2f} / {summary['max_s']:.2f}"],
        ["caught up after the load (s)", got["caught_up_after_s"]],
        ["peak RSS difusor run / web server's largest process (MB)",
         f"{got['peak_rss_mb']['difusor_run']:.0f} / {got['peak_rss_mb']['web']:.0f}"],
        ["RSS of difusor run, max in 1st / 3rd third (MB)",
         f"{got['rss_run_mb']['first_third_max']:.0f} / "
         f"{got['rss_run_mb']['last_third_max']:.0f}"],
    ], f"live ingest, {got['seconds']:.0f} s of load on {args.server}, [analytics] interval "
       f"{args.interval} s"))
    ok = summary["max_s"] <= TARGET_LAG_S and not got["behind_at_end"]
    print(f"lag max {summary['max_s']:.1f} s (target ≤ {TARGET_LAG_S:.0f} s) at {rps:,.0f} "
          f"req/s (target ≥ {TARGET_RPS:,}): {'meets' if ok and rps >= TARGET_RPS else 'MISSES'}")
    path = write_result(NAME if args.server == "difusor" else f"{NAME}_{args.server}", {
        "quick": args.quick, "server": args.server, "duration_s": args.duration,
        "connections": args.connections,
        "interval_s": args.interval, **got, "lag": summary, "target_lag_s": TARGET_LAG_S,
        "target_rps": TARGET_RPS, "meets_target": ok and rps >= TARGET_RPS,
        "load_before": load_before, "load_after": load_after,
    })
    print(f"result: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
