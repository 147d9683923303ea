"""The console's cost inside one ``difusor run``: requests/s on /json/main.json in short slots,
alternating the console frozen and live with 20 open pages.

    python bench/console_slots.py [--quick] [--slots N] [--seconds S] [--sessions N]
                                  [--wrk-cpu C]

``console_cost.py`` compares two fresh ``difusor run`` (console off / on). On these two shared
cores, where a fresh run's threads land moves its requests/s by ±30 % from one run to the next,
far more than the 5 % to be shown; even nginx alone moves 31k–46k req/s between 5-second runs.
Here one run serves throughout, with the console (its user,
its process, ``--sessions`` logged-in pages each reading every byte of ``GET /eventos``), and
``wrk -t1 -c64`` runs in slots of S seconds (default 5) in the order A B B A A B B A …:

- A "consola congelada": the console's processes stopped (SIGSTOP). They take no CPU and wake
  nothing; for the web server it is as if there were no console. The pages stay connected.
- B "consola en vivo": resumed (SIGCONT) 1 s before the slot. It then also reads the log lines
  written while it was frozen: that catch-up is charged to B.

Reported: each side's median, the median of the ratios of neighbouring slots (B over the mean
of the A slots beside it) with a 90 % bootstrap interval (how much the noise leaves of it: the
more slots, the narrower), the console's CPU per request in B, and the events each page
received in B (proof that it was live). Target: drop ≤ 5 %.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from console_cost import TARGET_DROP, Parts, build_site, open_pages
from harness import Child, guard, machine_load, print_load, wait_serving
from results import table, write_result
from serve_throughput import wrk
from sites import main_json_payload

NAME = "console_slots"
SETTLE_S = 1.0  # between a change of side and its slot


def order(slots: int) -> list[str]:
    """A B B A A B B A …: drift over the run weighs on both sides alike."""
    return ["ABBA"[i % 4] for i in range(slots)]


def freeze(pids: list[int], sig: signal.Signals) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


def run_slots(root: Path, args: argparse.Namespace) -> dict[str, Any]:
    payload, source = main_json_payload()
    setup = build_site(root / "difusor", payload)
    child = Child("difusor run", [sys.executable, "-m", "difusor", "run", "--config",
                                  str(setup.configs["B"])], setup.root / "run.out")
    slots: list[dict[str, Any]] = []
    streams = []
    parts = Parts()
    try:
        wait_serving(child, setup.url + "/_difusor/health")
        streams = open_pages(setup, child, args.sessions)
        parts = Parts.of(child)
        if not parts.console:
            raise RuntimeError("the console process is not among difusor run's children")
        wrk(setup.url, 2, args.connections, args.wrk_cpu)  # warm-up
        frozen = False
        for i, side in enumerate(order(args.slots)):
            want = side == "A"
            if want != frozen:
                freeze(parts.console, signal.SIGSTOP if want else signal.SIGCONT)
                frozen = want
                time.sleep(SETTLE_S)
            seen = [s.states for s in streams]
            before = parts.cpu()
            got = wrk(setup.url, args.seconds, args.connections, args.wrk_cpu)
            after = parts.cpu()
            slot = {"slot": i + 1, "side": side, "rps": got["rps"], "p99_ms": got["p99_ms"],
                    "errors": got["errors"],
                    "console_cpu_s": after["console"] - before["console"],
                    "web_cpu_s": after["web"] - before["web"],
                    "events_min": min(s.states - n for s, n in zip(streams, seen, strict=True))}
            slots.append(slot)
            print(f"  slot {i + 1:3d} {side}  {got['rps']:10,.0f} req/s  consola "
                  f"{slot['console_cpu_s']:.2f} s CPU, eventos mín/página {slot['events_min']}",
                  flush=True)
        broken = [s.error for s in streams if s.error]
        if broken:
            raise RuntimeError(f"{len(broken)} event streams broke: {broken[:3]}")
    finally:
        freeze(parts.console, signal.SIGCONT)
        for s in streams:
            s.stop()
        child.stop()
    return {"slots": slots, "payload": {"bytes": len(payload), "source": source}}


def bootstrap_median(values: list[float], rounds: int = 2000, seed: int = 7
                     ) -> tuple[float, float]:
    """A 90 % interval for the median (percentile bootstrap): how far the noise leaves it."""
    rng = random.Random(seed)
    medians = sorted(statistics.median(rng.choices(values, k=len(values)))
                     for _ in range(rounds))
    return medians[int(0.05 * rounds)], medians[int(0.95 * rounds) - 1]


def summarize(slots: list[dict[str, Any]], seconds: int) -> dict[str, Any]:
    a = [s["rps"] for s in slots if s["side"] == "A"]
    b = [s["rps"] for s in slots if s["side"] == "B"]
    ratios = []
    for i, s in enumerate(slots):
        if s["side"] != "B":
            continue
        beside = [slots[j]["rps"] for j in (i - 1, i + 1, i - 2, i + 2)
                  if 0 <= j < len(slots) and slots[j]["side"] == "A"][:2]
        if beside:
            ratios.append(s["rps"] / statistics.mean(beside))
    in_b = [s for s in slots if s["side"] == "B"]
    requests = sum(s["rps"] * seconds for s in in_b)
    console_cpu = sum(s["console_cpu_s"] for s in in_b)
    ratio = statistics.median(ratios)
    low, high = bootstrap_median(ratios)
    return {
        "median_rps_A": statistics.median(a), "median_rps_B": statistics.median(b),
        "ratio_of_medians": statistics.median(b) / statistics.median(a),
        "median_neighbour_ratio": ratio, "ratio_90ci": [low, high],
        "drop": 1 - ratio, "target_drop": TARGET_DROP,
        "meets_target": 1 - ratio <= TARGET_DROP,
        "console_cpu_s_per_s": console_cpu / (seconds * len(in_b)),
        "console_us_per_request": 1e6 * console_cpu / requests if requests else None,
        "events_per_page_min_per_s": min(s["events_min"] for s in in_b) / seconds,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="8 slots of 2 s (smoke test)")
    ap.add_argument("--slots", type=int, help="slots of wrk, both sides (default 40)")
    ap.add_argument("--seconds", type=int, help="seconds per slot (default 5)")
    ap.add_argument("--sessions", type=int, default=20, help="open console pages (default 20)")
    ap.add_argument("--connections", type=int, default=64)
    ap.add_argument("--wrk-cpu", type=int, help="hold wrk to this core (taskset)")
    args = ap.parse_args(argv)
    args.slots = max(4, args.slots or (8 if args.quick else 40))
    args.seconds = args.seconds or (2 if args.quick else 5)
    guard(int(args.slots * (args.seconds + SETTLE_S + 1)) + 180)
    load_before = machine_load()
    print_load("before", load_before)
    with tempfile.TemporaryDirectory(prefix="difusor-bench-") as tmp:
        got = run_slots(Path(tmp), args)
    s = summarize(got["slots"], args.seconds)
    load_after = machine_load()
    print(table(["", "value"], [
        ["req/s, console frozen (A), median", s["median_rps_A"]],
        ["req/s, console live + pages (B), median", s["median_rps_B"]],
        ["B / neighbouring A, median (90 % interval)",
         f"{s['median_neighbour_ratio']:.3f} ({s['ratio_90ci'][0]:.3f}–{s['ratio_90ci'][1]:.3f})"],
        ["console CPU (CPU-s per s; µs per request)",
         f"{s['console_cpu_s_per_s']:.3f}; {s['console_us_per_request']:.1f}"],
        ["events per page per second in B, least", f"{s['events_per_page_min_per_s']:.2f}"],
    ], f"{args.slots} slots of {args.seconds} s, wrk -t1 -c{args.connections}, "
       f"{args.sessions} pages"))
    print(f"drop {100 * s['drop']:.1f} % (target ≤ {100 * TARGET_DROP:.0f} %): "
          f"{'meets' if s['meets_target'] else 'MISSES'}")
    print_load("after", load_after)
    path = write_result(NAME, {"quick": args.quick, "slots": args.slots,
                               "seconds": args.seconds, "pages": args.sessions,
                               "connections": args.connections, **got, "summary": s,
                               "load_before": load_before, "load_after": load_after})
    print(f"result: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
