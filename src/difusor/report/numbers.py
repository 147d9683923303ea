"""How the memoria writes a number: thousands grouped with a comma, decimals with a point, as
the authority's own PREP tables do (``31,399``; ``98.57``). One rule for tables, sentences and
charts, so a figure reads the same wherever the document states it."""

from __future__ import annotations


def grouped(value: float, places: int = 0) -> str:
    return f"{value:,.{places}f}"
