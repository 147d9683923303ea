"""Named sites (``[sites.NAME]``) and the authorities' feeds that fill them (``[feeds.NAME]``).

A difusor without ``[sites]`` is one site: the whole file, as always. With ``[sites]``, each site
is the whole file seen through its entry (:func:`site_config`): its own URL and host names, and
its own state folder ``state/sites/NAME`` (store, releases, quarantine, ledger, logs, analytics),
so a simulacro's corte ``20241208_2000`` never meets the official one. Sites are fed by a *feed*:
``""`` is the top-level ``[sftp]``/``[dropfolder]``/``[pull]``; ``[feeds.iem]`` is a second
authority with its own receivers and conventions (:func:`feed_config`, state in
``state/feeds/NAME``). Within a feed the operation's phase picks the site a package goes to: the
``prueba`` one during simulacros, the ``oficial`` one from the start of publication.
"""

from __future__ import annotations

import re
from pathlib import PurePath
from typing import TYPE_CHECKING, Literal
from urllib.parse import urlsplit

from pydantic import Field, field_validator

from difusor.config.receive import (
    CorteSettings,
    DropFolderSettings,
    PackageSettings,
    PullSettings,
    SftpSettings,
)
from difusor.config.values import Section, Url
from difusor.config.watch import CloudflareListSettings, ShieldSettings

if TYPE_CHECKING:
    from difusor.config.model import Config

ROLES = ("prueba", "oficial")
_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,39}$")
# A host name, or a wildcard of whole labels (``*.prueba.medio.mx``), as nginx takes it.
_HOST = re.compile(r"^(?=.{1,253}$)(\*\.)?[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
                   r"(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$")


def name_problem(table: str, value: str) -> str | None:
    if _NAME.match(value):
        return None
    return (f"[{table}.{value}]: «{value}» no sirve como nombre: minúsculas, dígitos, - o _ "
            "(hasta 40), p. ej. «prueba» o «ine-oficial»")


class SiteEntry(Section):
    role: Literal["prueba", "oficial"] = Field(
        description="prueba: recibe los cortes de los simulacros; oficial: los de la jornada.")
    url: Url = Field(description="URL pública del sitio, p. ej. https://prueba.prep.example.mx.")
    hosts: list[str] = Field(default_factory=list, description="Nombres (encabezado Host) con "
                             "los que se sirve; vacío = el de url.")
    name: str = Field("", description="Nombre del sitio; vacío = el de [site] con el papel.")
    feed: str = Field("", description="Autoridad que lo alimenta: vacío = [sftp]/[dropfolder]/"
                      "[pull] del archivo; otro nombre = [feeds.NOMBRE].")

    @field_validator("hosts")
    @classmethod
    def _hosts(cls, v: list[str]) -> list[str]:
        for host in v:
            if not _HOST.match(host):
                raise ValueError(f"«{host}» no es un nombre de host (un comodín va al "
                                 "principio y completo: *.prueba.medio.mx)")
        return [h.lower() for h in v]

    def host_names(self) -> list[str]:
        return self.hosts or [(urlsplit(self.url).hostname or "").lower()]


class FeedEntry(Section):
    sftp: SftpSettings = Field(SftpSettings(enabled=False),
                               description="Su SFTP embebido (otro puerto y usuario).")
    dropfolder: DropFolderSettings = Field(DropFolderSettings(),
                                           description="Sus carpetas vigiladas.")
    pull: PullSettings = Field(PullSettings(), description="Su descarga HTTPS.")
    package: PackageSettings | None = Field(None, description="Sus convenciones de paquete; "
                                            "vacío = las de [package].")
    corte: CorteSettings | None = Field(None, description="Sus convenciones de corte; vacío = "
                                        "las de [corte].")


def sites_problem(cfg: Config) -> str | None:
    """What makes ``[sites]``/``[feeds]`` unusable, in Spanish, or None."""
    if cfg.sites and (cfg.nginx.root or cfg.nginx.access_log):
        key = "root" if cfg.nginx.root else "access_log"
        return (f"[nginx] {key} no va con [sites]: cada sitio tiene su carpeta y su registro "
                "(state/sites/NOMBRE), para que su escudo y su analítica vean solo lo suyo")
    seen: dict[str, str] = {}
    for name, entry in cfg.sites.items():
        if bad := name_problem("sites", name):
            return bad
        if entry.feed and entry.feed not in cfg.feeds:
            return f"sites.{name}.feed nombra «{entry.feed}», que no está en [feeds]"
        for host in entry.host_names():
            if host in seen:
                return f"el host «{host}» está en sites.{seen[host]} y en sites.{name}"
            seen[host] = name
    for feed in {e.feed for e in cfg.sites.values()}:
        roles = [e.role for e in cfg.sites.values() if e.feed == feed]
        for role in ROLES:
            if roles.count(role) > 1:
                return (f"la autoridad «{feed or 'principal'}» tiene {roles.count(role)} sitios "
                        f"{role}: un paquete no sabría a cuál ir")
    for name in cfg.feeds:
        if bad := name_problem("feeds", name):
            return bad
        if not any(e.feed == name for e in cfg.sites.values()):
            return f"[feeds.{name}] no alimenta ningún sitio (falta feed = \"{name}\")"
    return None


def feed_config(cfg: Config, feed: str) -> Config:
    """The file as one feed's receivers and publisher see it ("" = the file itself)."""
    if not feed:
        return cfg
    entry = cfg.feeds[feed]
    from difusor.config.site import StateSettings

    return cfg.model_copy(update={
        "state": StateSettings(dir=str(cfg.state_dir / "feeds" / feed)),
        "sftp": entry.sftp, "dropfolder": entry.dropfolder, "pull": entry.pull,
        "package": entry.package or cfg.package, "corte": entry.corte or cfg.corte,
        "sites": {}, "feeds": {}})


def _site_shield(cfg: Config, name: str, role: str) -> ShieldSettings:
    """Each site's shield writes its own nginx include (``deny.conf`` → ``deny-NAME.conf``, the
    one its server block includes); the machine- and account-wide lists (nftables, Cloudflare)
    are the official site's alone: two shields sharing one would lift each other's blocks."""
    shield = cfg.shield
    update: dict[str, object] = {}
    if shield.nginx_include:
        path = PurePath(shield.nginx_include)
        update["nginx_include"] = str(path.with_name(f"{path.stem}-{name}{path.suffix}"))
    if role != "oficial":
        update["nftables_set"] = ""
        update["cloudflare"] = CloudflareListSettings()
    return shield.model_copy(update=update)


def site_config(cfg: Config, name: str) -> Config:
    """The file as one site sees it: a one-site difusor with its own URL, hosts and state."""
    from difusor.config.site import StateSettings

    entry = cfg.sites[name]
    base = feed_config(cfg, entry.feed)  # the feed's package and corte conventions
    site = cfg.site.model_copy(update={
        "url": entry.url, "hosts": entry.host_names(),
        "name": entry.name or f"{cfg.site.name} ({entry.role})"})
    return base.model_copy(update={
        "site": site, "state": StateSettings(dir=str(cfg.state_dir / "sites" / name)),
        "shield": _site_shield(base, name, entry.role),
        "sftp": base.sftp.model_copy(update={"enabled": False}),
        "dropfolder": DropFolderSettings(), "pull": PullSettings(),
        "site_name": name, "site_role": entry.role, "sites": {}, "feeds": {}})
