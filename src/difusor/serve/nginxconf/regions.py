"""The header policy as nginx ``location`` blocks.

nginx picks exactly one ``location`` per request and a block with its own ``add_header`` drops
every inherited one, while the policy folds *all* matching rules (a later one wins per header).
So the policy's globs become regions: one regex location per set of globs that can match the
same path (an intersection written with look-aheads), most specific first, each carrying the
folded headers of its set plus the server-wide ones; literal paths (``json/main.json``) get an
exact-match location. Globs that provably cannot meet (``*.js`` and ``*.css``) form no region.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from fnmatch import fnmatchcase

from difusor.errors import ConfigError
from difusor.headers import HeaderPolicy, Rule
from difusor.serve.nginxconf.syntax import quote

MAX_REGIONS = 512
_WILD = "*?["


@dataclass(frozen=True)
class Location:
    """One nginx ``location``: its match (``= /x``, ``~ "regex"``, ``/``) and full header set."""

    match: str
    headers: tuple[tuple[str, str], ...]
    why: str = ""


def glob_regex(glob: str) -> str:
    """An fnmatch glob over site paths (``*`` crosses ``/``) → PCRE over nginx's ``$uri``."""
    out, i, n = [], 0, len(glob)
    while i < n:
        c = glob[i]
        i += 1
        if c == "*":
            out.append(".*")
        elif c == "?":
            out.append(".")
        elif c == "[":
            j = i
            if j < n and glob[j] == "!":
                j += 1
            if j < n and glob[j] == "]":
                j += 1
            while j < n and glob[j] != "]":
                j += 1
            if j >= n:
                out.append(r"\[")
                continue
            body = glob[i:j].replace("\\", "\\\\")
            i = j + 1
            if body.startswith("!"):
                body = "^" + body[1:]
            elif body.startswith("^"):
                body = "\\" + body
            out.append(f"[{body}]")
        else:
            out.append(re.escape(c) if c in ".^$+(){}|\\" else c)
    return "".join(out)


def _literal(glob: str) -> bool:
    return not any(c in glob for c in _WILD)


def _universal(glob: str) -> bool:
    return bool(glob) and set(glob) == {"*"}


def _ends(glob: str) -> tuple[str, str]:
    """The literal text every match of ``glob`` starts and ends with."""
    first = min((glob.index(c) for c in _WILD if c in glob), default=len(glob))
    last = max((glob.rindex(c) for c in "*?]" if c in glob), default=-1)
    return glob[:first], glob[last + 1:]


def may_overlap(a: str, b: str) -> bool:
    """False only when no path can match both globs (exact for literal paths)."""
    if _literal(a):
        return fnmatchcase(a, b)
    if _literal(b):
        return fnmatchcase(b, a)
    (pa, sa), (pb, sb) = _ends(a), _ends(b)
    return (pa.startswith(pb) or pb.startswith(pa)) and (sa.endswith(sb) or sb.endswith(sa))


def _fold(rules: list[Rule], chosen: set[str]) -> tuple[tuple[str, str], ...]:
    headers: dict[str, tuple[str, str]] = {}
    for rule in rules:
        if _universal(rule.match) or rule.match in chosen:
            for name, value in rule.headers:
                headers[name.lower()] = (name, value)
    return tuple(headers.values())


def header_locations(policy: HeaderPolicy) -> list[Location]:
    """The policy as nginx locations, in the order they must appear (first match wins)."""
    rules = policy.rules
    literals = list(dict.fromkeys(r.match for r in rules if _literal(r.match)))
    globs = list(dict.fromkeys(r.match for r in rules
                               if not _literal(r.match) and not _universal(r.match)))
    cliques: list[tuple[str, ...]] = []

    def grow(clique: tuple[str, ...], candidates: list[str]) -> None:
        for k, glob in enumerate(candidates):
            bigger = (*clique, glob)
            cliques.append(bigger)
            if len(cliques) > MAX_REGIONS:
                raise ConfigError(
                    f"las reglas de [[headers]] se cruzan de demasiadas formas (más de "
                    f"{MAX_REGIONS} combinaciones) para expresarlas en nginx; simplifícalas")
            grow(bigger, [g for g in candidates[k + 1:] if may_overlap(glob, g)])

    grow((), globs)
    cliques.sort(key=len, reverse=True)  # stable: equal sizes keep the policy's order
    out = [Location(f"= /{path}", tuple(policy.headers_for(path)), "ruta exacta")
           for path in literals]
    for clique in cliques:
        if len(clique) == 1:
            regex = f"^/{glob_regex(clique[0])}$"
        else:
            regex = "^" + "".join(f"(?=/{glob_regex(g)}$)" for g in clique[:-1])
            regex += f"/{glob_regex(clique[-1])}$"
        out.append(Location(f"~ {quote(regex)}", _fold(rules, set(clique)), " ∩ ".join(clique)))
    out.append(Location("/", _fold(rules, set()), "todo lo demás"))
    return out
