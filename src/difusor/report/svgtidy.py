"""Matplotlib's SVG document turned into one light ``<svg>`` element for the memoria's page.

The same drawing with fewer nodes and bytes, because WeasyPrint styles, parses and paints every
node in Python (a chart's nodes cost more than its pixels): Matplotlib wraps each artist in a
``<g id="…">`` that only names it, indents every tag and breaks path data line by line. Here the
wrappers nothing refers to go (their children stay, in order), and so does the layout
whitespace; groups that carry anything (a clip path, a style, a transform) stay as they are.

Then the element is made fit to sit among others in one HTML page: no prologue or metadata,
every ``id`` prefixed with the chart's name (and every reference to it), the backend's ``*{…}``
style scoped to the chart, a ``<title>`` and ``role="img"``.
"""

from __future__ import annotations

import re

_TAG = re.compile(r"<(/?)([A-Za-z][\w:.-]*)([^>]*?)(/?)>")
_ONLY_ID = re.compile(r'\s*id="([^"]+)"\s*')
_REFERENCED = re.compile(r'(?:href="#|url\(#)([^")]+)')
_ID = re.compile(r'\sid="([^"]+)"')
_REF = re.compile(r'(\sid="|href="#|url\(#)([^")]+)')
_PATH_DATA = re.compile(r'\sd="([^"]*)"')


def esc(text: object) -> str:
    """Text safe inside SVG/XML element content and attribute values."""
    return (str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
            .replace('"', "&quot;"))


def tidy(svg: str) -> str:
    """Drop the ``<g>`` wrappers that carry nothing but an unreferenced id, and the whitespace
    between tags and inside path data (none of it is drawn)."""
    referenced = set(_REFERENCED.findall(svg))
    out: list[str] = []
    dropped: list[bool] = []  # one per open <g>: whether its tags were left out
    pos = 0
    for tag in _TAG.finditer(svg):
        closing, name, attrs, empty = tag.groups()
        out.append(svg[pos:tag.start()])
        pos = tag.end()
        if name == "g" and not empty:
            if closing:
                if dropped.pop():
                    continue
            else:
                only = _ONLY_ID.fullmatch(attrs) if attrs.strip() else None
                drop = not attrs.strip() or (only is not None and only[1] not in referenced)
                dropped.append(drop)
                if drop:
                    continue
        out.append(tag[0])
    out.append(svg[pos:])
    text = re.sub(r">\s+<", "><", "".join(out))
    return _PATH_DATA.sub(lambda m: f' d="{" ".join(m[1].split())}"', text)


def inline(svg: str, name: str, title: str) -> str:
    """Matplotlib's document → one tidy ``<svg>`` element named ``name`` (see the module)."""
    svg = svg[svg.index("<svg"):]
    svg = re.sub(r"\s*<metadata>.*?</metadata>", "", svg, flags=re.S)
    ids = set(_ID.findall(svg))
    svg = _REF.sub(lambda m: m[1] + (f"{name}-{m[2]}" if m[2] in ids else m[2]), svg)
    svg = svg.replace("<style type=\"text/css\">*{", f'<style type="text/css">#{name} *{{', 1)
    svg = svg.replace("<svg ", f'<svg id="{name}" role="img" aria-label="{esc(title)}" ', 1) \
        .replace(">", f"><title>{esc(title)}</title>", 1)
    return tidy(svg).strip() + "\n"
