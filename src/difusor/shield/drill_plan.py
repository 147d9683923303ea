"""A shield drill's plan and report: the attack kinds and their defaults, the loopback target,
the visitors' browser user agents, and the per-second numbers a drill adds up to."""

from __future__ import annotations

import ipaddress
import random
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any
from urllib.parse import urlsplit

from difusor.errors import DifusorError

KINDS = ("ip", "distributed", "cachebust", "scan", "slow", "uarotate")
DEFAULT_ATTACKERS = {"ip": 1, "distributed": 200, "cachebust": 1, "scan": 1, "slow": 1,
                     "uarotate": 1}
DEFAULT_CONNECTIONS = {"ip": 32, "distributed": 1, "cachebust": 32, "scan": 32, "slow": 300,
                       "uarotate": 40}
DEFAULT_RATE = {"uarotate": 150.0}  # the attacker's requests/s in all; others: as fast as it can
_PLATFORMS = ("Linux; Android 14; SM-A546E", "Linux; Android 13; moto g54", "iPhone; CPU iPhone "
              "OS 18_1 like Mac OS X", "Windows NT 10.0; Win64; x64", "Macintosh; Intel Mac OS X "
              "14_6", "Linux; Android 12; Redmi Note 11", "X11; Linux x86_64")


@dataclass
class DrillPlan:
    kind: str
    target: str  # http://127.x.y.z:PORT/ (or [::1])
    duration: float = 30.0
    attack_after: float = 3.0
    visitors: int = 50
    cgnat_users: int = 500
    attackers: int | None = None  # attacker addresses (kind's default when None)
    connections: int | None = None  # connections per attacker address
    rate: float | None = None  # the attackers' requests/s in all (kind's default when None)
    poll: float = 5.0  # visitors' main.json period
    cgnat_poll: float = 60.0
    seed: int = 2024


@dataclass
class DrillReport:
    kind: str
    target: str
    duration: float
    attack_after: float
    attackers: int
    legit_requests: int = 0
    legit_ok: int = 0
    legit_success_pct: float = 100.0
    visitors_refused: int = 0  # visitors (own address) refused at least once
    cgnat_users: int = 0
    cgnat_users_active: int = 0
    cgnat_users_refused: int = 0
    attack_sent: int = 0
    attack_admitted: int = 0
    containment_s: int | None = None
    slow_peak_held: int = 0
    legit_status: dict[str, int] = field(default_factory=dict)
    attack_status: dict[str, int] = field(default_factory=dict)
    per_second: list[dict[str, int]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def check_target(url: str) -> tuple[str, int, bool]:
    """(host, port, ipv6) of a loopback http:// URL; DifusorError (Spanish) for anything else."""
    parts = urlsplit(url)
    if parts.scheme != "http" or not parts.hostname:
        raise DifusorError(f"--target debe ser http://127.x.y.z:PUERTO/ (recibí «{url}»)")
    host = "127.0.0.1" if parts.hostname == "localhost" else parts.hostname
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        ip = None
    if ip is None or not ip.is_loopback:
        raise DifusorError(f"el simulacro solo ataca direcciones de loopback (127.0.0.0/8 o ::1), "
                           f"no «{parts.hostname}»")
    return host, parts.port or 80, ip.version == 6


def source(block: int, n: int) -> str:
    """The n-th address of a role's 127.B.x.y range (never .0 nor .255)."""
    return f"127.{block}.{n // 250}.{n % 250 + 1}"


def browser_agents(count: int, rng: random.Random) -> list[str]:
    """Distinct, plausible browser user agents (what a CGNAT pool of people looks like)."""
    agents: set[str] = set()
    while len(agents) < count:
        platform = rng.choice(_PLATFORMS)
        major = rng.randint(118, 131)
        if rng.random() < 0.3:
            agents.add(f"Mozilla/5.0 ({platform}) AppleWebKit/605.1.15 (KHTML, like Gecko) "
                       f"Version/{rng.randint(15, 18)}.{rng.randint(0, 6)} Mobile/15E148 "
                       f"Safari/604.1")
        else:
            agents.add(f"Mozilla/5.0 ({platform}) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/"
                       f"{major}.0.{rng.randint(1000, 6999)}.{rng.randint(0, 199)} Safari/537.36")
    return sorted(agents)


def tally(plan: DrillPlan, attackers: int, series: dict[str, list[int]],
          legit_status: Counter[str], attack_status: Counter[str], *, visitors_refused: int,
          cgnat_users_active: int, cgnat_users_refused: int) -> DrillReport:
    """The report from a finished drill's per-second counts (see ``Drill.series``)."""
    s = series
    seconds = len(s["sent"])  # every slot the drill counted in (Drill.series)
    legit = sum(s["legit"]) + sum(s["cgnat"])
    ok = sum(s["legit_ok"]) + sum(s["cgnat_ok"])
    start = int(plan.attack_after)
    contained = None
    for k in range(start, seconds):
        if all(s["admitted"][j] <= 0.01 * s["sent"][j] for j in range(k, seconds)):
            contained = k - start
            break
    sent = (attack_status["abierta"] if plan.kind == "slow" else sum(s["sent"]))
    return DrillReport(
        kind=plan.kind, target=plan.target, duration=plan.duration,
        attack_after=plan.attack_after, attackers=attackers,
        legit_requests=legit, legit_ok=ok,
        legit_success_pct=round(100.0 * ok / legit, 3) if legit else 100.0,
        visitors_refused=visitors_refused, cgnat_users=plan.cgnat_users,
        cgnat_users_active=cgnat_users_active,
        cgnat_users_refused=cgnat_users_refused,
        attack_sent=sent,
        attack_admitted=(max(s["held"]) if plan.kind == "slow" else sum(s["admitted"])),
        containment_s=contained, slow_peak_held=max(s["held"]),
        legit_status=dict(legit_status), attack_status=dict(attack_status),
        per_second=[{"t": t, "legit": s["legit"][t] + s["cgnat"][t],
                     "legit_ok": s["legit_ok"][t] + s["cgnat_ok"][t],
                     "cgnat": s["cgnat"][t], "sent": s["sent"][t],
                     "admitted": s["admitted"][t]} for t in range(seconds)],
    )
