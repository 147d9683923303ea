"""Which site a command, a request or a package is about.

Without ``[sites]`` the file is the one site (named ""), and everything below answers with it,
so a one-site difusor behaves as it always did.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from difusor.errors import ConfigError
from difusor.sites.phase import LABELS, ROLE_FOR

if TYPE_CHECKING:
    from difusor.config import Config


def site_configs(cfg: Config) -> dict[str, Config]:
    """Every site's view of the file, by name (``{"": cfg}`` without ``[sites]``)."""
    if not cfg.sites:
        return {"": cfg}
    return {name: cfg.for_site(name) for name in cfg.sites}


def default_site(cfg: Config) -> str:
    """The site a command means when none is named, and the one serving unknown Host names
    (as nginx's default_server): the main authority's official site, else the first."""
    if not cfg.sites:
        return ""
    for name, entry in cfg.sites.items():
        if entry.role == "oficial" and not entry.feed:
            return name
    return next(iter(cfg.sites))


def resolve(cfg: Config, name: str | None) -> Config:
    """``--site NAME`` → that site's view; None → the default site."""
    if not cfg.sites:
        if name:
            raise ConfigError(f"no hay sitios con nombre en la configuración (--site {name}); "
                              "se define con [sites.NOMBRE]")
        return cfg
    chosen = name or default_site(cfg)
    if chosen not in cfg.sites:
        raise ConfigError(f"no existe el sitio «{chosen}»; los sitios son: "
                          + ", ".join(cfg.sites))
    return cfg.for_site(chosen)


def feeds(cfg: Config) -> list[str]:
    """The feeds that receive packages: "" (the file's own receivers) and each ``[feeds.X]``."""
    return ["", *cfg.feeds]


def route(cfg: Config, feed: str, phase: str) -> tuple[str | None, str]:
    """The site a package of ``feed`` goes to in ``phase``: (name, "") or (None, why not).
    Without ``[sites]``: ("", "") whatever the phase."""
    if not cfg.sites:
        return "", ""
    role = ROLE_FOR[phase]
    who = f"la autoridad «{feed}»" if feed else "la autoridad"
    if role is None:
        return None, (f"la operación está cerrada (fase «{LABELS[phase]}»): no se publican más "
                      "cortes; si la autoridad lo pide, «difusor phase --set oficial»")
    for name, entry in cfg.sites.items():
        if entry.feed == feed and entry.role == role:
            return name, ""
    return None, (f"fase «{LABELS[phase]}»: {who} no tiene sitio {role} en [sites] "
                  "(el paquete queda en cuarentena)")


def host_map(cfg: Config) -> dict[str, str]:
    """Host name (lower case) → site name."""
    return {host: name for name, entry in cfg.sites.items() for host in entry.host_names()}
