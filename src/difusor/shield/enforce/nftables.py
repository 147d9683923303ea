"""nftables: blocked sources dropped in the kernel, before any web server sees a packet.

``[shield] nftables_set = "inet difusor bloqueados"`` names the family, the table and the set.
The first ``apply`` creates what is missing: the table, the set (``ipv4_addr``, with intervals
for networks and per-element timeouts), a twin set ``<name>6`` for IPv6 in the ``inet`` and
``ip6`` families, and a chain on the ``input`` hook that drops both. Each element carries its own
timeout, so a block lapses in the kernel even if the difusor is stopped; ``apply`` adds what is
missing, deletes what is no longer wanted and refreshes an element whose expiry moved (a ban that
grew), all in one ``nft -f`` transaction: the set is never seen half-updated.
"""

from __future__ import annotations

import json
import math
import re
import subprocess
import time
from dataclasses import dataclass

from difusor.config import NFTABLES_FAMILIES, Config, nftables_set
from difusor.errors import ShieldError
from difusor.shield.enforce.base import EnforcerBase, Log, Network, network, render_key
from difusor.shield.model import Block

NFT = "nft"
TIMEOUT = 15.0
DRIFT = 5  # seconds an element's kernel expiry may differ from the wanted one before a refresh


@dataclass(frozen=True)
class SetName:
    family: str
    table: str
    name: str

    def of(self, version: int) -> str:
        return self.name if version == 4 else f"{self.name}6"

    @property
    def chain(self) -> str:
        return f"{self.name}_entrada"


class NftablesEnforcer(EnforcerBase):
    name = "nftables"

    def __init__(self, cfg: Config, *, log: Log | None = None, nft: str = NFT) -> None:
        """Reads ``[shield] nftables_set`` (its form checked when loading)."""
        super().__init__(cfg, log=log)
        self.set = SetName(*nftables_set(cfg.shield.nftables_set))
        self.nft = nft
        self.versions = NFTABLES_FAMILIES[self.set.family]
        self._ready = False

    def _sync(self, blocks: list[Block], attack_mode: bool) -> bool:
        if not self._ready:
            self._ensure()
        now = time.time()
        wanted = {k: b for k, b in _outermost(blocks).items() if b.until > now}
        have = self._elements()
        s = self.set
        batch: list[str] = []
        for key, expires in have.items():
            block = wanted.get(key)
            if block is None or abs((block.until - now) - expires) > DRIFT:
                batch.append(f"delete element {s.family} {s.table} "
                             f"{s.of(_version(key))} {{ {key} }}")
        for key, block in wanted.items():
            if _version(key) not in self.versions:
                self.log(f"escudo/nftables: {key} no cabe en la familia {s.family}; no se bloquea "
                         "en el núcleo")
                continue
            if key in have and abs((block.until - now) - have[key]) <= DRIFT:
                continue
            seconds = max(1, math.ceil(block.until - now))
            comment = _comment(block.reason)
            batch.append(f"add element {s.family} {s.table} {s.of(_version(key))} "
                         f"{{ {key} timeout {seconds}s{comment} }}")
        if not batch:
            return False
        self._run(["-f", "-"], "\n".join(batch) + "\n")
        return True

    # -- nft ----------------------------------------------------------------------------------

    def _ensure(self) -> None:
        """Table, set(s) and chain: ``add`` leaves existing ones alone; the drop rule is added
        only when the chain does not have it yet."""
        s = self.set
        lines = [f"add table {s.family} {s.table}"]
        for v in self.versions:
            lines.append(f"add set {s.family} {s.table} {s.of(v)} {{ type ipv{v}_addr; "
                         "flags interval, timeout; }")
        lines.append(f"add chain {s.family} {s.table} {s.chain} {{ type filter hook input "
                     "priority -10; policy accept; }")
        self._run(["-f", "-"], "\n".join(lines) + "\n")
        chain = json.loads(self._run(["-j", "list", "chain", s.family, s.table, s.chain]))
        present = {expr["match"]["right"] for item in chain.get("nftables", [])
                   for expr in item.get("rule", {}).get("expr", []) if "match" in expr}
        rules = [f"add rule {s.family} {s.table} {s.chain} {'ip' if v == 4 else 'ip6'} saddr "
                 f"@{s.of(v)} drop" for v in self.versions if f"@{s.of(v)}" not in present]
        if rules:
            self._run(["-f", "-"], "\n".join(rules) + "\n")
        self._ready = True

    def _elements(self) -> dict[str, float]:
        """What the kernel holds now: key → seconds until it lapses."""
        found: dict[str, float] = {}
        s = self.set
        for v in self.versions:
            try:
                doc = json.loads(self._run(["-j", "list", "set", s.family, s.table, s.of(v)]))
            except ShieldError:
                self._ready = False  # someone flushed the ruleset: recreate it next time
                raise
            for item in doc.get("nftables", []):
                for elem in item.get("set", {}).get("elem", []):
                    found.update(_element(elem))
        return found

    def _run(self, args: list[str], stdin: str | None = None) -> str:
        try:
            done = subprocess.run([self.nft, *args], input=stdin, capture_output=True, text=True,
                                  timeout=TIMEOUT)
        except FileNotFoundError:
            raise ShieldError("no encuentro «nft» (paquete nftables): no puedo bloquear en el "
                              "núcleo; instálalo o deja vacío [shield] nftables_set") from None
        except subprocess.TimeoutExpired:
            raise ShieldError(f"nft no respondió en {TIMEOUT:.0f} s") from None
        if done.returncode != 0:
            first = next((x.strip() for x in done.stderr.splitlines() if x.strip()),
                         f"salió con {done.returncode}")
            hint = (" (¿se ejecuta como root o con CAP_NET_ADMIN?)"
                    if "ermission" in done.stderr or "ermitted" in done.stderr else "")
            raise ShieldError(f"nft rechazó el cambio: {first[:240]}{hint}")
        return done.stdout


def _net(key: str) -> Network:
    net = network(key)
    if net is None:  # keys reach drivers normalised by EnforcerBase.apply
        raise ShieldError(f"clave de bloqueo inválida «{key}»")
    return net


def _version(key: str) -> int:
    return _net(key).version


def _outermost(blocks: list[Block]) -> dict[str, Block]:
    """An interval set refuses overlapping elements: a network swallows the addresses and smaller
    networks inside it (keeping the latest expiry)."""
    kept: list[tuple[Network, Block]] = []
    for block in sorted(blocks, key=lambda b: _net(b.key).prefixlen):
        net = _net(block.key)
        for i, (outer, held) in enumerate(kept):
            if outer.version == net.version and net.subnet_of(outer):  # type: ignore[arg-type]
                if held.until < block.until:
                    kept[i] = (outer, Block(held.key, block.until, held.reason))
                break
        else:
            kept.append((net, block))
    return {b.key: b for _, b in kept}


def _element(elem: dict) -> dict[str, float]:
    body = elem.get("elem", elem)
    val = body.get("val", body) if isinstance(body, dict) else body
    expires = float(body.get("expires", 0)) if isinstance(body, dict) else 0.0
    if isinstance(val, dict) and "prefix" in val:
        net = network(f"{val['prefix']['addr']}/{val['prefix']['len']}")
    elif isinstance(val, str):
        net = network(val)
    else:
        return {}
    if net is None:
        return {}
    return {render_key(net): expires}


def _comment(reason: str) -> str:
    text = re.sub(r'["\\\n\r;{}]', "", reason)[:100].strip()
    return f' comment "{text}"' if text else ""
