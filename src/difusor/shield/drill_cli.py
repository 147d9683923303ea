"""``difusor simulate attack``: a drill against a loopback target (built by the shield issue)."""

from __future__ import annotations


def simulate_attack() -> None:
    """Simulacro de ataque contra un objetivo en loopback."""
    raise NotImplementedError
