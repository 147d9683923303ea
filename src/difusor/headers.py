"""The header policy: site path globs → response headers. On the ground floor (beside config/)
because every stage that sends a file reads it: the embedded server, the nginx configuration,
the S3 origin. No header set is written out anywhere else.

One object renders both the embedded server's headers and the nginx configuration, so
the two cannot drift. Rules apply in order and a later rule overrides an earlier one's header of
the same name; the convocatoria's rule for ``/json/main.json`` is applied last and cannot be
overridden (the config refuses a rule that tries).

Globs use ``fnmatch``: ``*`` also crosses ``/``, so ``*.json`` covers ``json/main.json``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any, Protocol


class SiteConfig(Protocol):
    """What the policy reads of the configuration (``difusor.config.Config``), named here so
    this ground-floor module does not import the config package, which imports it."""

    package: Any  # .main_json
    headers: Sequence[Any]  # [[headers]]: .match, .set
    cdn: Sequence[Any]  # [[cdn]]: .targeted_seconds

# Convocatoria II.1.e: exactly this on /json/main.json (and on the difusor's own dynamic answers).
MAIN_JSON_CACHE_CONTROL = "no-cache, no-store, must-revalidate"
ASSET_CACHE = "public, max-age=300"
# What every file gets, and every miss: revalidate, and no type sniffing.
REVALIDATE = (("Cache-Control", "no-cache"), ("X-Content-Type-Options", "nosniff"))
# The beacon's answers: readable from the portal's page, never cached.
BEACON = (("Access-Control-Allow-Origin", "*"), ("Cache-Control", "no-store"))
# The beacon's script, embedded by the portal's pages: cached like any asset.
BEACON_SCRIPT = (("Cache-Control", ASSET_CACHE), ("Access-Control-Allow-Origin", "*"),
                 ("X-Content-Type-Options", "nosniff"))
_ASSETS = ("*.js", "*.mjs", "*.css", "*.png", "*.jpg", "*.jpeg", "*.gif", "*.svg", "*.webp",
           "*.avif", "*.ico", "*.woff", "*.woff2", "*.ttf", "*.otf", "*.eot")


@dataclass(frozen=True)
class Rule:
    match: str
    headers: tuple[tuple[str, str], ...]
    why: str = ""


def default_rules(main_json: str) -> list[Rule]:
    return [
        Rule("*", REVALIDATE,
             "todo se revalida: cada corte puede cambiar cualquier archivo"),
        *(Rule(p, (("Cache-Control", ASSET_CACHE),), "recursos estáticos: 5 minutos")
          for p in _ASSETS),
        Rule(main_json, (("Cache-Control", MAIN_JSON_CACHE_CONTROL),),
             "convocatoria II.1.e: encabezado obligatorio"),
    ]


def targeted_seconds(cfg: SiteConfig) -> int:
    """How long a CDN may hold main.json: the shortest ``targeted_seconds`` of the ``[[cdn]]``
    that set one (0 = none), so no edge in front of the site holds it longer than asked."""
    return min((c.targeted_seconds for c in cfg.cdn if c.targeted_seconds > 0), default=0)


def targeted_rule(main_json: str, seconds: int) -> Rule:
    """RFC 9213 targeted caching: the edge may keep main.json ``seconds`` (and is purged on every
    publication), while browsers keep getting exactly the convocatoria's ``Cache-Control``."""
    age = f"max-age={seconds}"
    return Rule(main_json, (("CDN-Cache-Control", age), ("Surrogate-Control", age)),
                "RFC 9213: la CDN guarda main.json unos segundos; el navegador no lo guarda")


class HeaderPolicy:
    def __init__(self, rules: list[Rule], main_json: str) -> None:
        self.main_json = main_json
        self.rules = rules

    @classmethod
    def from_config(cls, cfg: SiteConfig) -> HeaderPolicy:
        main = cfg.package.main_json
        defaults = default_rules(main)
        extra = [Rule(r.match.lstrip("/"), tuple(r.set.items()), "configurada")
                 for r in cfg.headers]
        # The main.json rule stays last whatever the operator adds.
        rules = [*defaults[:-1], *extra, defaults[-1]]
        seconds = targeted_seconds(cfg)
        if seconds:
            rules.append(targeted_rule(main, seconds))
        return cls(rules, main)

    def headers_for(self, path: str) -> list[tuple[str, str]]:
        """Headers for a site path (no leading slash), in a stable order."""
        chosen: dict[str, tuple[str, str]] = {}
        for rule in self.rules:
            if fnmatchcase(path, rule.match):
                for name, value in rule.headers:
                    chosen[name.lower()] = (name, value)
        return list(chosen.values())

    def main_headers(self) -> list[tuple[str, str]]:
        """Headers for the difusor's own dynamic answers (status.json): never cached."""
        return [("Cache-Control", MAIN_JSON_CACHE_CONTROL), ("X-Content-Type-Options", "nosniff")]
