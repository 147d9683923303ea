"""The whole of difusor.toml: one field per section, and the lists of tables.

``SECTIONS`` and ``LIST_SECTIONS`` are read by the error messages (which keys a table knows) and
by the generated reference in docs/configuracion.md.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, Field

from difusor.config.console import ConsoleSettings
from difusor.config.operation import AlertSettings, MonitorSettings, OperationSettings
from difusor.config.providers import CDN_KINDS, ORIGIN_KINDS, CdnSettings, OriginSettings
from difusor.config.receive import (
    CorteSettings,
    DropFolderSettings,
    PackageSettings,
    PullSettings,
    ReceiveSettings,
    SftpSettings,
)
from difusor.config.registration import RegistrationSettings, StaffMember
from difusor.config.site import (
    HeaderRule,
    IntegritySettings,
    NginxSettings,
    SiteSettings,
    StateSettings,
    StoreSettings,
    WebSettings,
)
from difusor.config.sites import FeedEntry, SiteEntry
from difusor.config.values import Section
from difusor.config.watch import AnalyticsSettings, ShieldSettings


class Config(Section):
    site: SiteSettings = SiteSettings()
    web: WebSettings = WebSettings()
    sftp: SftpSettings = SftpSettings()
    state: StateSettings = StateSettings()
    receive: ReceiveSettings = ReceiveSettings()
    dropfolder: DropFolderSettings = DropFolderSettings()
    pull: PullSettings = PullSettings()
    package: PackageSettings = PackageSettings()
    corte: CorteSettings = CorteSettings()
    store: StoreSettings = StoreSettings()
    integrity: IntegritySettings = IntegritySettings()
    nginx: NginxSettings = NginxSettings()
    monitor: MonitorSettings = MonitorSettings()
    alerts: AlertSettings = AlertSettings()
    operation: OperationSettings = OperationSettings()
    analytics: AnalyticsSettings = AnalyticsSettings()
    shield: ShieldSettings = ShieldSettings()
    console: ConsoleSettings = ConsoleSettings()
    headers: list[HeaderRule] = Field(
        default_factory=list,
        description="Reglas de encabezados adicionales (después de las predeterminadas).",
    )
    origins: list[OriginSettings] = Field(
        default_factory=list, description="Orígenes adicionales al servidor embebido.")
    cdn: list[CdnSettings] = Field(default_factory=list, description="CDN delante del sitio.")
    sites: dict[str, SiteEntry] = Field(
        default_factory=dict, description="Sitios con nombre (prueba, oficial…); vacío = uno solo.")
    feeds: dict[str, FeedEntry] = Field(
        default_factory=dict, description="Autoridades adicionales que alimentan sitios.")
    registro: RegistrationSettings = RegistrationSettings()
    personal: list[StaffMember] = Field(
        default_factory=list, description="Personal de la operación (registro y memoria).")

    # Set by site_config() on the view of one named site; "" on the file itself.
    site_name: str = Field(default="", exclude=True)
    site_role: str = Field(default="", exclude=True)

    # Set by load(): the folder relative paths are resolved against.
    root: Path = Field(default=Path("."), exclude=True)

    def path(self, value: str) -> Path:
        p = Path(value).expanduser()
        return p if p.is_absolute() else (self.root / p)

    @property
    def state_dir(self) -> Path:
        return self.path(self.state.dir)

    def for_site(self, name: str) -> Config:
        """The view of one ``[sites.NAME]`` (see ``config/sites.py``)."""
        from difusor.config.sites import site_config

        return site_config(self, name)

    @property
    def nginx_access_log(self) -> Path:
        """Where the generated nginx config logs; the shield follows it beside the embedded log."""
        n = self.nginx.access_log
        return (self.path(n) if n else self.state_dir / "logs" / "nginx-access.log").absolute()


SECTIONS: dict[str, type[BaseModel]] = {
    name: field.annotation  # type: ignore[misc]
    for name, field in Config.model_fields.items()
    if isinstance(field.annotation, type) and issubclass(field.annotation, Section)
}

# An array of tables → the models an entry may be (several: chosen by its ``kind``).
# A table of named tables → the model each entry is.
DICT_SECTIONS: dict[str, type[BaseModel]] = {"sites": SiteEntry, "feeds": FeedEntry}

LIST_SECTIONS: dict[str, tuple[type[BaseModel], ...]] = {
    "headers": (HeaderRule,), "origins": ORIGIN_KINDS, "cdn": CDN_KINDS,
    "personal": (StaffMember,),
}
