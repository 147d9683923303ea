"""What the embedded server refuses: ``state/shield/decisions.json``, read by every web worker.

The embedded server's enforcement contract (like ``nginxconf`` for nginx), kept here so the
server depends on nothing downstream. Written by the shield service and by ``difusor shield``
commands (a read-modify-write under a file lock, then an atomic replace), so it works whether or
not ``difusor run`` is running.

    {"rev": 12, "updated": 1733712000.0,
     "bans": {"203.0.113.7": {"until": …, "since": …, "reason": "…", "by": "auto", "kind": "ip"}},
     "throttles": {"203.0.113.7": {"rate": 20.0, "until": …, …},
                   "198.51.100.9 ua:1a2b3c4d": {…}, "192.0.2.0/24": {…}},
     "allow": ["200.23.8.0/24"], "shared": ["198.51.100.9"],
     "attack": {"on": false, "since": null, "by": null}}

Keys: an address, a network (CIDR), or ``ADDRESS ua:TAG`` (``TAG`` = ``ua_tag(user_agent)``).
``by`` is ``auto`` (the detector) or ``operator``; the service keeps the operator's entries.
``shared`` lists addresses seen as carrier-grade NAT (many people): network-wide limits skip them.
"""

from __future__ import annotations

import fcntl
import ipaddress
import os
import time
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from difusor.errors import ShieldError
from difusor.paths import StateLayout

FILE = "decisions.json"


def ua_tag(user_agent: str | None) -> str:
    """A short stable tag for a user agent (the file never holds raw agents)."""
    return format(zlib.crc32((user_agent or "").encode("utf-8", "replace")), "08x")


def ipua_key(ip: str, user_agent: str | None) -> str:
    return f"{ip} ua:{ua_tag(user_agent)}"


def decisions_path(state_dir: Path) -> Path:
    return StateLayout(state_dir).shield / FILE


def normalize_key(key: str) -> str:
    """An address or a network as the file writes it; ShieldError with a Spanish reason."""
    try:
        if "/" in key:
            net = ipaddress.ip_network(key, strict=False)
            return str(net.network_address) if net.num_addresses == 1 else str(net)
        return str(ipaddress.ip_address(key))
    except ValueError:
        raise ShieldError(f"«{key}» no es una dirección IP ni una red CIDR") from None


@dataclass
class Decisions:
    bans: dict[str, dict[str, Any]] = field(default_factory=dict)
    throttles: dict[str, dict[str, Any]] = field(default_factory=dict)
    allow: list[str] = field(default_factory=list)
    shared: list[str] = field(default_factory=list)
    attack: dict[str, Any] = field(default_factory=lambda: {"on": False, "since": None, "by": None})
    rev: int = 0
    updated: float = 0.0

    def to_json(self) -> bytes:
        return orjson.dumps({
            "rev": self.rev, "updated": self.updated, "bans": self.bans,
            "throttles": self.throttles, "allow": self.allow, "shared": self.shared,
            "attack": self.attack,
        }, option=orjson.OPT_INDENT_2)

    @classmethod
    def from_json(cls, data: bytes) -> Decisions:
        raw = orjson.loads(data)
        return cls(bans=dict(raw.get("bans") or {}), throttles=dict(raw.get("throttles") or {}),
                   allow=list(raw.get("allow") or []), shared=list(raw.get("shared") or []),
                   attack=dict(raw.get("attack") or {"on": False, "since": None, "by": None}),
                   rev=int(raw.get("rev") or 0), updated=float(raw.get("updated") or 0.0))

    def prune(self, now: float) -> bool:
        """Drop lapsed bans and throttles; True when something went."""
        before = len(self.bans) + len(self.throttles)
        self.bans = {k: v for k, v in self.bans.items() if v.get("until", 0) > now}
        self.throttles = {k: v for k, v in self.throttles.items() if v.get("until", 0) > now}
        return len(self.bans) + len(self.throttles) != before


def load(path: Path) -> Decisions:
    """The file's decisions (empty when there is none; a damaged file reads as empty too, so a
    half-written file can never take the web server down)."""
    try:
        return Decisions.from_json(path.read_bytes())
    except FileNotFoundError:
        return Decisions()
    except (OSError, ValueError, TypeError, AttributeError):
        return Decisions()


def save(path: Path, decisions: Decisions) -> None:
    """Replace the file atomically (a reader sees the old state or the new one)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    decisions.rev += 1
    decisions.updated = time.time()
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(decisions.to_json())
    os.replace(tmp, path)


@contextmanager
def edit(path: Path) -> Iterator[Decisions]:
    """Read-modify-write under an exclusive lock; saved when the block ends without error."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path.with_name(path.name + ".lock"), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        decisions = load(path)
        yield decisions
        save(path, decisions)
    finally:
        os.close(fd)  # closing releases the lock


# -- the operator's hand (``difusor shield …``): each returns what changed, for the ledger ------


def block(path: Path, key: str, minutes: float, reason: str) -> dict[str, Any]:
    key = normalize_key(key)
    now = time.time()
    entry = {"until": now + minutes * 60, "since": now, "reason": reason, "by": "operator",
             "kind": "net" if "/" in key else "ip"}
    with edit(path) as d:
        if _covered(key, d.allow):
            raise ShieldError(f"{key} está en la lista blanca del operador; quítalo primero con "
                              f"«difusor shield allow {key} --remove»")
        d.bans[key] = entry
    return {"key": key, **entry}


def unblock(path: Path, key: str) -> list[str]:
    """Lift every ban and throttle on ``key`` (and on its address + user agent keys)."""
    key = normalize_key(key)
    with edit(path) as d:
        gone = [k for k in (*d.bans, *d.throttles) if k == key or k.startswith(key + " ua:")]
        for k in gone:
            d.bans.pop(k, None)
            d.throttles.pop(k, None)
    return sorted(set(gone))


def allow(path: Path, network: str, *, remove: bool = False) -> tuple[str, bool, list[str]]:
    """Add (or remove) an operator allowlist entry; returns (network, changed, lifted keys)."""
    key = normalize_key(network)
    with edit(path) as d:
        lifted: list[str] = []
        if remove:
            changed = key in d.allow
            d.allow = [n for n in d.allow if n != key]
        else:
            changed = key not in d.allow
            if changed:
                d.allow.append(key)
            for table in (d.bans, d.throttles):
                for k in [k for k in table if _covered(k.split(" ")[0], [key])]:
                    del table[k]
                    lifted.append(k)
    return key, changed, lifted


def attack_mode(path: Path, on: bool) -> dict[str, Any]:
    with edit(path) as d:
        was = bool(d.attack.get("on"))
        d.attack = {"on": on, "since": (d.attack.get("since") if was and on else time.time())
                    if on else None, "by": "operator"}
    return {"on": on, "was": was}


def _covered(key: str, networks: list[str]) -> bool:
    try:
        target = ipaddress.ip_network(key, strict=False)
    except ValueError:
        return False
    for n in networks:
        try:
            net = ipaddress.ip_network(n, strict=False)
        except ValueError:
            continue
        if target.version == net.version and target.subnet_of(net):  # type: ignore[arg-type]
            return True
    return False
