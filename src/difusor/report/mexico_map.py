"""Visitors by Mexican state as a choropleth: plain SVG over the vendored outlines.

The outlines are ``assets/mexico.json`` (npm ``@svg-maps/mexico`` 2.0.0, CC BY 4.0; see
``assets/README.md``), whose ids are ISO 3166-2:MX codes in lower case. The summary names states
by ``analytics.geo``'s canonical Spanish names, so the code of a name comes from that module's
table (``geo.STATES``) and, for a name spelled another way, from its ``state_name``.

Five sequential classes cut at the quantiles of the states that had visitors (counts are very
skewed — the capital alone can hold half — so equal intervals would leave one dark state and a
pale country); the legend states each class's range. Deterministic: paths in the asset's order,
no random ids, no clock.
"""

from __future__ import annotations

import json
import math
from functools import lru_cache
from importlib import resources
from typing import Any

from difusor.analytics import geo
from difusor.report.charts import FONT, empty_svg, esc, number

NAME = "mapa-mexico"
TITLE = "Visitantes por estado de México"
ATTRIBUTION = "Contornos: @svg-maps/mexico, CC BY 4.0"
PALETTE = ("#eff3ff", "#bdd7e7", "#6baed6", "#3182bd", "#08519c")  # light → dark blues
NONE_FILL = "#e0e0e0"  # states without visitors
EXTRA_HEIGHT = 24  # room under the outlines for the attribution line
_CODE_BY_NAME = {name: code for code, name in geo.STATES.items()}


@lru_cache(maxsize=1)
def outlines() -> dict[str, Any]:
    """The vendored asset: ``{viewBox, locations: [{id, name, path}]}``."""
    text = resources.files("difusor.report").joinpath("assets/mexico.json").read_text("utf-8")
    return json.loads(text)


def state_code(name: str | None) -> str | None:
    """ISO 3166-2:MX code (upper case) of a state as the analytics name it, or None."""
    if not name:
        return None
    if name in _CODE_BY_NAME:
        return _CODE_BY_NAME[name]
    canonical = geo.state_name({"names": {"es": name}})
    return _CODE_BY_NAME.get(canonical) if canonical else None


def classes(values: list[int]) -> list[tuple[int, int]]:
    """Up to five (low, high) ranges cut at the quantiles of the positive ``values``."""
    ordered = sorted(v for v in values if v > 0)
    if not ordered:
        return []
    k = min(len(PALETTE), len(set(ordered)))
    uppers: list[int] = []
    for i in range(1, k + 1):
        upper = ordered[math.ceil(i * len(ordered) / k) - 1]
        if not uppers or upper > uppers[-1]:
            uppers.append(upper)
    lows = [ordered[0], *(u + 1 for u in uppers[:-1])]
    return list(zip(lows, uppers, strict=True))


def _range_text(low: int, high: int) -> str:
    return number(low) if low == high else f"{number(low)} – {number(high)}"


def _visitors(n: int) -> str:
    return f"{number(n)} visitante" + ("" if n == 1 else "s")


def mexico_map(states: list[dict[str, Any]]) -> str:
    """The choropleth of ``geo.state`` from ``analytics summary --json`` (``[{state,
    visitors}]``; a ``None`` state is a Mexican visitor whose state is unknown)."""
    by_code: dict[str, int] = {}
    unplaced = 0
    for row in states:
        n = int(row.get("visitors") or 0)
        code = state_code(row.get("state"))
        if code is None:
            unplaced += n
        else:
            by_code[code] = by_code.get(code, 0) + n
    if not any(by_code.values()):
        return empty_svg(NAME, TITLE)
    ranges = classes(list(by_code.values()))
    fills = PALETTE[len(PALETTE) - len(ranges):]  # few classes: the darker end of the scale

    def fill(n: int) -> str:
        for (_low, high), colour in zip(ranges, fills, strict=True):
            if n <= high:
                return colour
        return fills[-1]

    asset = outlines()
    x0, y0, width, height = (float(v) for v in asset["viewBox"].split())
    total_h = height + EXTRA_HEIGHT
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" id="{NAME}" role="img" '
           f'aria-label="{TITLE}" width="482pt" height="{482 * total_h / width:.1f}pt" '
           f'viewBox="{x0:g} {y0:g} {width:g} {total_h:g}" font-family="{FONT}, sans-serif">',
           f"<title>{TITLE}</title>",
           f'<g id="{NAME}-estados" stroke="#ffffff" stroke-width="0.7" stroke-linejoin="round">']
    for loc in asset["locations"]:
        code = loc["id"].upper()
        n = by_code.get(code, 0)
        label = geo.STATES.get(code, loc["name"])
        colour = fill(n) if n > 0 else NONE_FILL
        out.append(f'<path id="{NAME}-{esc(loc["id"])}" d="{esc(loc["path"])}" fill="{colour}">'
                   f"<title>{esc(label)}: {_visitors(n)}</title></path>")
    out.append("</g>")
    out.extend(_legend(ranges, fills, unplaced, x0 + 16, y0 + height * 0.66))
    out.append(f'<text x="{x0 + width - 8:g}" y="{y0 + total_h - 8:g}" text-anchor="end" '
               f'font-size="11" fill="#555555">{ATTRIBUTION}</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


def _legend(ranges: list[tuple[int, int]], fills: tuple[str, ...], unplaced: int,
            x: float, y: float) -> list[str]:
    """Title, one swatch per class (darkest first), the grey of none, the unplaced count."""
    rows = [(colour, _range_text(low, high))
            for (low, high), colour in reversed(list(zip(ranges, fills, strict=True)))]
    rows.append((NONE_FILL, "sin visitantes"))
    out = [f'<g id="{NAME}-leyenda" font-size="12" fill="#333333">',
           f'<text x="{x:g}" y="{y:g}" font-weight="bold">Visitantes por estado</text>']
    for i, (colour, text) in enumerate(rows):
        top = y + 10 + i * 20
        out.append(f'<rect x="{x:g}" y="{top:g}" width="22" height="14" fill="{colour}" '
                   f'stroke="#999999" stroke-width="0.5"/>'
                   f'<text x="{x + 30:g}" y="{top + 11:g}">{esc(text)}</text>')
    if unplaced:
        top = y + 10 + len(rows) * 20
        out.append(f'<text x="{x:g}" y="{top + 11:g}" font-size="11">Sin estado identificado: '
                   f"{_visitors(unplaced)}</text>")
    out.append("</g>")
    return out
