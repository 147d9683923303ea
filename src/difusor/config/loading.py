"""Reading difusor.toml: TOML, the models, the checks across sections, and one Spanish line for
whatever is wrong (a ``ConfigError``, exit 3), naming the key."""

from __future__ import annotations

import difflib
import tomllib
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any, get_args

from pydantic import BaseModel, ValidationError

from difusor.config.model import DICT_SECTIONS, LIST_SECTIONS, SECTIONS, Config
from difusor.config.providers import origins_problem
from difusor.config.sites import sites_problem
from difusor.config.values import DEFAULT_CONFIG
from difusor.errors import ConfigError
from difusor.headers import MAIN_JSON_CACHE_CONTROL


def load(path: str | Path = DEFAULT_CONFIG) -> Config:
    """Read and validate a config file; relative paths resolve against its folder."""
    p = Path(path)
    try:
        raw = tomllib.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(
            f"no encuentro {p} (créalo con «difusor init CARPETA» o usa --config RUTA)"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"no puedo leer {p}: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{p} no es TOML válido: {exc}") from None
    return from_dict(raw, root=p.resolve().parent, origin=str(p))


def from_dict(raw: dict[str, Any], root: Path, origin: str = DEFAULT_CONFIG) -> Config:
    for private in ("root", "site_name", "site_role"):
        if private in raw:
            raise ConfigError(f"{origin}: sección desconocida [{private}]")
    try:
        cfg = Config.model_validate({**raw, "root": root})
    except ValidationError as exc:
        raise ConfigError(f"{origin}: {_spanish(exc, raw)}") from None
    _check_files(cfg, origin)
    _check_headers(cfg, origin)
    _check_providers(cfg, origin)
    problem = sites_problem(cfg)
    if problem:
        raise ConfigError(f"{origin}: {problem}")
    return cfg


def _check_files(cfg: Config, origin: str) -> None:
    keys = cfg.path(cfg.sftp.authorized_keys)
    if not keys.is_file():
        raise ConfigError(
            f"{origin}: sftp.authorized_keys apunta a {keys}, que no existe "
            "(crea el archivo, aunque sea vacío)"
        )


def _check_headers(cfg: Config, origin: str) -> None:
    # The convocatoria fixes main.json's Cache-Control; no rule may weaken it.
    for rule in cfg.headers:
        for name in rule.set:
            if name.lower() == "cache-control" and _glob_hits_main(rule.match, cfg.package.main_json):
                raise ConfigError(
                    f"{origin}: la regla de encabezados «{rule.match}» cambiaría Cache-Control de "
                    f"/{cfg.package.main_json}, que la convocatoria fija en "
                    f"«{MAIN_JSON_CACHE_CONTROL}»"
                )


def _glob_hits_main(pattern: str, main: str) -> bool:
    return fnmatchcase(main, pattern.lstrip("/")) or fnmatchcase("/" + main, pattern)


def _check_providers(cfg: Config, origin: str) -> None:
    # Origins and enforcement points that could not work fail now, not at the first package.
    problem = origins_problem(cfg.origins) or cfg.shield.problem()
    if problem:
        raise ConfigError(f"{origin}: {problem}")


_TYPE_MESSAGES = {
    "int_parsing": "se esperaba un número entero",
    "int_type": "se esperaba un número entero",
    "float_parsing": "se esperaba un número",
    "float_type": "se esperaba un número",
    "bool_parsing": "se esperaba true o false",
    "bool_type": "se esperaba true o false",
    "string_type": "se esperaba texto entre comillas",
    "list_type": "se esperaba una lista [ ... ]",
    "dict_type": "se esperaba una tabla",
    "model_type": "se esperaba una sección [ ... ]",
    "model_attributes_type": "se esperaba una sección [ ... ]",
    "missing": "falta este valor",
}


