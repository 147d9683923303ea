"""What the shield decides and what every enforcement point is told.

An enforcer receives the whole desired state each time it changes (idempotent, so a restart or
a missed update heals on the next call) and applies it where it is cheapest: a generated nginx
include, an nftables set, a Cloudflare IP list. Throttles (429) stay in the embedded server.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class Block:
    key: str  # an address ("203.0.113.7", "2001:db8::1") or a network ("203.0.113.0/24")
    until: float  # epoch seconds; the block lapses by itself then
    reason: str  # Spanish, for the operator and the ledger


class Enforcer(Protocol):
    name: str  # what the operator reads: "nginx", "nftables", "cloudflare"

    def apply(self, blocks: Sequence[Block], attack_mode: bool) -> None:
        """Make the enforcement point hold exactly ``blocks``; raise ``ShieldError`` on failure."""
        ...

    def close(self) -> None: ...
