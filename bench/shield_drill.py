"""Attack drills against ``difusor run`` (embedded server + shield) and against nginx with
``limit_req``, in the same run, over the same corte.

    python bench/shield_drill.py [--quick] [--kinds ip,distributed,...] [--duration S]

nginx runs the configuration ``difusor nginx-config`` generates, whose ``limit_req`` follows
nginx's own advice for a rate limit per client: a zone keyed on ``$binary_remote_addr``,
``burst`` with ``nodelay`` and ``limit_req_status 429`` (``[nginx] limit_req_rate`` 50 r/s,
``limit_req_burst`` 200). Each scenario gets fresh servers (no ban or zone state carried over)
and the same visitors: 50 on their own addresses and a CGNAT pool of 500 users behind one address.
The anchor is nginx in the same run: its attacker requests admitted against the shield's.
Targets (issue 6): one address contained ≤ 5 s, 200 addresses ≤ 15 s, legitimate success
≥ 99.9 % in every attack, the CGNAT pool never refused. Issue 17: one address rotating 40
browser user agents at 150 req/s (``uarotate``, posing as a CGNAT) contained ≤ 10 s.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness import (
    BenchError,
    Child,
    DifusorSite,
    free_port,
    guard,
    machine_load,
    make_site,
    open_for_nginx,
    print_load,
    start_generated_nginx,
    wait_serving,
)
from results import table, write_result

from difusor.demo.election import SyntheticElection
from difusor.demo.packages import archive_bytes
from difusor.shield.drill import KINDS, Drill, DrillPlan

NAME = "shield_drill"
TARGETS = {"ip": 5, "distributed": 15, "uarotate": 10}  # containment, seconds


@dataclass
class Outcome:
    kind: str
    server: str
    legit_success_pct: float
    legit_requests: int
    attack_sent: int
    attack_admitted: int
    containment_s: int | None
    cgnat_users_active: int
    cgnat_users_refused: int
    visitors_refused: int


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="only «ip», 5 s, a smaller crowd")
    ap.add_argument("--kinds", default="", help=f"comma-separated, of {', '.join(KINDS)}")
    ap.add_argument("--duration", type=float, help="seconds per drill (default 30, quick 5)")
    ap.add_argument("--visitors", type=int, help="default 50, quick 20")
    ap.add_argument("--cgnat-users", type=int, help="default 500, quick 200")
    args = ap.parse_args(argv)
    args.kinds = [k for k in args.kinds.split(",") if k] or (
        ["ip"] if args.quick else list(KINDS))
    unknown = set(args.kinds) - set(KINDS)
    if unknown:
        ap.error(f"unknown kinds: {', '.join(sorted(unknown))}")
    args.duration = args.duration or (5.0 if args.quick else 30.0)
    args.visitors = args.visitors if args.visitors is not None else (20 if args.quick else 50)
    args.cgnat_users = (args.cgnat_users if args.cgnat_users is not None
                        else (200 if args.quick else 500))
    return args


# -- the two servers over one corte --------------------------------------------------------

def new_site(root: Path) -> DifusorSite:
    """A fresh difusor folder with the synthetic Irimbo corte live (own SFTP port)."""
    site = make_site(root)
    text = site.config_path.read_text().replace('listen = "127.0.0.1:2222"',
                                                f'listen = "127.0.0.1:{free_port()}"')
    site.config_path.write_text(text)
    corte = next(iter(SyntheticElection().cortes(1)))
    package = root / "paquete.zip"
    package.write_bytes(archive_bytes(corte.files, "zip"))
    site.publisher.publish(package)
    return site


def start_run(site: DifusorSite) -> Child:
    argv = [sys.executable, "-m", "difusor", "run", "--config", str(site.config_path)]
    child = Child("difusor run", argv, site.root / "run.out")
    wait_serving(child, site.url + "/_difusor/health", timeout=40)
    return child


def start_nginx(site: DifusorSite, prefix: Path) -> tuple[Child, str, str]:
    """nginx with the generated configuration (limit_req included) over ``site``'s live corte.
    A free port can be taken before nginx binds it (the attacks leave thousands of loopback
    connections behind): then it starts again on another one."""
    for attempt in range(3):
        try:
            return _start_nginx(site, prefix, free_port())
        except BenchError as exc:
            if "Address already in use" not in str(exc) or attempt == 2:
                raise
    raise AssertionError("unreachable")


def _start_nginx(site: DifusorSite, prefix: Path, port: int) -> tuple[Child, str, str]:
    child = start_generated_nginx(site, prefix, port)
    text = (prefix / "difusor-nginx.conf").read_text()
    limits = [x.strip() for x in text.splitlines() if "limit_req" in x and not x.strip()
              .startswith("#")]
    return child, f"http://127.0.0.1:{port}/", " ".join(dict.fromkeys(limits))


def drill(kind: str, url: str, args: argparse.Namespace) -> dict[str, Any]:
    plan = DrillPlan(kind=kind, target=url, duration=args.duration, visitors=args.visitors,
                     cgnat_users=args.cgnat_users)
    return asyncio.run(Drill(plan).run()).to_dict()


def scenario(kind: str, root: Path, args: argparse.Namespace) -> list[tuple[Outcome, dict]]:
    results = []
    for server in ("difusor", "nginx"):
        site = new_site(root / f"{kind}-{server}")
        open_for_nginx(root, *[p for p in root.rglob("*") if p.is_dir()])
        try:
            if server == "difusor":
                child, url, note = start_run(site), site.url + "/", "difusor run (escudo)"
            else:
                child, url, note = start_nginx(site, root / f"{kind}-nginx-prefix")
            try:
                got = drill(kind, url, args)
            finally:
                child.stop()
        finally:
            site.close()
        outcome = Outcome(kind, server, got["legit_success_pct"], got["legit_requests"],
                          got["attack_sent"], got["attack_admitted"], got["containment_s"],
                          got["cgnat_users_active"], got["cgnat_users_refused"],
                          got["visitors_refused"])
        print(f"  {kind:11s} {server:8s} legit {outcome.legit_success_pct:7.3f} %  attacker "
              f"{outcome.attack_admitted:,}/{outcome.attack_sent:,} admitted  contained "
              f"{_s(outcome.containment_s)}  CGNAT refused {outcome.cgnat_users_refused}/"
              f"{outcome.cgnat_users_active}   ({note})", flush=True)
        results.append((outcome, got))
    return results


def _s(value: int | None) -> str:
    return "never" if value is None else f"{value} s"


def verdict(o: Outcome) -> dict[str, bool]:
    met = {"legit_99_9": o.legit_success_pct >= 99.9, "cgnat_never_refused":
           o.cgnat_users_refused == 0}
    if o.kind in TARGETS:
        met["containment"] = o.containment_s is not None and o.containment_s <= TARGETS[o.kind]
    return met


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    guard(int(len(args.kinds) * 2 * (args.duration + 60) + 120))
    load_before = machine_load()
    print_load("before", load_before)
    outcomes: list[Outcome] = []
    series: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="difusor-bench-shield-") as tmp:
        root = Path(tmp)
        for kind in args.kinds:
            for outcome, got in scenario(kind, root, args):
                outcomes.append(outcome)
                series[f"{kind}/{outcome.server}"] = got["per_second"]
    rows = []
    for kind in args.kinds:
        d, n = [o for o in outcomes if o.kind == kind]
        ratio = (n.attack_admitted / d.attack_admitted) if d.attack_admitted else float("inf")
        rows.append([kind, f"{d.legit_success_pct:.3f} / {n.legit_success_pct:.3f}",
                     f"{d.attack_admitted:,} / {n.attack_admitted:,}",
                     f"{_s(d.containment_s)} / {_s(n.containment_s)}",
                     f"{d.cgnat_users_refused} / {n.cgnat_users_refused}",
                     "∞" if ratio == float("inf") else f"{ratio:.1f}×"])
    print()
    print(table(["ataque", "éxito legítimo % (difusor / nginx)", "admitidas del atacante",
                 "contención", "usuarios CGNAT rechazados", "admitidas nginx ÷ difusor"], rows,
                title=f"Simulacros, {args.duration:.0f} s cada uno, {args.visitors} visitantes + "
                      f"{args.cgnat_users} usuarios CGNAT en una dirección"))
    verdicts = {f"{o.kind}/{o.server}": verdict(o) for o in outcomes}
    missed = [k for k, v in verdicts.items() if k.endswith("/difusor") and not all(v.values())]
    print(f"\ntargets (difusor): {'all met' if not missed else 'missed in ' + ', '.join(missed)}")
    path = write_result(NAME, {
        "quick": args.quick, "duration_s": args.duration, "visitors": args.visitors,
        "cgnat_users": args.cgnat_users, "kinds": args.kinds,
        "outcomes": [o.__dict__ for o in outcomes], "verdicts": verdicts,
        "targets": {"containment_s": TARGETS, "legit_pct": 99.9, "cgnat_refused": 0},
        "per_second": series, "load_before": load_before, "load_after": machine_load(),
    })
    print(f"result: {path}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BenchError as exc:
        print(f"bench error: {exc}", file=sys.stderr)
        sys.exit(2)
