"""Origins: where the public is served from, published to as one step (see ``twophase.py``).

``[[origins]]`` in difusor.toml names them; the embedded server (``local``) is always one of
them, first, whether or not it is listed. Drivers are named in one table and imported on use,
so boto3 loads only when an ``s3`` origin is configured.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

from difusor.config import Config, OriginSettings
from difusor.errors import ConfigError
from difusor.ledger import Ledger
from difusor.publish.origins.base import Context, Origin, OriginError, Release, Result
from difusor.publish.origins.twophase import JOURNAL, OriginSet, Staged, SwitchReport

DRIVERS = {
    "local": "difusor.publish.origins.local:LocalOrigin",
    "nginx": "difusor.publish.origins.nginx:NginxOrigin",
    "ssh": "difusor.publish.origins.ssh:SshOrigin",
    "s3": "difusor.publish.origins.s3:S3Origin",
}
REQUIRED = {"nginx": ["root"], "ssh": ["host", "root"], "s3": ["bucket"]}

__all__ = ["DRIVERS", "JOURNAL", "Context", "Origin", "OriginError", "OriginSet", "Release", "Result",
           "Staged", "SwitchReport", "has_remote", "load_origins", "origin_settings"]


def origin_settings(cfg: Config) -> list[OriginSettings]:
    """The configured origins, checked, with the local one first (added when not listed)."""
    seen: set[str] = set()
    for n, s in enumerate(cfg.origins, start=1):
        where = f"[[origins]] n.º {n} ({s.name})"
        if s.name in seen:
            raise ConfigError(f"{where}: el nombre «{s.name}» ya lo usa otro origen")
        seen.add(s.name)
        missing = [key for key in REQUIRED.get(s.kind, []) if not getattr(s, key)]
        if missing:
            raise ConfigError(f"{where}: un origen {s.kind} necesita {', '.join(missing)}")
    local = [s for s in cfg.origins if s.kind == "local"]
    if len(local) > 1:
        raise ConfigError("[[origins]]: solo puede haber un origen local (el servidor embebido)")
    first = local or [OriginSettings(name="local", kind="local")]
    return [*first, *(s for s in cfg.origins if s.kind != "local")]


def has_remote(cfg: Config) -> bool:
    """Whether publishing is two-phase (some origin besides the embedded server)."""
    return any(s.kind != "local" for s in cfg.origins)


def driver(kind: str) -> type[Origin]:
    try:
        module, _, name = DRIVERS[kind].partition(":")
    except KeyError:
        raise ConfigError(f"tipo de origen desconocido «{kind}»; los conocidos: "
                          f"{', '.join(DRIVERS)}") from None
    return getattr(importlib.import_module(module), name)  # type: ignore[no-any-return]


def load_origins(ctx: Context, ledger: Ledger, release: Callable[[str], Release],
                 extra: list[Origin] | None = None) -> OriginSet:
    """Every configured origin's driver (plus ``extra`` ones: test doubles), ready to use."""
    try:
        origins = [driver(s.kind)(s, ctx) for s in origin_settings(ctx.cfg)]
    except OriginError as exc:  # a value the driver cannot use is a configuration error
        raise ConfigError(f"[[origins]]: {exc.message}") from None
    return OriginSet(ctx, ledger, [*origins, *(extra or [])], release)