def _spanish(exc: ValidationError, raw: dict[str, Any]) -> str:
    errors = exc.errors()
    # An unknown key explains a "missing" one next to it (a typo), so it is reported first.
    err = next((e for e in errors if e["type"] == "extra_forbidden"), errors[0])
    loc, model = _entry(list(err["loc"]))
    key = ".".join(str(x) for x in loc)
    kind = err["type"]
    if kind == "extra_forbidden":
        return _unknown_key([str(x) for x in loc], model)
    if kind == "union_tag_not_found":  # an entry of [[origins]] or [[cdn]] without its kind
        return f"{key}.{_first_missing(loc, raw)}: {_TYPE_MESSAGES['missing']}"
    if kind == "union_tag_invalid":
        return f"{key}.kind: valor «{err['ctx']['tag']}» no permitido; usa " \
               f"{_one_of(err['ctx']['expected_tags'])}"
    if kind == "value_error":
        return f"{key}: {err['ctx']['error']}"
    if kind == "literal_error":
        return f"{key}: valor «{err.get('input')}» no permitido; usa {err['ctx']['expected']}"
    if kind in ("greater_than_equal", "less_than_equal", "greater_than", "less_than"):
        bound = next(iter(err["ctx"].values()))
        sign = {"greater_than_equal": "≥", "less_than_equal": "≤", "greater_than": ">",
                "less_than": "<"}[kind]
        return f"{key}: debe ser {sign} {bound} (vale {err.get('input')})"
    return f"{key}: {_TYPE_MESSAGES.get(kind, err['msg'])}"


def _entry(loc: list[Any]) -> tuple[list[Any], type[BaseModel] | None]:
    """The error's place without the ``kind`` pydantic inserts for a table chosen by it (so
    ``origins.0.nginx.root`` reads ``origins.0.root``), and the model that holds the key."""
    if loc and loc[0] in LIST_SECTIONS:
        models = LIST_SECTIONS[loc[0]]
        if len(models) == 1:
            return loc, models[0]
        by_kind = {_kind(m): m for m in models}
        if len(loc) >= 3 and loc[2] in by_kind:
            return [*loc[:2], *loc[3:]], by_kind[loc[2]]
        return loc, None
    if loc and loc[0] in DICT_SECTIONS:
        return loc, DICT_SECTIONS[loc[0]] if len(loc) >= 3 else None
    return loc, SECTIONS.get(loc[0]) if loc else None


def _kind(model: type[BaseModel]) -> str:
    return str(get_args(model.model_fields["kind"].annotation)[0])


def _first_missing(loc: list[Any], raw: dict[str, Any]) -> str:
    """An entry with no kind: the first required key it lacks (the name before the kind)."""
    entry = raw.get(loc[0], [])[loc[1]] if len(loc) == 2 else {}
    first = LIST_SECTIONS[loc[0]][0]
    required = [k for k, f in first.model_fields.items() if f.is_required()]
    return next((k for k in required if not isinstance(entry, dict) or k not in entry), "kind")


def _one_of(tags: str) -> str:
    """``'a', 'b', 'c'`` → ``'a', 'b' or 'c'``, as pydantic words a choice of literals."""
    head, _, last = tags.rpartition(", ")
    return f"{head} or {last}" if head else last


def _unknown_key(loc: list[str], model: type[BaseModel] | None) -> str:
    name = loc[-1]
    where = ".".join(loc[:-1])
    known: list[str]
    if not where:
        known = [k for k in Config.model_fields if k not in ("root", "site_name", "site_role")]
        hint = difflib.get_close_matches(name, known, n=1)
        msg = f"sección desconocida [{name}]"
    else:
        known = list(model.model_fields) if model else []
        hint = difflib.get_close_matches(name, known, n=1)
        where = f"[{where}]"
        if loc[0] in LIST_SECTIONS and len(loc) == 3:
            where = f"[[{loc[0]}]] n.º {int(loc[1]) + 1}"
        msg = f"clave desconocida «{name}» en {where}"
    if hint:
        msg += f" (¿quisiste decir «{hint[0]}»?)"
    return msg
