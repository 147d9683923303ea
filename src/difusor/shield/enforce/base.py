"""The contract every enforcement point fulfils, and the one place that checks, logs and times it.

A driver implements only ``_sync(blocks, attack_mode) -> changed``: make its enforcement point
hold exactly these blocks (already validated, de-duplicated and sorted) and say whether it had to
change anything. ``EnforcerBase.apply`` does the rest once for all of them: keys that are not an
address or a network are dropped with a warning (one bad key must not leave every other attacker
free), one Spanish log line per change, and any unexpected ``OSError`` becomes a ``ShieldError``.

Drivers are named in ``DRIVERS`` and imported only when configured, so the Cloudflare SDK loads
only when ``[shield.cloudflare]`` is set. Their keys (``[shield]``) are checked when difusor.toml
is loaded (``ShieldSettings.problem``), never by the drivers.
"""

from __future__ import annotations

import ipaddress
import os
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import ClassVar
from zoneinfo import ZoneInfo

from difusor.config import Config
from difusor.errors import ShieldError
from difusor.providers import DriverTable
from difusor.shield.model import Block, Enforcer

DRIVERS: DriverTable[EnforcerBase] = DriverTable({
    "nginx": "difusor.shield.enforce.nginx:NginxEnforcer",
    "nftables": "difusor.shield.enforce.nftables:NftablesEnforcer",
    "cloudflare": "difusor.shield.enforce.cloudflare:CloudflareEnforcer",
}, unknown="punto de bloqueo desconocido «{name}»; usa uno de: {known}")

Log = Callable[[str], None]
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def _quiet(_line: str) -> None:
    pass


def network(key: str) -> Network | None:
    """A block key as a network (a single address is a /32 or /128); None when it is neither."""
    try:
        return ipaddress.ip_network(key.strip(), strict=False)
    except ValueError:
        return None


def render_key(net: Network) -> str:
    """``203.0.113.7`` for one address, ``203.0.113.0/24`` for a network (what nginx, nft and
    Cloudflare all accept)."""
    return str(net.network_address) if net.prefixlen == net.max_prefixlen else str(net)


def one_line(text: str, limit: int = 200) -> str:
    """A reason fit for a comment or a log line: no line breaks, bounded."""
    return " ".join(text.split())[:limit]


class EnforcerBase(ABC):
    """One configured enforcement point. Subclasses set ``name`` and implement ``_sync``."""

    name: ClassVar[str]

    def __init__(self, cfg: Config, *, log: Log | None = None) -> None:
        self.cfg = cfg
        self.log = log or _quiet
        self.zone = ZoneInfo(cfg.site.timezone)
        self.applied = 0  # how many times the point actually changed (tests, status)

    @classmethod
    def from_config(cls, cfg: Config, *, env: Mapping[str, str], log: Log | None = None
                    ) -> EnforcerBase:
        """The driver for ``cfg``; reads its secret here (from ``env``), never deeper."""
        return cls(cfg, log=log)

    def when(self, epoch: float) -> str:
        """An expiry as the operator reads it: local time of the site, to the second."""
        return datetime.fromtimestamp(epoch, self.zone).isoformat(timespec="seconds")

    def apply(self, blocks: Sequence[Block], attack_mode: bool) -> None:
        """Make this point hold exactly ``blocks``; ShieldError (one Spanish line) on failure."""
        wanted: dict[str, Block] = {}
        for block in blocks:
            net = network(block.key)
            if net is None:
                self.log(f"escudo/{self.name}: ignoro la clave «{block.key}», que no es una "
                         "dirección ni una red")
                continue
            key = render_key(net)
            if key not in wanted or wanted[key].until < block.until:
                wanted[key] = Block(key, block.until, one_line(block.reason))
        ordered = [wanted[k] for k in sorted(wanted, key=_sort_key)]
        start = time.monotonic()
        try:
            changed = self._sync(ordered, attack_mode)
        except ShieldError:
            raise
        except OSError as exc:
            raise ShieldError(f"escudo/{self.name}: {exc.strerror or exc}") from None
        if changed:
            self.applied += 1
            ms = (time.monotonic() - start) * 1000
            self.log(f"escudo/{self.name}: {len(ordered)} bloqueo"
                     f"{'s' if len(ordered) != 1 else ''} aplicado{'s' if len(ordered) != 1 else ''}"
                     f"{' (modo ataque)' if attack_mode else ''} en {ms:.0f} ms")

    @abstractmethod
    def _sync(self, blocks: list[Block], attack_mode: bool) -> bool:
        """Hold exactly ``blocks`` (keys already normalised); True when something changed."""

    def close(self) -> None:  # noqa: B027 — optional hook
        """Release connections (drivers with a client override it)."""


def _sort_key(key: str) -> tuple[int, int, int]:
    net = ipaddress.ip_network(key, strict=False)
    return net.version, int(net.network_address), net.prefixlen


def configured(cfg: Config) -> list[str]:
    """The enforcement points ``[shield]`` turns on, in the order they are cheapest to apply."""
    s = cfg.shield
    names = []
    if s.nftables_set:
        names.append("nftables")
    if s.nginx_include:
        names.append("nginx")
    if s.cloudflare.account_id or s.cloudflare.list_id:
        names.append("cloudflare")
    return names


def build_enforcers(cfg: Config, *, env: Mapping[str, str] | None = None, log: Log | None = None
                    ) -> list[Enforcer]:
    """Every enforcement point configured in ``[shield]`` (none when only the embedded server
    enforces). ConfigError, naming the key, when a secret one needs is missing."""
    env = os.environ if env is None else env
    return [DRIVERS.load(name).from_config(cfg, env=env, log=log) for name in configured(cfg)]
