"""Which requests are page views: HTML pages, and the single-page app's views by the JSON they fetch.

A PREP site is a single-page app: after the first HTML page every screen the visitor opens
(an entidad, a distrito, a casilla…) is a JSON request. ``[analytics.views]`` maps a glob of
that JSON's path to the view's name; when it is empty the DEFAULTS below apply: the demo site
(``src/difusor/demo/site/app.js``) and the layouts of the INE/OPL PREP sites, whose JSON files
are named by level (``Presidente_NACIONAL.json``, ``…_ENTIDAD_09.json``, ``…/DISTRITO/…``) and
which offer the database (CSV inside a zip) for download.

Matching is on the request path (no query string), case-insensitive, ``fnmatch`` globs where
``*`` also crosses ``/``; the first rule that matches names the view.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from fnmatch import translate
from functools import lru_cache

from difusor.config import Config

# Order matters: the first match wins, so specific paths go before level names.
DEFAULT_VIEWS: tuple[tuple[str, str], ...] = (
    # Demo site: the summary every visitor polls, and the casilla detail it opens.
    ("*/json/main.json", "Resumen"),
    ("*/json/casillas/*.json", "Casilla"),
    # INE / OPL layouts: one JSON per level of the results tree.
    ("*nacional*.json", "Nacional"),
    ("*circunscripcion*.json", "Circunscripción"),
    ("*entidad*.json", "Entidad"),
    ("*distrito*.json", "Distrito"),
    ("*municipio*.json", "Municipio"),
    ("*ayuntamiento*.json", "Municipio"),
    ("*seccion*.json", "Sección"),
    ("*casilla*.json", "Casilla"),
    ("*candidatura*.json", "Candidaturas"),
    ("*partido*.json", "Partidos políticos"),
    ("*participacion*.json", "Participación ciudadana"),
    ("*votos*extranjero*.json", "Voto en el extranjero"),
    # The database the convocatoria requires downloadable (CSV, zipped or not).
    ("*.csv", "Base de datos"),
    ("*.zip", "Base de datos"),
)


def view_rules(cfg: Config) -> list[tuple[str, str]]:
    """(glob, view name) in matching order: the configured ones, else the defaults."""
    configured = cfg.analytics.views
    return list(configured.items()) if configured else list(DEFAULT_VIEWS)


def page_rules(cfg: Config) -> list[str]:
    """Globs of paths that are HTML pages (``[analytics] pages``)."""
    return list(cfg.analytics.pages)


def _union(globs: list[str]) -> re.Pattern[str]:
    return re.compile("|".join(f"(?:{translate(g.lower())})" for g in globs) or r"(?!)")


def view_matcher(rules: list[tuple[str, str]]) -> Callable[[str], str | None]:
    """A function path → view name (or None), cached: logs repeat the same few paths."""
    compiled = [(re.compile(translate(glob.lower())), name) for glob, name in rules]

    @lru_cache(maxsize=65536)
    def match(path: str) -> str | None:
        low = path.lower()
        for pattern, name in compiled:
            if pattern.match(low):
                return name
        return None

    return match


def page_matcher(globs: list[str]) -> Callable[[str], bool]:
    """A function path → is it an HTML page."""
    pattern = _union(globs)

    @lru_cache(maxsize=65536)
    def match(path: str) -> bool:
        return pattern.match(path.lower()) is not None

    return match

